/**
 * NIM's request signatures. Pure functions, shared by the client (which signs) and the local
 * emulator (which checks), so both sides agree byte for byte.
 *
 * @example
 * const nonce = createNonce();
 * const curTime = String(Math.floor(Date.now() / 1000));
 * headers.CheckSum = apiCheckSum(appSecret, nonce, curTime);
 */
import { createHash, randomUUID } from "node:crypto";

/**
 * CheckSum of a classic or v2 server-API request: lowercase hex sha1(AppSecret + Nonce + CurTime),
 * plain string concatenation with no separator (nim-protocol §1.1). CurTime is in **seconds** here,
 * unlike the message-copy callback, whose CurTime is in milliseconds.
 */
export function apiCheckSum(appSecret: string, nonce: string, curTimeSeconds: string | number): string {
  return sha1Hex(`${appSecret}${nonce}${curTimeSeconds}`);
}

/**
 * CheckSum of a message-copy callback (抄送): lowercase hex sha1(AppSecret + MD5 + CurTime), where MD5 is
 * {@link bodyMd5} of the raw body and CurTime is in **milliseconds** (nim-protocol §4.1).
 */
export function callbackCheckSum(appSecret: string, md5: string, curTimeMilliseconds: string | number): string {
  return sha1Hex(`${appSecret}${md5}${curTimeMilliseconds}`);
}

/** Lowercase hex MD5 of the exact body bytes; re-serialising the JSON first would break the signature. */
export function bodyMd5(body: string | Uint8Array): string {
  return createHash("md5").update(body).digest("hex");
}

/**
 * A fresh Nonce: 32 lowercase hex characters, exactly what the official Java SDK sends (a random
 * UUID without dashes). NIM allows up to 128 characters and documents no replay cache, but a fresh
 * one per request keeps us safe if NIM ever starts rejecting repeats (code 431). `randomUUID` draws
 * on a cached entropy buffer; a `randomBytes` call per request showed up in CPU profiles.
 */
export function createNonce(): string {
  return randomUUID().replaceAll("-", "");
}

function sha1Hex(text: string): string {
  return createHash("sha1").update(text, "utf8").digest("hex");
}
