/**
 * Source-address checks for NIM's callback: which address a request really comes from (believing
 * X-Forwarded-For only from our own proxies) and whether that address is allowed.
 *
 * The signature check already proves a callback came from someone holding the AppSecret; the
 * allow-list is defence in depth (a leaked secret is not enough from elsewhere) and keeps
 * unsigned noise out of the logs. Settings: CALLBACK_ALLOWED_IPS and TRUSTED_PROXIES, comma-
 * separated IPv4/IPv6 addresses or CIDRs (parseAddressList).
 *
 * X-Forwarded-For is written by every hop, including the client itself, so only the entries added
 * by proxies we trust mean anything: walk the list from the right (the hop nearest to us), skip
 * trusted proxies, and the first untrusted entry is the client. A spoofed entry to its left is
 * never reached. Anything that does not parse stops the walk and is not allowed.
 */
import { BlockList, isIP } from "node:net";

export type AddressFamily = "ipv4" | "ipv6";

export interface ParsedAddress {
  /** Canonical text: IPv4 dotted quad (also for IPv4-mapped IPv6), IPv6 compressed lower-case. */
  address: string;
  family: AddressFamily;
}

export interface SourceGuardOptions {
  /** Addresses or CIDRs allowed to call; empty means every address is allowed (check off). */
  allow: readonly string[];
  /** Addresses or CIDRs of our own reverse proxies / load balancers, whose X-Forwarded-For is believed. */
  trustedProxies: readonly string[];
}

export interface SourceGuard {
  /**
   * The client's address: the direct peer, or, when the peer is a trusted proxy, the first
   * untrusted X-Forwarded-For entry from the right. An entry that is not an address comes back as
   * `invalid:<entry>` (never allowed by a non-empty allow list, recognisable in logs).
   */
  clientAddress(remoteAddress: string | undefined, forwardedFor: string | string[] | undefined): string;
  /** Whether the address may call. Always true when the allow list is empty; false for non-addresses otherwise. */
  isAllowed(address: string): boolean;
  /** Whether any allow rule is configured, so callers can skip the work when not. */
  readonly restricted: boolean;
}

/** A settings entry that is not an address or CIDR; thrown at construction. */
export class AddressListError extends Error {
  override readonly name = "AddressListError";
}

/** The marker in front of an X-Forwarded-For entry (or peer) that is not an address. */
export const INVALID_ADDRESS_PREFIX = "invalid:";
/** How much of a garbage entry is kept, so a hostile header cannot flood a log line. */
const INVALID_ENTRY_LIMIT = 64;

const MAPPED_IPV4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;
const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const BRACKETED_IPV6 = /^\[([^\]]+)\](?::\d{1,5})?$/;

/**
 * Parses one IPv4 or IPv6 address (an IPv6 zone such as `%eth0` is dropped). IPv4-mapped IPv6
 * (`::ffff:1.2.3.4`, which a dual-stack socket reports for IPv4 peers) becomes the IPv4 address,
 * so one IPv4 rule covers both spellings.
 */
export function parseAddress(text: string): ParsedAddress | undefined {
  let value = text.trim();
  // Only a well-formed, non-empty zone is dropped; "::1%" stays and fails to parse.
  if (value.includes(":")) value = value.replace(/%[0-9A-Za-z._~-]+$/, "");
  const version = isIP(value);
  if (version === 4) return { address: value, family: "ipv4" };
  if (version !== 6) return undefined;
  // The WHATWG URL serializer canonicalises IPv6 (compression, lower case, hex instead of dotted tail).
  const canonical = new URL(`http://[${value}]/`).hostname.slice(1, -1);
  const mapped = MAPPED_IPV4.exec(canonical);
  if (mapped) {
    const high = Number.parseInt(mapped[1] ?? "0", 16);
    const low = Number.parseInt(mapped[2] ?? "0", 16);
    return { address: `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`, family: "ipv4" };
  }
  return { address: canonical, family: "ipv6" };
}

/** One X-Forwarded-For entry: a bare address, `1.2.3.4:port` or `[v6]:port` (some balancers add ports). */
function parseForwardedEntry(entry: string): ParsedAddress | undefined {
  const bracketed = BRACKETED_IPV6.exec(entry);
  if (bracketed) {
    const inner = parseAddress(bracketed[1] ?? "");
    // Brackets around an IPv4 address are not a form any proxy writes.
    return inner && (bracketed[1] ?? "").includes(":") ? inner : undefined;
  }
  const withPort = IPV4_WITH_PORT.exec(entry);
  if (withPort) return parseAddress(withPort[1] ?? "");
  return parseAddress(entry);
}

function invalid(text: string | undefined): string {
  return `${INVALID_ADDRESS_PREFIX}${(text ?? "").trim().slice(0, INVALID_ENTRY_LIMIT)}`;
}

/** Splits a comma-separated setting (CALLBACK_ALLOWED_IPS, TRUSTED_PROXIES); blanks are dropped. */
export function parseAddressList(text: string | undefined): string[] {
  if (!text) return [];
  return text
    .split(/[,\s]+/)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
}

/**
 * One BlockList per family: a single BlockList checks IPv4 addresses against IPv6 rules through
 * their mapped form, so "::/0" (meant as "all IPv6") would also allow every IPv4 address.
 */
interface AddressSet {
  lists: Record<AddressFamily, BlockList>;
  size: number;
}

function contains(set: AddressSet, address: ParsedAddress): boolean {
  return set.size > 0 && set.lists[address.family].check(address.address, address.family);
}

function buildAddressSet(entries: readonly string[], setting: string): AddressSet {
  const lists: Record<AddressFamily, BlockList> = { ipv4: new BlockList(), ipv6: new BlockList() };
  for (const entry of entries) {
    const problem = (why: string) =>
      new AddressListError(`${setting}: "${entry}" is not an IP address or CIDR (${why})`);
    const trimmed = entry.trim();
    const parts = trimmed.split("/");
    if (parts.length > 2) throw problem("more than one '/'");
    const addressText = parts[0] ?? "";
    // A zone means nothing in a rule and would be silently dropped by parseAddress.
    if (addressText.includes("%")) throw problem("zone identifiers are not allowed");
    const parsed = parseAddress(addressText);
    if (!parsed) throw problem("not an IPv4 or IPv6 address");
    const address = parsed;
    const writtenAsIpv6 = addressText.includes(":");
    const maximum = writtenAsIpv6 ? 128 : 32;
    if (parts.length === 1) {
      lists[address.family].addAddress(address.address, address.family);
      continue;
    }
    const prefixText = parts[1] ?? "";
    if (!/^\d{1,3}$/.test(prefixText)) throw problem(`prefix must be a number 0-${maximum}`);
    let prefix = Number(prefixText);
    if (prefix > maximum) throw problem(`prefix must be 0-${maximum}`);
    if (writtenAsIpv6 && address.family === "ipv4") {
      // ::ffff:a.b.c.d/n is an IPv4 range written in IPv6; below /96 it would also cover non-mapped IPv6.
      if (prefix < 96) throw problem("an IPv4-mapped range needs a prefix of at least 96; write it as IPv4");
      prefix -= 96;
    }
    // Host bits below the prefix are ignored (10.0.0.1/8 is 10.0.0.0/8), as BlockList does.
    lists[address.family].addSubnet(address.address, prefix, address.family);
  }
  return { lists, size: entries.length };
}

/**
 * Builds the guard; throws AddressListError naming the first bad entry, so a typo in the settings
 * stops the start instead of silently allowing or refusing everyone.
 */
export function createSourceGuard(options: SourceGuardOptions): SourceGuard {
  const allow = buildAddressSet(options.allow, "CALLBACK_ALLOWED_IPS");
  const trusted = buildAddressSet(options.trustedProxies, "TRUSTED_PROXIES");
  const isTrusted = (address: ParsedAddress) => contains(trusted, address);

  return {
    restricted: allow.size > 0,
    clientAddress(remoteAddress, forwardedFor) {
      const peer = parseAddress(remoteAddress ?? "");
      if (!peer) return invalid(remoteAddress);
      // From an untrusted peer the header is whatever the client wrote: ignore it entirely.
      if (!isTrusted(peer)) return peer.address;
      const header = Array.isArray(forwardedFor) ? forwardedFor.join(",") : (forwardedFor ?? "");
      if (header.trim() === "") return peer.address;
      const entries = header.split(",");
      let client = peer;
      for (let index = entries.length - 1; index >= 0; index -= 1) {
        const entry = (entries[index] ?? "").trim();
        const parsed = parseForwardedEntry(entry);
        // Garbage (including an empty element) cannot be a proxy we trust, so it ends the walk.
        if (!parsed) return invalid(entry);
        client = parsed;
        if (!isTrusted(parsed)) return parsed.address;
      }
      // Every hop is a trusted proxy: the furthest one is the best we know.
      return client.address;
    },
    isAllowed(address) {
      if (allow.size === 0) return true;
      const parsed = parseAddress(address);
      return parsed !== undefined && contains(allow, parsed);
    },
  };
}
