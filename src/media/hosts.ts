/**
 * MEDIA_ALLOWED_HOSTS: the hosts media may be fetched from, and the URL rules that go with them.
 *
 * Entries are comma-separated. `name` matches exactly that host; `*.name` matches any host below
 * `name` (not `name` itself); `name:port` or `*.name:port` allows that one non-default port (without
 * one, only the scheme's default port is allowed, so `https://nim.nosdn.127.net:6379/` is refused).
 * IP literals may be listed exactly (`127.0.0.1:8080`, `[::1]:8080`); a wildcard never matches an IP.
 *
 * "Allowed by name" (an exact entry) is what lets a host resolve to a private or loopback address
 * (an operator's own storage, a local test server). A host that is allowed only through a wildcard
 * must resolve to public addresses only: anyone able to create DNS names under a wildcard domain
 * should not be able to point one at the bridge's network. See ./fetch.ts.
 */

/**
 * NIM's media storage (NOS) download hosts. Sources: NetEase's uni-app / mini-program integration
 * guide for nim-web-sdk-ng lists `https://nim-nosdn.netease.im` and `https://nim.nosdn.127.net` as the
 * "downloadFile" domains "文件下载，如下载语音" (confirmed); the RoomKit `nosAccelerate` setting documents
 * the NOS template `{bucket}.nosdn.127.net/{object}` (so `*.nosdn.127.net`, public addresses only).
 * An app with a NOS acceleration (CDN) domain of its own must add it.
 */
export const DEFAULT_MEDIA_ALLOWED_HOSTS = "nim-nosdn.netease.im,nim.nosdn.127.net,*.nosdn.127.net";

export interface AllowedHostEntry {
  /** Lower-cased host without brackets or trailing dot; for a wildcard, the part after `*.`. */
  host: string;
  wildcard: boolean;
  /** The one non-default port this entry allows, if any. */
  port: number | undefined;
}

export class AllowedHostsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AllowedHostsError";
  }
}

/**
 * Parses MEDIA_ALLOWED_HOSTS. Throws {@link AllowedHostsError} naming the first bad entry, so a typo
 * stops the service at start instead of refusing every picture.
 *
 * @example
 * parseAllowedHosts("nim-nosdn.netease.im, *.nosdn.127.net, files.example.com:8443");
 */
export function parseAllowedHosts(text: string): AllowedHostEntry[] {
  const entries: AllowedHostEntry[] = [];
  for (const raw of text.split(",")) {
    const item = raw.trim().toLowerCase();
    if (item === "") continue;
    const wildcard = item.startsWith("*.");
    const rest = wildcard ? item.slice(2) : item;
    // Let the URL parser split host and port and normalise the host (IDN to punycode, IPv4 forms).
    let parsed: URL;
    try {
      parsed = new URL(`http://${rest}/`);
    } catch {
      throw new AllowedHostsError(`MEDIA_ALLOWED_HOSTS: "${raw.trim()}" is not a host name`);
    }
    if (parsed.username !== "" || parsed.password !== "" || parsed.pathname !== "/" || rest.includes("*")) {
      throw new AllowedHostsError(`MEDIA_ALLOWED_HOSTS: "${raw.trim()}" must be host, *.host or host:port`);
    }
    const host = normaliseHost(parsed.hostname);
    if (wildcard && (isIpLiteral(host) || !host.includes("."))) {
      throw new AllowedHostsError(`MEDIA_ALLOWED_HOSTS: "${raw.trim()}" must be *.domain.tld`);
    }
    // new URL drops the port 80 of http://, so read it back from the text when it was written.
    // A written default port (80, 443) is the same as none: URL drops it from media URLs as well.
    const explicitPort = /:(\d+)$/.exec(rest)?.[1];
    const port = explicitPort === undefined || ["80", "443"].includes(explicitPort) ? undefined : Number(explicitPort);
    entries.push({ host, wildcard, port });
  }
  return entries;
}

/** How a URL's host is allowed: by an exact entry, only by a wildcard, or not at all. */
export type HostMatch = "exact" | "wildcard" | undefined;

/**
 * Matches a parsed URL's host and port against the list. The port must be the scheme's default
 * unless the matching entry names it.
 */
export function matchAllowedHost(url: URL, entries: readonly AllowedHostEntry[]): HostMatch {
  const host = normaliseHost(url.hostname);
  const port = url.port === "" ? undefined : Number(url.port);
  let match: HostMatch;
  for (const entry of entries) {
    if (entry.port !== port) continue;
    if (!entry.wildcard && entry.host === host) return "exact";
    if (entry.wildcard && !isIpLiteral(host) && host.endsWith(`.${entry.host}`)) match = "wildcard";
  }
  return match;
}

/** Lower case, brackets of an IPv6 literal removed, one trailing dot (`example.com.`) removed. */
export function normaliseHost(hostname: string): string {
  return hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "");
}

function isIpLiteral(host: string): boolean {
  return host.includes(":") || /^\d+\.\d+\.\d+\.\d+$/.test(host);
}
