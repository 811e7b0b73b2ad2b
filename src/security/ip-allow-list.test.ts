import { describe, expect, it } from "vitest";
import { AddressListError, createSourceGuard, parseAddress, parseAddressList } from "./ip-allow-list.ts";

describe("parseAddress", () => {
  it.each([
    ["1.2.3.4", { address: "1.2.3.4", family: "ipv4" }],
    [" 10.0.0.1 ", { address: "10.0.0.1", family: "ipv4" }],
    ["::1", { address: "::1", family: "ipv6" }],
    ["2001:DB8:0:0:0:0:0:1", { address: "2001:db8::1", family: "ipv6" }],
    ["fe80::1%eth0", { address: "fe80::1", family: "ipv6" }],
    ["::ffff:1.2.3.4", { address: "1.2.3.4", family: "ipv4" }],
    ["::FFFF:7f00:1", { address: "127.0.0.1", family: "ipv4" }],
    ["0:0:0:0:0:ffff:c0a8:0101", { address: "192.168.1.1", family: "ipv4" }],
    ["::ffff:0.0.0.0", { address: "0.0.0.0", family: "ipv4" }],
    ["::ffff:255.255.255.255", { address: "255.255.255.255", family: "ipv4" }],
  ])("%s", (text, expected) => {
    expect(parseAddress(text)).toEqual(expected);
  });

  it.each([
    "",
    "garbage",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.4/32",
    "::g",
    "1.2.3.4%eth0",
    "unknown",
  ])("rejects %j", (text) => {
    expect(parseAddress(text)).toBeUndefined();
  });

  it("reads an address without port brackets as IPv6, as written", () => {
    // Without brackets the last group cannot be told from a port: 2001:db8:1::7:443 is an address.
    expect(parseAddress("2001:db8:1::7:443")).toEqual({ address: "2001:db8:1::7:443", family: "ipv6" });
  });

  it("keeps IPv4-compatible and NAT64 addresses as IPv6 (they are not mapped)", () => {
    expect(parseAddress("::1.2.3.4")).toEqual({ address: "::102:304", family: "ipv6" });
    expect(parseAddress("64:ff9b::1.2.3.4")).toEqual({ address: "64:ff9b::102:304", family: "ipv6" });
  });
});

describe("parseAddressList", () => {
  it("splits on commas and whitespace and drops blanks", () => {
    expect(parseAddressList(" 10.0.0.0/8, 192.168.1.1 ,,2001:db8::/32\n::1 ")).toEqual([
      "10.0.0.0/8",
      "192.168.1.1",
      "2001:db8::/32",
      "::1",
    ]);
    expect(parseAddressList("")).toEqual([]);
    expect(parseAddressList("  ,  ")).toEqual([]);
    expect(parseAddressList(undefined)).toEqual([]);
  });
});

describe("createSourceGuard: settings", () => {
  it.each([
    ["10.0.0.0/33", /CALLBACK_ALLOWED_IPS: "10.0.0.0\/33".*0-32/],
    ["2001:db8::/129", /0-128/],
    ["10.0.0.0/", /prefix/],
    ["10.0.0.0/-1", /prefix/],
    ["10.0.0.0/8/8", /more than one/],
    ["10.0.0.0/a", /prefix/],
    ["example.com", /not an IPv4 or IPv6/],
    ["300.1.1.1", /not an IPv4 or IPv6/],
    ["", /not an IPv4 or IPv6/],
    ["fe80::1%eth0", /zone/],
    ["::ffff:10.0.0.0/80", /at least 96/],
  ])("throws for allow entry %j, naming it", (entry, message) => {
    expect(() => createSourceGuard({ allow: [entry], trustedProxies: [] })).toThrow(AddressListError);
    expect(() => createSourceGuard({ allow: [entry], trustedProxies: [] })).toThrow(message);
  });

  it("names TRUSTED_PROXIES for a bad proxy entry", () => {
    expect(() => createSourceGuard({ allow: [], trustedProxies: ["10.0.0.0/8", "lb.internal"] })).toThrow(
      'TRUSTED_PROXIES: "lb.internal"',
    );
  });
});

describe("createSourceGuard: isAllowed", () => {
  const guard = createSourceGuard({
    allow: ["59.111.0.0/16", "101.71.154.36", "2001:db8:abcd::/48", "2400:cb00::1", "::ffff:203.0.113.0/120"],
    trustedProxies: [],
  });

  it("allows everything when the allow list is empty, even non-addresses", () => {
    const open = createSourceGuard({ allow: [], trustedProxies: [] });
    expect(open.restricted).toBe(false);
    expect(open.isAllowed("8.8.8.8")).toBe(true);
    expect(open.isAllowed("::1")).toBe(true);
    expect(open.isAllowed("invalid:garbage")).toBe(true);
  });

  it("checks IPv4 CIDR edges", () => {
    expect(guard.restricted).toBe(true);
    expect(guard.isAllowed("59.111.0.0")).toBe(true);
    expect(guard.isAllowed("59.111.255.255")).toBe(true);
    expect(guard.isAllowed("59.110.255.255")).toBe(false);
    expect(guard.isAllowed("59.112.0.0")).toBe(false);
  });

  it("checks single IPv4 addresses exactly", () => {
    expect(guard.isAllowed("101.71.154.36")).toBe(true);
    expect(guard.isAllowed("101.71.154.37")).toBe(false);
    expect(guard.isAllowed("101.71.154.35")).toBe(false);
  });

  it("checks IPv6 CIDR edges and single addresses in any spelling", () => {
    expect(guard.isAllowed("2001:db8:abcd::")).toBe(true);
    expect(guard.isAllowed("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff")).toBe(true);
    expect(guard.isAllowed("2001:DB8:ABCD:0:0:0:0:1")).toBe(true);
    expect(guard.isAllowed("2001:db8:abce::")).toBe(false);
    expect(guard.isAllowed("2001:db8:abcc:ffff::")).toBe(false);
    expect(guard.isAllowed("2400:cb00:0::1")).toBe(true);
    expect(guard.isAllowed("2400:cb00::2")).toBe(false);
  });

  it("treats IPv4-mapped IPv6 as the IPv4 address, both for addresses and rules", () => {
    expect(guard.isAllowed("::ffff:59.111.1.2")).toBe(true);
    expect(guard.isAllowed("::ffff:3b6f:102")).toBe(true);
    expect(guard.isAllowed("::ffff:59.112.1.2")).toBe(false);
    // The rule ::ffff:203.0.113.0/120 is 203.0.113.0/24.
    expect(guard.isAllowed("203.0.113.255")).toBe(true);
    expect(guard.isAllowed("::ffff:203.0.113.7")).toBe(true);
    expect(guard.isAllowed("203.0.114.0")).toBe(false);
  });

  it("does not confuse families", () => {
    const v4Only = createSourceGuard({ allow: ["0.0.0.0/0"], trustedProxies: [] });
    expect(v4Only.isAllowed("1.2.3.4")).toBe(true);
    expect(v4Only.isAllowed("::1")).toBe(false);
    const v6Only = createSourceGuard({ allow: ["::/0"], trustedProxies: [] });
    expect(v6Only.isAllowed("2001:db8::1")).toBe(true);
    expect(v6Only.isAllowed("1.2.3.4")).toBe(false);
    expect(v6Only.isAllowed("::ffff:1.2.3.4")).toBe(false);
  });

  it("ignores host bits below the prefix", () => {
    const hostBits = createSourceGuard({ allow: ["10.1.2.3/8", "2001:db8::1/32"], trustedProxies: [] });
    expect(hostBits.isAllowed("10.255.255.255")).toBe(true);
    expect(hostBits.isAllowed("11.0.0.0")).toBe(false);
    expect(hostBits.isAllowed("2001:db8:ffff::")).toBe(true);
  });

  it("handles /32, /128 and /0 prefixes", () => {
    const exact = createSourceGuard({ allow: ["1.2.3.4/32", "2001:db8::1/128"], trustedProxies: [] });
    expect(exact.isAllowed("1.2.3.4")).toBe(true);
    expect(exact.isAllowed("1.2.3.5")).toBe(false);
    expect(exact.isAllowed("2001:db8::1")).toBe(true);
    expect(exact.isAllowed("2001:db8::2")).toBe(false);
  });

  it("never allows a non-address when restricted", () => {
    for (const text of ["", "garbage", "invalid:1.2.3.4", "59.111.0.0/16", "59.111.1.1:80", "unknown"]) {
      expect(guard.isAllowed(text)).toBe(false);
    }
  });
});

describe("createSourceGuard: clientAddress", () => {
  const guard = createSourceGuard({
    allow: ["59.111.0.0/16", "2001:db8:1::/48"],
    trustedProxies: ["10.0.0.0/8", "fd00::/8", "127.0.0.1"],
  });

  it("uses the peer when there is no X-Forwarded-For", () => {
    expect(guard.clientAddress("59.111.1.1", undefined)).toBe("59.111.1.1");
    expect(guard.clientAddress("10.0.0.5", undefined)).toBe("10.0.0.5");
    expect(guard.clientAddress("10.0.0.5", "")).toBe("10.0.0.5");
    expect(guard.clientAddress("10.0.0.5", "  ")).toBe("10.0.0.5");
    expect(guard.clientAddress("10.0.0.5", [])).toBe("10.0.0.5");
  });

  it("normalises a mapped peer", () => {
    expect(guard.clientAddress("::ffff:59.111.1.1", undefined)).toBe("59.111.1.1");
    // A mapped trusted proxy is still trusted.
    expect(guard.clientAddress("::ffff:10.0.0.5", "59.111.2.2")).toBe("59.111.2.2");
  });

  it("ignores a spoofed X-Forwarded-For from an untrusted peer", () => {
    const address = guard.clientAddress("8.8.8.8", "59.111.1.1");
    expect(address).toBe("8.8.8.8");
    expect(guard.isAllowed(address)).toBe(false);
  });

  it("believes the entry a trusted proxy added", () => {
    expect(guard.clientAddress("10.0.0.5", "59.111.1.1")).toBe("59.111.1.1");
    expect(guard.clientAddress("127.0.0.1", "203.0.113.9")).toBe("203.0.113.9");
  });

  it("takes the first untrusted entry from the right, not a spoofed one further left", () => {
    // The client sent "59.111.1.1" itself; our proxy appended the real peer 8.8.8.8.
    const address = guard.clientAddress("10.0.0.5", "59.111.1.1, 8.8.8.8");
    expect(address).toBe("8.8.8.8");
    expect(guard.isAllowed(address)).toBe(false);
  });

  it("walks a chain of trusted proxies", () => {
    expect(guard.clientAddress("10.0.0.5", "59.111.3.3, 10.2.2.2, 10.1.1.1")).toBe("59.111.3.3");
    expect(guard.clientAddress("10.0.0.5", "1.1.1.1, 59.111.3.3, 10.2.2.2, 10.1.1.1")).toBe("59.111.3.3");
    expect(guard.clientAddress("fd00::5", "2001:db8:1::9, fd12::1")).toBe("2001:db8:1::9");
  });

  it("joins several X-Forwarded-For headers in order", () => {
    expect(guard.clientAddress("10.0.0.5", ["1.1.1.1, 59.111.3.3", "10.2.2.2"])).toBe("59.111.3.3");
    expect(guard.clientAddress("10.0.0.5", ["59.111.3.3", "8.8.4.4"])).toBe("8.8.4.4");
  });

  it("returns the furthest hop when every hop is trusted", () => {
    expect(guard.clientAddress("10.0.0.5", "10.3.3.3, 10.2.2.2")).toBe("10.3.3.3");
  });

  it("accepts ports and brackets some balancers add", () => {
    expect(guard.clientAddress("10.0.0.5", "59.111.4.4:51234")).toBe("59.111.4.4");
    expect(guard.clientAddress("10.0.0.5", "[2001:db8:1::7]:443")).toBe("2001:db8:1::7");
    expect(guard.clientAddress("10.0.0.5", "[2001:db8:1::8]")).toBe("2001:db8:1::8");
    expect(guard.clientAddress("10.0.0.5", "::ffff:59.111.4.5")).toBe("59.111.4.5");
  });

  it.each([
    ["garbage", "invalid:garbage"],
    ["unknown", "invalid:unknown"],
    ["59.111.1.1, , 10.2.2.2", "invalid:"],
    ["59.111.1.1,", "invalid:"],
    ["59.111.1.1, _hidden", "invalid:_hidden"],
    ["[59.111.1.1]", "invalid:[59.111.1.1]"],
    ["59.111.1.1:port", "invalid:59.111.1.1:port"],
    ["59.111.1.1/32", "invalid:59.111.1.1/32"],
    ["2001:db8:1::7::443", "invalid:2001:db8:1::7::443"],
    ["::1%", "invalid:::1%"],
  ])("stops at malformed X-Forwarded-For %j and never allows it", (header, expected) => {
    const address = guard.clientAddress("10.0.0.5", header);
    expect(address).toBe(expected);
    expect(guard.isAllowed(address)).toBe(false);
  });

  it("ignores garbage left of the first untrusted entry", () => {
    expect(guard.clientAddress("10.0.0.5", "garbage, 59.111.5.5, 10.1.1.1")).toBe("59.111.5.5");
  });

  it("bounds a huge garbage entry", () => {
    const address = guard.clientAddress("10.0.0.5", "x".repeat(10_000));
    expect(address.length).toBeLessThanOrEqual(64 + "invalid:".length);
  });

  it("marks a peer that is not an address", () => {
    expect(guard.clientAddress(undefined, "59.111.1.1")).toBe("invalid:");
    expect(guard.clientAddress("not-an-ip", "59.111.1.1")).toBe("invalid:not-an-ip");
    expect(guard.isAllowed(guard.clientAddress(undefined, undefined))).toBe(false);
  });

  it("ignores X-Forwarded-For entirely when no proxy is trusted", () => {
    const direct = createSourceGuard({ allow: ["59.111.0.0/16"], trustedProxies: [] });
    expect(direct.clientAddress("10.0.0.5", "59.111.1.1")).toBe("10.0.0.5");
    expect(direct.clientAddress("127.0.0.1", "59.111.1.1")).toBe("127.0.0.1");
  });
});
