import { describe, expect, it } from "vitest";
import {
  checkDynamicToken,
  createDynamicToken,
  decodeDynamicToken,
  dynamicTokenExpiresAt,
  dynamicTokenSignature,
} from "./dynamic-token.ts";

const INPUT = {
  appKey: "demo-app-key",
  appSecret: "demo-app-secret",
  accid: "u_42",
  curTimeMs: 1_700_000_000_000,
  ttlSeconds: 3600,
};

describe("dynamic token (nim-protocol §10.4)", () => {
  it("matches a known answer computed outside this code", () => {
    // By hand (Python's hashlib, not node:crypto):
    //   sha1("demo-app-key" + "u_42" + "1700000000000" + "3600" + "demo-app-secret")
    //   = sha1("demo-app-keyu_4217000000000003600demo-app-secret")
    //   = 51c692921f84dac4cd079c4f5fbe96026e4f238d
    // and base64 of {"signature":"51c6…238d","curTime":1700000000000,"ttl":3600}, keys in that order.
    expect(dynamicTokenSignature(INPUT)).toBe("51c692921f84dac4cd079c4f5fbe96026e4f238d");
    expect(createDynamicToken(INPUT)).toBe(
      "eyJzaWduYXR1cmUiOiI1MWM2OTI5MjFmODRkYWM0Y2QwNzljNGY1ZmJlOTYwMjZlNGYyMzhkIiwiY3VyVGltZSI6MTcwMDAwMDAwMDAwMCwidHRsIjozNjAwfQ==",
    );
  });

  it("decodes to numbers, not strings, in the doc's key order", () => {
    const json = Buffer.from(createDynamicToken(INPUT), "base64").toString("utf8");
    expect(json).toBe('{"signature":"51c692921f84dac4cd079c4f5fbe96026e4f238d","curTime":1700000000000,"ttl":3600}');
    expect(decodeDynamicToken(createDynamicToken(INPUT))).toEqual({
      signature: "51c692921f84dac4cd079c4f5fbe96026e4f238d",
      curTime: 1_700_000_000_000,
      ttl: 3600,
    });
  });

  it("depends on every input", () => {
    const base = dynamicTokenSignature(INPUT);
    for (const change of [
      { appKey: "other" },
      { appSecret: "other" },
      { accid: "u_43" },
      { curTimeMs: INPUT.curTimeMs + 1 },
      { ttlSeconds: 3601 },
    ]) {
      expect(dynamicTokenSignature({ ...INPUT, ...change })).not.toBe(base);
    }
  });

  it("refuses inputs NIM could not mean", () => {
    expect(() => createDynamicToken({ ...INPUT, ttlSeconds: 0 })).toThrow(TypeError);
    expect(() => createDynamicToken({ ...INPUT, ttlSeconds: 1.5 })).toThrow(TypeError);
    expect(() => createDynamicToken({ ...INPUT, curTimeMs: -1 })).toThrow(TypeError);
    expect(() => createDynamicToken({ ...INPUT, curTimeMs: 1.5 })).toThrow(TypeError);
  });

  it("expires exactly ttl seconds after curTime", () => {
    expect(dynamicTokenExpiresAt(INPUT.curTimeMs, 3600)).toBe(INPUT.curTimeMs + 3_600_000);
    const token = createDynamicToken(INPUT);
    const check = (nowMs: number) =>
      checkDynamicToken({ token, appKey: INPUT.appKey, appSecret: INPUT.appSecret, accid: INPUT.accid, nowMs });
    expect(check(INPUT.curTimeMs)).toEqual({ ok: true, expiresAt: INPUT.curTimeMs + 3_600_000 });
    expect(check(INPUT.curTimeMs + 3_599_999).ok).toBe(true);
    expect(check(INPUT.curTimeMs + 3_600_000)).toEqual({ ok: false, reason: "expired" });
  });

  it("refuses another accid, another app, a tampered ttl and garbage", () => {
    const token = createDynamicToken(INPUT);
    const base = { appKey: INPUT.appKey, appSecret: INPUT.appSecret, accid: INPUT.accid, nowMs: INPUT.curTimeMs };
    expect(checkDynamicToken({ ...base, token, accid: "u_43" })).toEqual({ ok: false, reason: "signature" });
    expect(checkDynamicToken({ ...base, token, appSecret: "x" })).toEqual({ ok: false, reason: "signature" });
    const payload = decodeDynamicToken(token)!;
    const longer = Buffer.from(JSON.stringify({ ...payload, ttl: 999_999 })).toString("base64");
    expect(checkDynamicToken({ ...base, token: longer })).toEqual({ ok: false, reason: "signature" });
    for (const garbage of ["", "not base64!", Buffer.from("[]").toString("base64"), "e30="]) {
      expect(checkDynamicToken({ ...base, token: garbage })).toEqual({ ok: false, reason: "malformed" });
    }
  });

  it("refuses a token minted far in the future", () => {
    const token = createDynamicToken({ ...INPUT, curTimeMs: INPUT.curTimeMs + 3_600_000 });
    expect(
      checkDynamicToken({
        token,
        appKey: INPUT.appKey,
        appSecret: INPUT.appSecret,
        accid: INPUT.accid,
        nowMs: INPUT.curTimeMs,
        futureToleranceMs: 60_000,
      }),
    ).toEqual({ ok: false, reason: "not-yet-valid" });
  });
});
