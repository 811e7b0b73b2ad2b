import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { apiCheckSum, bodyMd5, callbackCheckSum, createNonce } from "./checksum.ts";

describe("apiCheckSum", () => {
  it("matches the nim-protocol §1.1 test vector", () => {
    expect(apiCheckSum("appsecret123", "abc123", "1700000000")).toBe("23fa5bb99e8d88617a13b989f0af54d24d2a922b");
  });

  it("accepts CurTime as a number and gives the same lowercase hex", () => {
    const checkSum = apiCheckSum("appsecret123", "abc123", 1700000000);
    expect(checkSum).toBe("23fa5bb99e8d88617a13b989f0af54d24d2a922b");
    expect(checkSum).toMatch(/^[0-9a-f]{40}$/);
  });

  it("hashes multi-byte secrets as UTF-8", () => {
    const expected = createHash("sha1").update(Buffer.from("密钥n1", "utf8")).digest("hex");
    expect(apiCheckSum("密钥", "n", "1")).toBe(expected);
  });
});

describe("callback signature helpers", () => {
  it("md5 of {} matches the masked value in NIM's official curl example", () => {
    expect(bodyMd5("{}")).toBe("99914b932bd37a50b983c5e7c90ae93b");
  });

  it("callbackCheckSum is sha1(secret + md5 + curTime in ms)", () => {
    const expected = createHash("sha1")
      .update("appsecret12399914b932bd37a50b983c5e7c90ae93b1700000000123")
      .digest("hex");
    expect(callbackCheckSum("appsecret123", bodyMd5("{}"), "1700000000123")).toBe(expected);
  });
});

describe("createNonce", () => {
  it("gives 32 lowercase hex characters, different every time", () => {
    const nonces = new Set(Array.from({ length: 100 }, () => createNonce()));
    expect(nonces.size).toBe(100);
    for (const nonce of nonces) expect(nonce).toMatch(/^[0-9a-f]{32}$/);
  });
});
