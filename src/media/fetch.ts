/**
 * The one media fetcher. Every picture, voice note and file the bridge reads goes through here, and
 * every URL it is given was chosen by a message's sender: treat it as an attack until proven boring.
 *
 * Rules, in the order they are checked:
 * 1. The URL parses, has no user name or password, and is https (http only with `allowHttp`, for
 *    tests and a local NOS stand-in).
 * 2. Its host (and port) is in MEDIA_ALLOWED_HOSTS (./hosts.ts). A host may be an IP literal only
 *    when that literal is listed exactly.
 * 3. The host's DNS answers are checked before connecting: when any answer is not a public unicast
 *    address (./addresses.ts: private, loopback, link-local, unique-local, CGNAT, IPv4-mapped …),
 *    the fetch is refused, unless the host is allowed by an exact (non-wildcard) entry. The socket
 *    then connects to exactly the checked answers (node's `lookup` hook), so a DNS server that
 *    answers differently the second time (DNS rebinding) gets no second question.
 * 4. Redirects are followed by hand, at most `maxRedirects` hops, each new URL going through 1-3.
 * 5. The body is counted while it streams: beyond `maxBytes` the connection is cut. One deadline,
 *    `timeoutMs`, covers every hop and the whole body, so a slow drip cannot hold a worker.
 * 6. The bytes decide the type (magic numbers, `file-type`, imported on the first download so a
 *    bridge that never fetches media does not hold it); the server's Content-Type is ignored.
 *    Formats without magic numbers (plain text, CSV, JSON, Markdown) are accepted only where the
 *    caller asks for text, and only when the bytes hold no NUL byte.
 *
 * Failures are {@link MediaFetchError} with a machine-readable `reason`; messages name the host,
 * never the whole URL (NOS URLs can carry access tokens in the query).
 */
import { promises as dns, type LookupAddress, type LookupOptions } from "node:dns";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { isSpecialAddress } from "./addresses.ts";
import { type AllowedHostEntry, type HostMatch, matchAllowedHost } from "./hosts.ts";

export type MediaFetchFailure =
  /** Not a URL, user info in it, or a scheme other than http(s). */
  | "bad-url"
  /** http:// while only https is allowed. */
  | "insecure-scheme"
  /** Host or port not in MEDIA_ALLOWED_HOSTS (also for a redirect target). */
  | "host-not-allowed"
  /** DNS (or the literal host) points at a non-public address and the host is not allowed by name. */
  | "private-address"
  | "too-many-redirects"
  /** The server answered with a status other than 2xx or a followable redirect. */
  | "http-status"
  /** Declared or counted size above the limit. */
  | "too-large"
  | "timeout"
  /** DNS failure, refused connection, reset … */
  | "network"
  /** The bytes are not one of the accepted types. */
  | "wrong-type";

export class MediaFetchError extends Error {
  constructor(
    readonly reason: MediaFetchFailure,
    message: string,
  ) {
    super(message);
    this.name = "MediaFetchError";
  }
}

export interface MediaFetchSettings {
  /** Parsed MEDIA_ALLOWED_HOSTS (see ./hosts.ts). */
  allowedHosts: readonly AllowedHostEntry[];
  /** MEDIA_MAX_BYTES: the default byte limit of one file. */
  maxBytes: number;
  /** MEDIA_TIMEOUT_MS: one deadline for all hops and the whole body. */
  timeoutMs: number;
  /** MEDIA_ALLOW_HTTP: also fetch http:// URLs (tests, a local stand-in). Default false. */
  allowHttp?: boolean;
  /** MEDIA_MAX_REDIRECTS. Default 3. */
  maxRedirects?: number;
}

/** Which types the caller can use: MIME types as `file-type` names them, and whether text is fine. */
export interface MediaTypeRule {
  mimeTypes: readonly string[];
  /** Accept bytes without a known signature that contain no NUL byte (reported as text/plain). */
  text?: boolean;
}

export interface MediaFetchOptions {
  accept: MediaTypeRule;
  /** A smaller (or larger) limit for this fetch than `settings.maxBytes`. */
  maxBytes?: number;
  signal?: AbortSignal;
}

export interface FetchedMedia {
  bytes: Buffer;
  /** Detected from the bytes, e.g. `image/png`; `text/plain` for accepted text. */
  mimeType: string;
  /** Detected extension without a dot (`png`, `pdf`); undefined for text. */
  extension: string | undefined;
  /** The URL the bytes finally came from (after redirects). */
  url: string;
}

/** DNS answers for a host name, like `dns.promises.lookup(host, { all: true })`. */
export type ResolveHost = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

export interface MediaFetchDependencies {
  /** Replaces the system resolver (tests use it to play a hostile DNS server). */
  resolve?: ResolveHost;
  /**
   * Certificate authorities to trust instead of Node's bundled ones (a private storage with its own
   * CA; tests). Certificates are always verified, and against the host name, never the address.
   */
  ca?: string | Buffer | Array<string | Buffer>;
}

export type MediaFetcher = (url: string, options: MediaFetchOptions) => Promise<FetchedMedia>;

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

const systemResolve: ResolveHost = (hostname) => dns.lookup(hostname, { all: true, verbatim: true });

/** A checked URL and how its host is allowed. */
export interface CheckedMediaUrl {
  url: URL;
  match: Exclude<HostMatch, undefined>;
}

/**
 * Rules 1 and 2 (and the IP-literal half of 3) for one URL, without any network access. Used for
 * every hop, and on its own where the model fetches the URL itself (MEDIA_VISION_PASS_URL).
 */
export function checkMediaUrl(
  text: string,
  settings: Pick<MediaFetchSettings, "allowedHosts" | "allowHttp">,
  base?: URL,
): CheckedMediaUrl {
  let url: URL;
  try {
    url = new URL(text, base);
  } catch {
    throw new MediaFetchError("bad-url", "media URL does not parse");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new MediaFetchError("bad-url", `media URL scheme ${url.protocol} is not fetched`);
  }
  if (url.username !== "" || url.password !== "") {
    // `https://nim.nosdn.127.net@evil.example/` reads as NOS to a person and is evil.example to a parser.
    throw new MediaFetchError("bad-url", "media URL carries a user name or password");
  }
  if (url.protocol === "http:" && settings.allowHttp !== true) {
    throw new MediaFetchError("insecure-scheme", `media host ${url.host} was given over http; only https is fetched`);
  }
  const match = matchAllowedHost(url, settings.allowedHosts);
  if (match === undefined) {
    throw new MediaFetchError("host-not-allowed", `media host ${url.host} is not in MEDIA_ALLOWED_HOSTS`);
  }
  const literal = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(literal) !== 0 && match !== "exact" && isSpecialAddress(literal)) {
    throw new MediaFetchError("private-address", `media host ${url.host} is not a public address`);
  }
  return { url, match };
}

/**
 * Builds the fetcher. One instance serves the whole process; it keeps no connections between files.
 *
 * @example
 * const fetchMedia = createMediaFetcher({ allowedHosts: parseAllowedHosts(DEFAULT_MEDIA_ALLOWED_HOSTS),
 *   maxBytes: 10_000_000, timeoutMs: 15_000 });
 * const picture = await fetchMedia(attachment.url, { accept: { mimeTypes: ["image/png", "image/jpeg"] } });
 */
export function createMediaFetcher(
  settings: MediaFetchSettings,
  dependencies: MediaFetchDependencies = {},
): MediaFetcher {
  const resolve = dependencies.resolve ?? systemResolve;
  const maxRedirects = settings.maxRedirects ?? 3;

  return async (text, options) => {
    const maxBytes = options.maxBytes ?? settings.maxBytes;
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new MediaFetchError("timeout", `media fetch took longer than ${settings.timeoutMs} ms`)),
      settings.timeoutMs,
    );
    const signal = options.signal ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal;
    try {
      let checked = checkMediaUrl(text, settings);
      for (let hop = 0; ; hop += 1) {
        const outcome = await requestOnce(checked, { resolve, maxBytes, signal, ca: dependencies.ca });
        if (outcome.kind === "body") {
          const type = await detectType(outcome.bytes, options.accept);
          return { bytes: outcome.bytes, ...type, url: checked.url.href };
        }
        if (hop >= maxRedirects) {
          throw new MediaFetchError("too-many-redirects", `media fetch redirected more than ${maxRedirects} times`);
        }
        checked = checkMediaUrl(outcome.location, settings, checked.url);
      }
    } finally {
      clearTimeout(timer);
    }
  };
}

type Outcome = { kind: "body"; bytes: Buffer } | { kind: "redirect"; location: string };

interface RequestContext {
  resolve: ResolveHost;
  maxBytes: number;
  signal: AbortSignal;
  ca: MediaFetchDependencies["ca"];
}

function requestOnce(checked: CheckedMediaUrl, context: RequestContext): Promise<Outcome> {
  const { url, match } = checked;
  return new Promise<Outcome>((resolvePromise, rejectPromise) => {
    // The first failure wins; later events from the torn-down request are ignored.
    let settled = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      request.destroy();
      rejectPromise(toFetchError(error, context.signal, url));
    };
    const succeed = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      resolvePromise(outcome);
    };
    if (context.signal.aborted) {
      rejectPromise(toFetchError(context.signal.reason, context.signal, url));
      return;
    }

    let refusal: MediaFetchError | undefined;
    const lookup = (
      hostname: string,
      lookupOptions: LookupOptions,
      callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void,
    ) => {
      context
        .resolve(hostname)
        .then((answers) => {
          if (answers.length === 0) throw new MediaFetchError("network", `media host ${url.host} has no address`);
          if (match !== "exact" && answers.some((answer) => isSpecialAddress(answer.address))) {
            refusal = new MediaFetchError("private-address", `media host ${url.host} resolves to a non-public address`);
            throw refusal;
          }
          const family = lookupOptions.family === 4 || lookupOptions.family === 6 ? lookupOptions.family : 0;
          const usable = answers.filter((answer) => family === 0 || answer.family === family);
          if (usable.length === 0) throw new MediaFetchError("network", `media host ${url.host} has no usable address`);
          if (lookupOptions.all === true) {
            callback(
              null,
              usable.map(({ address, family: addressFamily }) => ({ address, family: addressFamily })),
            );
          } else {
            const first = usable[0]!;
            callback(null, first.address, first.family);
          }
        })
        .catch((error: unknown) => callback(error instanceof Error ? error : new Error(String(error)), []));
    };

    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const request = send(url, {
      method: "GET",
      // No shared agent: every fetch gets its own socket through the checked lookup above.
      agent: false,
      lookup,
      signal: context.signal,
      headers: { accept: "*/*", "accept-encoding": "identity", "user-agent": "im-bridge-media/1" },
      ...(context.ca === undefined ? {} : { ca: context.ca }),
    });
    request.on("error", (error) => fail(refusal ?? error));
    request.on("response", (response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      if (REDIRECT_STATUSES.has(status)) {
        const location = response.headers.location;
        response.resume();
        request.destroy();
        if (location === undefined || location === "") {
          fail(new MediaFetchError("http-status", `media host ${url.host} redirected without a Location`));
        } else {
          succeed({ kind: "redirect", location });
        }
        return;
      }
      if (status < 200 || status > 299) {
        response.resume();
        fail(new MediaFetchError("http-status", `media host ${url.host} answered ${status}`));
        return;
      }
      const declared = Number(response.headers["content-length"]);
      if (Number.isFinite(declared) && declared > context.maxBytes) {
        fail(tooLarge(context.maxBytes));
        return;
      }
      const chunks: Buffer[] = [];
      let received = 0;
      response.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > context.maxBytes) {
          fail(tooLarge(context.maxBytes));
          return;
        }
        chunks.push(chunk);
      });
      response.on("error", fail);
      response.on("aborted", () => fail(new MediaFetchError("network", `media host ${url.host} cut the body short`)));
      response.on("end", () => {
        if (response.complete) succeed({ kind: "body", bytes: Buffer.concat(chunks, received) });
        else fail(new MediaFetchError("network", `media host ${url.host} cut the body short`));
      });
    });
    request.end();
  });
}

function tooLarge(maxBytes: number): MediaFetchError {
  return new MediaFetchError("too-large", `media file is larger than ${maxBytes} bytes`);
}

function toFetchError(error: unknown, signal: AbortSignal, url: URL): MediaFetchError {
  // An abort tears the socket down, which surfaces as a reset or a short body: the deadline (or the
  // caller's cancel) is the real cause, so it wins over whatever the stream reported.
  if (signal.aborted && !(error instanceof MediaFetchError && error.reason !== "network")) {
    const reason: unknown = signal.reason;
    if (reason instanceof MediaFetchError) return reason;
    return new MediaFetchError("timeout", "media fetch was cancelled");
  }
  if (error instanceof MediaFetchError) return error;
  const code = (error as { code?: unknown } | undefined)?.code;
  return new MediaFetchError("network", `media host ${url.host} failed${typeof code === "string" ? `: ${code}` : ""}`);
}

async function detectType(
  bytes: Buffer,
  rule: MediaTypeRule,
): Promise<{ mimeType: string; extension: string | undefined }> {
  const { fileTypeFromBuffer } = await import("file-type");
  const detected = await fileTypeFromBuffer(bytes);
  if (detected !== undefined) {
    if (rule.mimeTypes.includes(detected.mime)) return { mimeType: detected.mime, extension: detected.ext };
    throw new MediaFetchError("wrong-type", `media bytes are ${detected.mime}, not an accepted type`);
  }
  if (rule.text === true && !bytes.includes(0)) return { mimeType: "text/plain", extension: undefined };
  throw new MediaFetchError("wrong-type", "media bytes are not of an accepted type");
}
