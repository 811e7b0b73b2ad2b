import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { callbackChecksum, signCallback } from "./sign.ts";
import { type CallbackHeaders, type VerifyCallbackInput, verifyCallback } from "./verify.ts";

const appSecret = "appsecret123";
const now = 1_700_000_000_123;
const windowMs = 5 * 60 * 1000;
const body = Buffer.from(
  JSON.stringify({
    eventType: "1",
    convType: "PERSON",
    to: "advisor_bot",
    fromAccount: "user_1",
    msgType: "TEXT",
    body: "你好",
    msgidServer: "3456789",
    msgTimestamp: String(now),
  }),
  "utf8",
);

/** Headers as Node hands them to us: lower-case names. */
function signedHeaders(rawBody: Buffer | string = body, curTime = now, secret = appSecret): CallbackHeaders {
  const signature = signCallback({ appSecret: secret, body: rawBody, curTime });
  return {
    "content-type": "application/json",
    appkey: "app-key",
    md5: signature.MD5,
    checksum: signature.CheckSum,
    curtime: signature.CurTime,
  };
}

function verify(overrides: Partial<VerifyCallbackInput> = {}) {
  return verifyCallback({ headers: signedHeaders(), rawBody: body, appSecret, now, windowMs, ...overrides });
}

function without(headers: CallbackHeaders, name: string): CallbackHeaders {
  const copy = { ...headers };
  delete copy[name];
  return copy;
}

describe("signCallback", () => {
  it("signs as NIM does: md5 of the bytes, sha1(secret + md5 + curTime), CurTime in ms as a string", () => {
    const signature = signCallback({ appSecret, body: "{}", curTime: 1_700_000_000_123 });
    expect(signature.MD5).toBe("99914b932bd37a50b983c5e7c90ae93b");
    expect(signature.CurTime).toBe("1700000000123");
    const expected = createHash("sha1")
      .update("appsecret123" + "99914b932bd37a50b983c5e7c90ae93b" + "1700000000123")
      .digest("hex");
    expect(signature.CheckSum).toBe(expected);
    expect(signature.CheckSum).toMatch(/^[0-9a-f]{40}$/);
  });

  it("signs a string as its UTF-8 bytes", () => {
    const text = '{"body":"你好"}';
    expect(signCallback({ appSecret, body: text, curTime: now })).toEqual(
      signCallback({ appSecret, body: Buffer.from(text, "utf8"), curTime: now }),
    );
  });

  it("refuses a CurTime that is not a non-negative integer", () => {
    expect(() => signCallback({ appSecret, body: "{}", curTime: 1.5 })).toThrow(RangeError);
    expect(() => signCallback({ appSecret, body: "{}", curTime: -1 })).toThrow(RangeError);
  });
});

describe("verifyCallback", () => {
  it("accepts a correctly signed, fresh callback and returns its CurTime", () => {
    expect(verify()).toEqual({ ok: true, curTime: now });
  });

  it("rejects a CheckSum made with another secret", () => {
    expect(verify({ headers: signedHeaders(body, now, "other-secret") })).toEqual({
      ok: false,
      reason: "checksum-mismatch",
    });
  });

  it("rejects when the configured secret differs from the signer's", () => {
    expect(verify({ appSecret: "appsecret124" })).toEqual({ ok: false, reason: "checksum-mismatch" });
  });

  it("fails closed with an empty AppSecret, even for a request signed with the empty secret", () => {
    expect(verify({ appSecret: "", headers: signedHeaders(body, now, "") })).toEqual({
      ok: false,
      reason: "secret-not-configured",
    });
  });

  it("rejects a body with one byte changed", () => {
    const tampered = Buffer.from(body);
    tampered[10] = (tampered[10] ?? 0) ^ 0x01;
    expect(verify({ rawBody: tampered })).toEqual({ ok: false, reason: "md5-mismatch" });
  });

  it("rejects a re-serialised body (same JSON, different bytes)", () => {
    const reformatted = Buffer.from(JSON.stringify(JSON.parse(body.toString("utf8")), null, 2), "utf8");
    expect(verify({ rawBody: reformatted })).toEqual({ ok: false, reason: "md5-mismatch" });
  });

  it("rejects a body swapped together with a matching MD5 but the old CheckSum", () => {
    const otherBody = Buffer.from('{"eventType":"1"}', "utf8");
    const headers = { ...signedHeaders(), md5: signCallback({ appSecret, body: otherBody, curTime: now }).MD5 };
    expect(verify({ headers, rawBody: otherBody })).toEqual({ ok: false, reason: "checksum-mismatch" });
  });

  it.each([
    ["md5", "missing-md5"],
    ["checksum", "missing-checksum"],
    ["curtime", "missing-curtime"],
  ] as const)("rejects a request without the %s header", (name, reason) => {
    expect(verify({ headers: without(signedHeaders(), name) })).toEqual({ ok: false, reason });
  });

  it("treats an undefined value or an empty array as a missing header", () => {
    expect(verify({ headers: { ...signedHeaders(), md5: undefined } })).toEqual({ ok: false, reason: "missing-md5" });
    expect(verify({ headers: { ...signedHeaders(), curtime: [] } })).toEqual({ ok: false, reason: "missing-curtime" });
  });

  it("rejects a request with no headers at all, reporting MD5 first", () => {
    expect(verify({ headers: {} })).toEqual({ ok: false, reason: "missing-md5" });
  });

  it("rejects a CurTime older than the window", () => {
    const curTime = now - windowMs - 1;
    expect(verify({ headers: signedHeaders(body, curTime) })).toEqual({ ok: false, reason: "too-old" });
  });

  it("rejects a CurTime newer than the window", () => {
    const curTime = now + windowMs + 1;
    expect(verify({ headers: signedHeaders(body, curTime) })).toEqual({ ok: false, reason: "too-new" });
  });

  it("accepts a CurTime exactly at either edge of the window", () => {
    for (const curTime of [now - windowMs, now + windowMs]) {
      expect(verify({ headers: signedHeaders(body, curTime) })).toEqual({ ok: true, curTime });
    }
  });

  it("treats a CurTime in seconds (NIM's API convention, not the callback's) as far too old", () => {
    const seconds = String(Math.floor(now / 1000));
    const md5 = signCallback({ appSecret, body, curTime: now }).MD5;
    const headers = { md5, curtime: seconds, checksum: callbackChecksum(appSecret, md5, seconds) };
    expect(verify({ headers })).toEqual({ ok: false, reason: "too-old" });
  });

  it("checks the signature before the window: a stale forgery is a checksum mismatch", () => {
    const curTime = now - windowMs * 10;
    expect(verify({ headers: signedHeaders(body, curTime, "other-secret") })).toEqual({
      ok: false,
      reason: "checksum-mismatch",
    });
  });

  it.each([
    ["non-numeric", "abc"],
    ["negative", "-1700000000123"],
    ["float", "1700000000123.5"],
    ["empty", ""],
    ["exponent", "1.7e12"],
    ["padded with spaces", " 1700000000123"],
    ["hexadecimal", "0x18bcfe56800"],
    ["beyond 2^53", "99999999999999999999"],
  ])("rejects a %s CurTime as invalid, even when the CheckSum covers it", (_label, value) => {
    const md5 = signCallback({ appSecret, body, curTime: now }).MD5;
    const headers = { md5, curtime: value, checksum: callbackChecksum(appSecret, md5, value) };
    expect(verify({ headers })).toEqual({ ok: false, reason: "invalid-curtime" });
  });

  it("accepts an empty body signed correctly (whether to act on it is the route's decision)", () => {
    const empty = Buffer.alloc(0);
    const headers = signedHeaders(empty);
    expect(headers.md5).toBe("d41d8cd98f00b204e9800998ecf8427e");
    expect(verify({ headers, rawBody: empty })).toEqual({ ok: true, curTime: now });
  });

  it("accepts NIM's console validation request `{}`", () => {
    const validation = Buffer.from("{}", "utf8");
    const headers = signedHeaders(validation);
    expect(headers.md5).toBe("99914b932bd37a50b983c5e7c90ae93b");
    expect(verify({ headers, rawBody: validation })).toEqual({ ok: true, curTime: now });
  });

  it("accepts bytes that are not UTF-8 when the signature covers them", () => {
    const binary = Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0xc3, 0x28, 0x7d]);
    expect(verify({ headers: signedHeaders(binary), rawBody: binary })).toEqual({ ok: true, curTime: now });
  });

  it("compares the MD5 header case-insensitively (and the CheckSum over the header as sent)", () => {
    const md5 = signCallback({ appSecret, body, curTime: now }).MD5.toUpperCase();
    const curTime = String(now);
    const headers = { md5, curtime: curTime, checksum: callbackChecksum(appSecret, md5, curTime) };
    expect(verify({ headers })).toEqual({ ok: true, curTime: now });
  });

  it("accepts an upper-case CheckSum value", () => {
    const headers = signedHeaders();
    headers.checksum = String(headers.checksum).toUpperCase();
    expect(verify({ headers })).toEqual({ ok: true, curTime: now });
  });

  it("matches header names in any case", () => {
    const signature = signCallback({ appSecret, body, curTime: now });
    const headers = { Md5: signature.MD5, CHECKSUM: signature.CheckSum, curTime: signature.CurTime };
    expect(verify({ headers })).toEqual({ ok: true, curTime: now });
    // NIM's own spelling, as signCallback returns it.
    expect(verify({ headers: { ...signature } })).toEqual({ ok: true, curTime: now });
  });

  it("accepts one-element arrays, as in Node's request.headersDistinct", () => {
    const signature = signCallback({ appSecret, body, curTime: now });
    const headers = { md5: [signature.MD5], checksum: [signature.CheckSum], curtime: [signature.CurTime] };
    expect(verify({ headers })).toEqual({ ok: true, curTime: now });
  });

  it("rejects a header given twice as an array", () => {
    const headers = signedHeaders();
    headers.checksum = [String(headers.checksum), String(headers.checksum)];
    expect(verify({ headers })).toEqual({ ok: false, reason: "repeated-header" });
  });

  it("rejects a header given twice under names differing in case", () => {
    const headers = { ...signedHeaders(), CurTime: String(now) };
    expect(verify({ headers })).toEqual({ ok: false, reason: "repeated-header" });
  });

  it("rejects a header given twice and joined by Node with a comma", () => {
    const headers = signedHeaders();
    headers.md5 = `${String(headers.md5)}, ${String(headers.md5)}`;
    expect(verify({ headers })).toEqual({ ok: false, reason: "repeated-header" });
  });

  it("reports a repeated header before a missing one", () => {
    const headers = without(signedHeaders(), "md5");
    headers.curtime = [String(now), String(now)];
    expect(verify({ headers })).toEqual({ ok: false, reason: "repeated-header" });
  });

  it.each([
    ["shorter", (checksum: string) => checksum.slice(0, 39)],
    ["longer", (checksum: string) => checksum + "0"],
    ["empty", () => ""],
    ["non-ASCII of the same character count", (checksum: string) => "é" + checksum.slice(1)],
  ])("rejects a CheckSum of a different length (%s) without throwing", (_label, change) => {
    const headers = signedHeaders();
    headers.checksum = change(String(headers.checksum));
    expect(verify({ headers })).toEqual({ ok: false, reason: "checksum-mismatch" });
  });

  it("rejects a CheckSum of the right length with one character changed", () => {
    const headers = signedHeaders();
    const checksum = String(headers.checksum);
    headers.checksum = (checksum[0] === "0" ? "1" : "0") + checksum.slice(1);
    expect(verify({ headers })).toEqual({ ok: false, reason: "checksum-mismatch" });
  });

  it("rejects an empty MD5 header as a mismatch", () => {
    const headers = { ...signedHeaders(), md5: "" };
    expect(verify({ headers })).toEqual({ ok: false, reason: "md5-mismatch" });
  });
});
