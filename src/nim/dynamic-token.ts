/**
 * NIM's dynamic (expiring) login token, authType 1 (nim-protocol.md §10.4). Pure functions, shared
 * by the register service (which mints tokens) and the local emulator (which checks them), like
 * checksum.ts.
 *
 *     token     = base64(JSON.stringify({"signature": …, "curTime": <ms>, "ttl": <seconds>}))
 *     signature = lowercase hex sha1(appKey + accid + curTime + ttl + appSecret)
 *
 * Plain string concatenation with no separator, `curTime` in **milliseconds** and `ttl` in
 * **seconds**, both written as JSON numbers, in that key order (the shape of NIM's doc). The token
 * is computed without any NIM call and costs no quota; NIM recomputes the signature at login.
 *
 * The static token (authType 0) never expires; a dynamic one is refused once `curTime + ttl` has
 * passed. The code NIM answers then is not confirmed (LIKELY 302, like a wrong token), nor is any
 * tolerance for clock skew.
 *
 * @example
 * const token = createDynamicToken({ appKey, appSecret, accid: "u_42", curTimeMs: Date.now(), ttlSeconds: 3600 });
 */
import { createHash } from "node:crypto";

export interface DynamicTokenInput {
  appKey: string;
  /** Signs the token; never part of it. */
  appSecret: string;
  /** The accid as the user logs in with it (NIM stores accids lower-cased). */
  accid: string;
  /** When the token was minted, ms since the epoch (NIM's `curTime`). */
  curTimeMs: number;
  /** Lifetime in seconds (NIM's `ttl`). */
  ttlSeconds: number;
}

/** The decoded JSON inside a dynamic token. */
export interface DynamicTokenPayload {
  signature: string;
  curTime: number;
  ttl: number;
}

/** The signature of a dynamic token: hex sha1 of the five values concatenated. */
export function dynamicTokenSignature(input: DynamicTokenInput): string {
  const text = `${input.appKey}${input.accid}${input.curTimeMs}${input.ttlSeconds}${input.appSecret}`;
  return createHash("sha1").update(text, "utf8").digest("hex");
}

/** Mints a dynamic token; throws TypeError on values NIM could not have meant (fractions, negatives). */
export function createDynamicToken(input: DynamicTokenInput): string {
  if (!Number.isSafeInteger(input.curTimeMs) || input.curTimeMs < 0) {
    throw new TypeError("createDynamicToken: curTimeMs must be a non-negative integer (milliseconds)");
  }
  if (!Number.isSafeInteger(input.ttlSeconds) || input.ttlSeconds <= 0) {
    throw new TypeError("createDynamicToken: ttlSeconds must be a positive integer");
  }
  const payload: DynamicTokenPayload = {
    signature: dynamicTokenSignature(input),
    curTime: input.curTimeMs,
    ttl: input.ttlSeconds,
  };
  return Buffer.from(JSON.stringify(payload), "utf8").toString("base64");
}

/** When a token minted at `curTimeMs` with `ttlSeconds` stops working, ms since the epoch. */
export function dynamicTokenExpiresAt(curTimeMs: number, ttlSeconds: number): number {
  return curTimeMs + ttlSeconds * 1000;
}

/** Decodes a token without checking it; undefined for anything that is not NIM's shape. */
export function decodeDynamicToken(token: string): DynamicTokenPayload | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(token)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(token, "base64").toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { signature, curTime, ttl } = value as Record<string, unknown>;
  if (typeof signature !== "string" || !/^[0-9a-f]{40}$/.test(signature)) return undefined;
  if (typeof curTime !== "number" || !Number.isSafeInteger(curTime) || curTime < 0) return undefined;
  if (typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl <= 0) return undefined;
  return { signature, curTime, ttl };
}

export type DynamicTokenCheck =
  | { ok: true; expiresAt: number }
  | { ok: false; reason: "malformed" | "signature" | "expired" | "not-yet-valid" };

/**
 * What NIM does at an authType 1 login: decode, recompute the signature for this accid, and
 * compare the expiry with its clock. `futureToleranceMs` bounds how far `curTime` may lie ahead of
 * `nowMs` (a token "from the future" is a forged or badly skewed one; NIM's tolerance is unknown).
 */
export function checkDynamicToken(input: {
  token: string;
  appKey: string;
  appSecret: string;
  accid: string;
  nowMs: number;
  futureToleranceMs?: number;
}): DynamicTokenCheck {
  const payload = decodeDynamicToken(input.token);
  if (!payload) return { ok: false, reason: "malformed" };
  const expected = dynamicTokenSignature({
    appKey: input.appKey,
    appSecret: input.appSecret,
    accid: input.accid,
    curTimeMs: payload.curTime,
    ttlSeconds: payload.ttl,
  });
  if (expected !== payload.signature) return { ok: false, reason: "signature" };
  if (payload.curTime - input.nowMs > (input.futureToleranceMs ?? 300_000)) {
    return { ok: false, reason: "not-yet-valid" };
  }
  const expiresAt = dynamicTokenExpiresAt(payload.curTime, payload.ttl);
  if (input.nowMs >= expiresAt) return { ok: false, reason: "expired" };
  return { ok: true, expiresAt };
}
