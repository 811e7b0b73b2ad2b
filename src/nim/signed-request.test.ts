import { describe, expect, it } from "vitest";
import { describeNetworkError, isConnectError, splitApiBase } from "./signed-request.ts";

/** An Error with a Node/undici `code`, as thrown by net and by undici's request(). */
function codedError(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

describe("isConnectError and describeNetworkError", () => {
  it("read undici request()'s shape: the code on the error itself", () => {
    const refused = codedError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:9");
    expect(isConnectError(refused)).toBe(true);
    expect(describeNetworkError(refused)).toBe("ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9");
    expect(isConnectError(codedError("UND_ERR_CONNECT_TIMEOUT", "Connect Timeout Error"))).toBe(true);
  });

  it("read fetch's shape: TypeError('fetch failed') with the coded error as its cause", () => {
    const failed = new TypeError("fetch failed", { cause: codedError("ENOTFOUND", "getaddrinfo ENOTFOUND x.invalid") });
    expect(isConnectError(failed)).toBe(true);
    expect(describeNetworkError(failed)).toBe("ENOTFOUND: getaddrinfo ENOTFOUND x.invalid");
  });

  it("treat a reset after sending as not a connect failure", () => {
    const reset = codedError("UND_ERR_SOCKET", "other side closed", codedError("ECONNRESET", "read ECONNRESET"));
    expect(isConnectError(reset)).toBe(false);
    expect(describeNetworkError(reset)).toBe("UND_ERR_SOCKET: other side closed");
    expect(isConnectError(new TypeError("fetch failed", { cause: reset }))).toBe(false);
  });

  it("fall back to a message when no code is given", () => {
    expect(describeNetworkError(new TypeError("fetch failed", { cause: new Error("bad things") }))).toBe("bad things");
    expect(describeNetworkError(new Error("plain"))).toBe("plain");
    expect(describeNetworkError("a string")).toBe("connection failed");
  });
});

describe("splitApiBase", () => {
  it("keys pools by origin and keeps the base path without a trailing slash", () => {
    expect(splitApiBase("https://api.yunxinapi.com/nimserver/")).toEqual({
      origin: "https://api.yunxinapi.com",
      basePath: "/nimserver",
    });
    expect(splitApiBase("http://127.0.0.1:8080")).toEqual({ origin: "http://127.0.0.1:8080", basePath: "" });
  });
});
