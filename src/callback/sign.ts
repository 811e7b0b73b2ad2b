/**
 * Signs a message-copy callback (消息抄送) exactly as NIM does, so tests, the `nim:callback` CLI and
 * the local NIM emulator produce requests that the real verifier (`verify.ts`) accepts.
 *
 * NIM's callback scheme (nim-protocol.md §4.1):
 * - `MD5`      = lowercase hex md5 of the raw request body bytes;
 * - `CurTime`  = milliseconds since the epoch, as a decimal string. Note: NIM's server *API* uses
 *                seconds for its own CurTime; the callback uses milliseconds. Do not mix them up;
 * - `CheckSum` = lowercase hex sha1(AppSecret + MD5 + CurTime), plain string concatenation.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** The three signature headers NIM sends with every callback, spelled as NIM spells them. */
export interface CallbackSignatureHeaders {
  MD5: string;
  CheckSum: string;
  CurTime: string;
}

export interface SignCallbackInput {
  appSecret: string;
  /** The exact body that will be sent. A string is signed as its UTF-8 bytes. */
  body: Buffer | string;
  /** Milliseconds since the epoch. */
  curTime: number;
}

/** Lowercase hex md5 of the exact bytes given. */
export function md5Hex(bytes: Buffer): string {
  return createHash("md5").update(bytes).digest("hex");
}

/**
 * sha1(AppSecret + MD5 + CurTime) in lowercase hex. The MD5 and CurTime are the header *strings*
 * (not re-formatted numbers): NIM and the verifier both hash the text that travels on the wire.
 */
export function callbackChecksum(appSecret: string, md5Header: string, curTimeHeader: string): string {
  return createHash("sha1")
    .update(appSecret + md5Header + curTimeHeader, "utf8")
    .digest("hex");
}

/** The `MD5`, `CheckSum` and `CurTime` headers NIM would send for this body at this time. */
export function signCallback(input: SignCallbackInput): CallbackSignatureHeaders {
  if (!Number.isSafeInteger(input.curTime) || input.curTime < 0) {
    throw new RangeError("curTime must be a non-negative integer number of milliseconds");
  }
  const bytes = typeof input.body === "string" ? Buffer.from(input.body, "utf8") : input.body;
  const md5 = md5Hex(bytes);
  const curTime = String(input.curTime);
  return { MD5: md5, CheckSum: callbackChecksum(input.appSecret, md5, curTime), CurTime: curTime };
}
