/**
 * Verification of NIM's message-copy callback (消息抄送), as a pure function: no I/O, no clock, no
 * logging. The route reads the raw body and the headers, calls this first, and processes nothing
 * unless it answers `ok`.
 *
 * NIM's scheme (nim-protocol.md §4.1, cross-checked with an independent implementation):
 * - `MD5` header      = lowercase hex md5 of the exact raw body bytes (never re-serialised JSON:
 *                       key order, spacing and escapes would change the digest);
 * - `CurTime` header  = milliseconds since the epoch as a decimal string (the server *API* uses
 *                       seconds; the callback uses milliseconds);
 * - `CheckSum` header = lowercase hex sha1(AppSecret + MD5 header + CurTime header).
 *
 * NIM documents no freshness window for callbacks; we add one (both directions) so that a captured
 * request cannot be replayed forever. Duplicate *deliveries* inside the window are handled by the
 * route's de-duplication on `msgidServer`, not here.
 *
 * Check order, and why:
 * 1. a configured AppSecret (an empty secret would make every CheckSum forgeable: fail closed);
 * 2. each header present exactly once;
 * 3. CurTime well-formed (cheap, and needed as a number later);
 * 4. MD5 of the body (binds the body to the headers);
 * 5. CheckSum (proves the sender knows the AppSecret);
 * 6. the time window — last, on purpose: `too-old` / `too-new` are then only ever reported for a
 *    request proven authentic, so in the logs they mean "our clock is skewed" or "a genuine request
 *    was replayed", never anonymous noise, and an unauthenticated caller learns nothing about our
 *    clock from the reason. The cost is one md5 + one sha1 for a stale forgery, which is bounded by
 *    the body limit anyway.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { callbackChecksum, md5Hex } from "./sign.ts";

/** Every reason a callback is refused. Stable strings: they end up in logs, audit rows and metrics. */
export const CALLBACK_REJECT_REASONS = [
  "secret-not-configured",
  "repeated-header",
  "missing-md5",
  "missing-checksum",
  "missing-curtime",
  "invalid-curtime",
  "md5-mismatch",
  "checksum-mismatch",
  "too-old",
  "too-new",
] as const;

export type CallbackRejectReason = (typeof CALLBACK_REJECT_REASONS)[number];

export type CallbackHeaders = Record<string, string | string[] | undefined>;

export interface VerifyCallbackInput {
  /**
   * Request headers. Names are matched case-insensitively. Works with Node's `request.headers`
   * (lower-cased, duplicates of unknown headers joined with ", ") and with
   * `request.headersDistinct` (every value an array; a one-element array is one header).
   */
  headers: CallbackHeaders;
  /** The exact bytes received, before any JSON parsing. */
  rawBody: Buffer;
  appSecret: string;
  /** Our clock, milliseconds since the epoch. */
  now: number;
  /** Largest accepted |CurTime - now| in milliseconds; the edge itself is accepted. */
  windowMs: number;
}

export type VerifyCallbackResult = { ok: true; curTime: number } | { ok: false; reason: CallbackRejectReason };

type HeaderLookup = { state: "absent" } | { state: "repeated" } | { state: "present"; value: string };

/**
 * Finds one header by case-insensitive name. "Repeated" covers every way a second copy can show up:
 * two keys differing only in case, an array with more than one value, or a value containing a comma
 * (Node joins duplicates of non-standard headers with ", "; none of NIM's three values — hex digests
 * and digits — can legitimately contain one).
 */
function readHeader(headers: CallbackHeaders, lowerCaseName: string): HeaderLookup {
  const values: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== lowerCaseName || value === undefined) continue;
    if (Array.isArray(value)) values.push(...value);
    else values.push(value);
  }
  if (values.length === 0) return { state: "absent" };
  const [value] = values;
  if (values.length > 1 || value === undefined || value.includes(",")) return { state: "repeated" };
  return { state: "present", value };
}

/** Constant-time comparison of two ASCII strings; different lengths are simply unequal. */
function constantTimeEqual(left: string, right: string): boolean {
  const leftBytes = Buffer.from(left, "utf8");
  const rightBytes = Buffer.from(right, "utf8");
  // timingSafeEqual throws on unequal lengths; the length of a sha1 hex digest is public anyway.
  if (leftBytes.length !== rightBytes.length) return false;
  return timingSafeEqual(leftBytes, rightBytes);
}

const DIGITS_ONLY = /^[0-9]+$/;

/**
 * Checks that a callback really comes from NIM (someone holding the AppSecret), that its body is
 * the one NIM signed, and that it is recent. Does nothing else: no parsing, no side effects.
 */
export function verifyCallback(input: VerifyCallbackInput): VerifyCallbackResult {
  if (input.appSecret === "") return { ok: false, reason: "secret-not-configured" };

  const md5 = readHeader(input.headers, "md5");
  const checksum = readHeader(input.headers, "checksum");
  const curTime = readHeader(input.headers, "curtime");
  if (md5.state === "repeated" || checksum.state === "repeated" || curTime.state === "repeated") {
    return { ok: false, reason: "repeated-header" };
  }
  if (md5.state === "absent") return { ok: false, reason: "missing-md5" };
  if (checksum.state === "absent") return { ok: false, reason: "missing-checksum" };
  if (curTime.state === "absent") return { ok: false, reason: "missing-curtime" };

  // Digits only: no sign, no decimal point, no exponent, no spaces, not empty. Values beyond 2^53
  // cannot be compared exactly as numbers, and no real clock is anywhere near them.
  const curTimeMs = Number(curTime.value);
  if (!DIGITS_ONLY.test(curTime.value) || !Number.isSafeInteger(curTimeMs)) {
    return { ok: false, reason: "invalid-curtime" };
  }

  // The body digest is not secret, so a plain comparison is fine. Hex is case-insensitive; NIM
  // sends lowercase.
  if (md5Hex(input.rawBody) !== md5.value.toLowerCase()) return { ok: false, reason: "md5-mismatch" };

  // The CheckSum covers the header strings exactly as sent (that is what NIM hashed), so the MD5
  // header is used verbatim here, not lower-cased.
  const expectedChecksum = callbackChecksum(input.appSecret, md5.value, curTime.value);
  if (!constantTimeEqual(expectedChecksum, checksum.value.toLowerCase())) {
    return { ok: false, reason: "checksum-mismatch" };
  }

  const skewMs = curTimeMs - input.now;
  if (skewMs < -input.windowMs) return { ok: false, reason: "too-old" };
  if (skewMs > input.windowMs) return { ok: false, reason: "too-new" };

  return { ok: true, curTime: curTimeMs };
}
