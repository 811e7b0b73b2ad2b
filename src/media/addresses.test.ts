import { describe, expect, it } from "vitest";
import { isSpecialAddress, specialAddressReason } from "./addresses.ts";

describe("specialAddressReason", () => {
  it.each([
    "93.184.216.34",
    "8.8.8.8",
    "59.111.181.35", // a NetEase address
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
  ])("lets the public address %s through", (address) => {
    expect(specialAddressReason(address)).toBeUndefined();
  });

  it.each([
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254", // cloud metadata
    "100.64.0.1", // carrier-grade NAT
    "100.127.255.255",
    "198.18.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "192.0.2.10",
  ])("refuses the IPv4 address %s", (address) => {
    expect(specialAddressReason(address)).toBe("special-ipv4");
  });

  it.each([
    ["::1", "special-ipv6"],
    ["[::1]", "special-ipv6"],
    ["::", "special-ipv6"],
    ["0:0:0:0:0:0:0:1", "special-ipv6"],
    ["fe80::1", "special-ipv6"],
    ["fe80::1%eth0", "special-ipv6"],
    ["fd12:3456:789a::1", "special-ipv6"], // unique-local
    ["fc00::1", "special-ipv6"],
    ["ff02::1", "special-ipv6"],
    ["2001:db8::1", "special-ipv6"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "special-ipv6"], // Teredo
    ["::ffff:127.0.0.1", "special-ipv4"], // IPv4-mapped loopback
    ["::ffff:7f00:1", "special-ipv4"], // the same in hex
    ["::FFFF:10.0.0.1", "special-ipv4"],
    ["::ffff:169.254.169.254", "special-ipv4"],
    ["64:ff9b::192.168.0.1", "special-ipv4"], // NAT64 to a private address
    ["2002:c0a8:0101::1", "special-ipv4"], // 6to4 of 192.168.1.1
    ["::127.0.0.1", "special-ipv6"], // deprecated IPv4-compatible form
  ])("refuses the IPv6 form %s", (address, reason) => {
    expect(specialAddressReason(address)).toBe(reason);
  });

  it("judges IPv6 forms that embed a public IPv4 address by that address", () => {
    expect(specialAddressReason("::ffff:8.8.8.8")).toBeUndefined();
    expect(specialAddressReason("64:ff9b::8.8.8.8")).toBeUndefined();
  });

  it("treats anything that is not an IP address as refused", () => {
    expect(specialAddressReason("localhost")).toBe("not-an-ip");
    expect(specialAddressReason("")).toBe("not-an-ip");
    expect(specialAddressReason("1.2.3")).toBe("not-an-ip");
    expect(isSpecialAddress("example.com")).toBe(true);
  });
});
