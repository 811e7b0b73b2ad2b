import { describe, expect, it } from "vitest";
import { AllowedHostsError, DEFAULT_MEDIA_ALLOWED_HOSTS, matchAllowedHost, parseAllowedHosts } from "./hosts.ts";

const match = (url: string, list: string) => matchAllowedHost(new URL(url), parseAllowedHosts(list));

describe("parseAllowedHosts", () => {
  it("reads the default list of NIM's storage hosts", () => {
    expect(parseAllowedHosts(DEFAULT_MEDIA_ALLOWED_HOSTS)).toEqual([
      { host: "nim-nosdn.netease.im", wildcard: false, port: undefined },
      { host: "nim.nosdn.127.net", wildcard: false, port: undefined },
      { host: "nosdn.127.net", wildcard: true, port: undefined },
    ]);
  });

  it("normalises case, spaces, trailing dots, ports and IP literals", () => {
    expect(parseAllowedHosts(" Files.Example.COM. , *.cdn.example.com:8443,127.0.0.1:9000,[::1]:9001,, ")).toEqual([
      { host: "files.example.com", wildcard: false, port: undefined },
      { host: "cdn.example.com", wildcard: true, port: 8443 },
      { host: "127.0.0.1", wildcard: false, port: 9000 },
      { host: "::1", wildcard: false, port: 9001 },
    ]);
    expect(parseAllowedHosts("a.example:443")[0]?.port).toBeUndefined();
  });

  it.each([
    "*",
    "*.com",
    "*.*.example.com",
    "a.*.example.com",
    "user@example.com",
    "example.com/path",
    "*.127.0.0.1",
    "exa mple.com",
  ])("refuses the entry %s", (entry) => {
    expect(() => parseAllowedHosts(entry)).toThrow(AllowedHostsError);
  });
});

describe("matchAllowedHost", () => {
  it("matches exact names exactly", () => {
    expect(match("https://nim.nosdn.127.net/abc", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBe("exact");
    expect(match("https://NIM-NOSDN.netease.im./abc", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBe("exact");
    expect(match("https://netease.im/abc", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBeUndefined();
    expect(match("https://evil-nim-nosdn.netease.im/abc", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBeUndefined();
  });

  it("matches a wildcard only below its domain", () => {
    expect(match("https://bucket.nosdn.127.net/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBe("wildcard");
    expect(match("https://a.b.nosdn.127.net/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBe("wildcard");
    expect(match("https://nosdn.127.net/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBeUndefined();
    expect(match("https://evilnosdn.127.net/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBeUndefined();
    expect(match("https://nosdn.127.net.evil.example/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBeUndefined();
  });

  it("prefers an exact entry over a wildcard one", () => {
    expect(match("https://nim.nosdn.127.net/x", "*.nosdn.127.net,nim.nosdn.127.net")).toBe("exact");
  });

  it("allows only the default port unless the entry names another", () => {
    expect(match("https://nim.nosdn.127.net:443/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBe("exact");
    expect(match("https://nim.nosdn.127.net:8443/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBeUndefined();
    expect(match("https://nim.nosdn.127.net:80/x", DEFAULT_MEDIA_ALLOWED_HOSTS)).toBeUndefined();
    expect(match("https://files.example.com:8443/x", "files.example.com:8443")).toBe("exact");
    expect(match("https://files.example.com/x", "files.example.com:8443")).toBeUndefined();
  });

  it("matches IP literals only when listed exactly", () => {
    expect(match("http://127.0.0.1:9000/x", "127.0.0.1:9000")).toBe("exact");
    expect(match("http://[::1]:9001/x", "[::1]:9001")).toBe("exact");
    expect(match("http://[::1]:9001/x", "127.0.0.1:9001")).toBeUndefined();
  });

  it("compares internationalised names in their ASCII form", () => {
    expect(match("https://bücher.example/x", "xn--bcher-kva.example")).toBe("exact");
  });
});
