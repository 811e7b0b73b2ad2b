/**
 * Which IP addresses a media fetch may connect to. A media URL is chosen by whoever sent the message,
 * so a host name that resolves to the bridge's own network (a metadata service, Redis, the admin port
 * of a neighbour) must not be fetched: that is server-side request forgery. This module answers one
 * question, "is this address public unicast internet?", for IPv4 and every IPv6 spelling of it.
 *
 * The ranges follow IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and later):
 * anything not globally reachable unicast is "special" here. IPv6 forms that carry an IPv4 address
 * (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4
 * address, so `::ffff:127.0.0.1` is loopback like `127.0.0.1`.
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";

const specialIpv4 = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8], // "this network"; 0.0.0.0 reaches the local host on Linux
  ["10.0.0.0", 8], // private
  ["100.64.0.0", 10], // carrier-grade NAT (shared address space)
  ["127.0.0.0", 8], // loopback
  ["169.254.0.0", 16], // link-local, where cloud metadata services live (169.254.169.254)
  ["172.16.0.0", 12], // private
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.31.196.0", 24], // AS112
  ["192.52.193.0", 24], // AMT
  ["192.88.99.0", 24], // deprecated 6to4 relay anycast
  ["192.168.0.0", 16], // private
  ["192.175.48.0", 24], // direct delegation AS112
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24], // documentation
  ["203.0.113.0", 24], // documentation
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, and 255.255.255.255 broadcast
] as const) {
  specialIpv4.addSubnet(network, prefix, "ipv4");
}

const specialIpv6 = new BlockList();
for (const [network, prefix] of [
  ["::", 96], // unspecified, loopback (::1) and the deprecated IPv4-compatible form ::a.b.c.d
  ["64:ff9b:1::", 48], // local-use NAT64
  ["100::", 64], // discard-only
  ["2001::", 23], // IETF protocol assignments, Teredo (2001::/32) included
  ["2001:db8::", 32], // documentation
  ["3fff::", 20], // documentation (RFC 9637)
  ["5f00::", 16], // segment routing SIDs
  ["fc00::", 7], // unique-local
  ["fe80::", 10], // link-local
  ["fec0::", 10], // deprecated site-local
  ["ff00::", 8], // multicast
] as const) {
  specialIpv6.addSubnet(network, prefix, "ipv6");
}

/** Why an address was refused, for logs and tests; undefined for a public unicast address. */
export type SpecialAddressReason = "special-ipv4" | "special-ipv6" | "not-an-ip";

/**
 * Undefined when `address` is a public unicast address a media fetch may connect to; otherwise the
 * reason it may not. Accepts any textual IPv4 or IPv6 form (with or without brackets or a zone).
 *
 * @example
 * specialAddressReason("93.184.216.34"); // undefined
 * specialAddressReason("::ffff:127.0.0.1"); // "special-ipv4"
 * specialAddressReason("fe80::1%eth0"); // "special-ipv6"
 */
export function specialAddressReason(address: string): SpecialAddressReason | undefined {
  const bare = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (isIPv4(bare)) return specialIpv4.check(bare, "ipv4") ? "special-ipv4" : undefined;
  if (!isIPv6(bare)) return "not-an-ip";
  const bytes = ipv6Bytes(bare);
  if (bytes === undefined) return "not-an-ip";
  const embedded = embeddedIpv4(bytes);
  if (embedded !== undefined) return specialIpv4.check(embedded, "ipv4") ? "special-ipv4" : undefined;
  return specialIpv6.check(bare, "ipv6") ? "special-ipv6" : undefined;
}

/** True when `address` is not a public unicast address (see {@link specialAddressReason}). */
export function isSpecialAddress(address: string): boolean {
  return specialAddressReason(address) !== undefined;
}

/**
 * The IPv4 address an IPv6 address stands for, when it is one of the forms that deliver to an IPv4
 * host: IPv4-mapped (::ffff:0:0/96), NAT64 well-known prefix (64:ff9b::/96) or 6to4 (2002::/16).
 */
function embeddedIpv4(bytes: Uint8Array): string | undefined {
  const startsWith = (prefix: number[]) => prefix.every((value, index) => bytes[index] === value);
  if (startsWith([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])) return dotted(bytes, 12);
  if (startsWith([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])) return dotted(bytes, 12);
  if (startsWith([0x20, 0x02])) return dotted(bytes, 2);
  return undefined;
}

function dotted(bytes: Uint8Array, offset: number): string {
  return Array.from(bytes.subarray(offset, offset + 4)).join(".");
}

/**
 * The 16 bytes of a textual IPv6 address. The WHATWG URL parser does the hard part (it rewrites a
 * trailing dotted IPv4 into hex and compresses zeros), so only `::` expansion is left here.
 */
function ipv6Bytes(address: string): Uint8Array | undefined {
  let canonical: string;
  try {
    canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  const [head = "", tail] = canonical.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - headGroups.length - tailGroups.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  const groups = [...headGroups, ...Array<string>(missing).fill("0"), ...tailGroups];
  const bytes = new Uint8Array(16);
  groups.forEach((group, index) => {
    const value = Number.parseInt(group, 16);
    bytes[index * 2] = value >> 8;
    bytes[index * 2 + 1] = value & 0xff;
  });
  return bytes;
}
