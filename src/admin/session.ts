/**
 * Operator sessions of the console: the operator proves they know ADMIN_TOKEN once, and gets a
 * signed, expiring session cookie and a CSRF token bound to that session.
 *
 * - **Cookie value** `base64url(JSON {sid, exp}) . base64url(HMAC-SHA256)`: nothing secret inside,
 *   nothing to store server-side, valid on every instance that has the same ADMIN_TOKEN. The HMAC
 *   key is derived from ADMIN_TOKEN, so changing the token ends every session at once.
 * - **CSRF token** `HMAC(key, "csrf:" + sid)`: the page reads it from `GET /admin/api/session` and
 *   sends it as `X-CSRF-Token` on every change; another site can neither read it nor compute it.
 * - **Constant-time comparisons** everywhere: both sides are hashed to equal-length digests and
 *   compared with `timingSafeEqual`, so neither content nor length leaks through timing.
 *
 * @module
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export interface AdminSession {
  /** Random session id; names the session in audit rows without revealing the cookie. */
  sid: string;
  /** Expiry, epoch ms. */
  exp: number;
}

export interface SessionCodecOptions {
  /** ADMIN_TOKEN. */
  adminToken: string;
  /** How long a session lasts (ADMIN_SESSION_HOURS). */
  lifetimeMs: number;
  now: () => number;
}

export interface SessionCodec {
  /** True when `presented` is the admin token (constant time). */
  tokenMatches(presented: string): boolean;
  /** A new session and its cookie value. */
  issue(): { session: AdminSession; cookieValue: string };
  /** The session a cookie value proves, or undefined (bad signature, malformed, expired). */
  verify(cookieValue: string | undefined): AdminSession | undefined;
  /** The CSRF token of a session. */
  csrfToken(session: AdminSession): string;
  /** True when `presented` is the session's CSRF token (constant time). */
  csrfMatches(session: AdminSession, presented: string | undefined): boolean;
}

const digest = (value: string | Buffer) => createHash("sha256").update(value).digest();

/** Equal-length digests compared in constant time: the inputs' lengths do not leak either. */
export function constantTimeEqual(left: string, right: string): boolean {
  return timingSafeEqual(digest(left), digest(right));
}

export function createSessionCodec(options: SessionCodecOptions): SessionCodec {
  const key = createHmac("sha256", options.adminToken).update("im-bridge admin session v1").digest();
  const sign = (value: string) => createHmac("sha256", key).update(value).digest("base64url");
  const csrfToken = (session: AdminSession) => sign(`csrf:${session.sid}`);

  return {
    tokenMatches: (presented) => constantTimeEqual(presented, options.adminToken),
    issue() {
      const session: AdminSession = {
        sid: randomBytes(16).toString("base64url"),
        exp: options.now() + options.lifetimeMs,
      };
      const payload = Buffer.from(JSON.stringify(session)).toString("base64url");
      return { session, cookieValue: `${payload}.${sign(payload)}` };
    },
    verify(cookieValue) {
      if (!cookieValue || cookieValue.length > 512) return undefined;
      const [payload, signature, extra] = cookieValue.split(".");
      if (!payload || !signature || extra !== undefined) return undefined;
      if (!constantTimeEqual(signature, sign(payload))) return undefined;
      try {
        const value = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Partial<AdminSession>;
        if (typeof value.sid !== "string" || typeof value.exp !== "number") return undefined;
        if (value.exp <= options.now()) return undefined;
        return { sid: value.sid, exp: value.exp };
      } catch {
        return undefined;
      }
    },
    csrfToken,
    csrfMatches: (session, presented) =>
      typeof presented === "string" && presented.length > 0 && constantTimeEqual(presented, csrfToken(session)),
  };
}

/** `name=value` pairs of a Cookie header; the first of a repeated name wins. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const index = part.indexOf("=");
    if (index <= 0) continue;
    const name = part.slice(0, index).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(index + 1).trim());
  }
  return cookies;
}

export interface CookieOptions {
  maxAgeSeconds: number;
  secure: boolean;
}

/**
 * The session cookie's Set-Cookie value: HttpOnly (no script reads it), SameSite=Strict (no other
 * site's request carries it), Path=/admin (no other route of the bridge sees it), Secure unless
 * the console is opened on the loopback address over plain HTTP (local development).
 */
export function sessionCookie(name: string, value: string, options: CookieOptions): string {
  return [
    `${name}=${value}`,
    "Path=/admin",
    "HttpOnly",
    "SameSite=Strict",
    `Max-Age=${Math.max(0, Math.floor(options.maxAgeSeconds))}`,
    ...(options.secure ? ["Secure"] : []),
  ].join("; ");
}
