import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import sharp from "sharp";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  checkMediaUrl,
  createMediaFetcher,
  MediaFetchError,
  type MediaFetchSettings,
  type MediaTypeRule,
  type ResolveHost,
} from "./fetch.ts";
import { parseAllowedHosts } from "./hosts.ts";

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

const IMAGES: MediaTypeRule = { mimeTypes: ["image/png", "image/jpeg"] };
const TEXT: MediaTypeRule = { mimeTypes: ["application/pdf"], text: true };

let png: Buffer;
beforeAll(async () => {
  png = await sharp({ create: { width: 4, height: 3, channels: 3, background: "#ff0000" } })
    .png()
    .toBuffer();
});

describe("createMediaFetcher", () => {
  let server: Server;
  let port: number;
  let origin: string;
  const routes = new Map<string, Handler>();
  const seen: string[] = [];
  let closedEarly = 0;

  beforeEach(async () => {
    routes.clear();
    seen.length = 0;
    closedEarly = 0;
    server = createServer((request, response) => {
      seen.push(request.url ?? "");
      response.on("close", () => {
        if (!response.writableFinished) closedEarly += 1;
      });
      const handler = routes.get(request.url ?? "");
      if (handler) handler(request, response);
      else response.writeHead(404).end("not found");
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as AddressInfo).port;
    origin = `http://127.0.0.1:${port}`;
  });

  afterEach(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, "close");
  });

  const settings = (overrides: Partial<MediaFetchSettings> & { hosts?: string } = {}): MediaFetchSettings => ({
    allowedHosts: parseAllowedHosts(overrides.hosts ?? `127.0.0.1:${port}`),
    maxBytes: overrides.maxBytes ?? 1024 * 1024,
    timeoutMs: overrides.timeoutMs ?? 5_000,
    allowHttp: overrides.allowHttp ?? true,
    maxRedirects: overrides.maxRedirects ?? 3,
  });

  const servePng: Handler = (_request, response) => {
    response.writeHead(200, { "content-type": "image/png" }).end(png);
  };

  const reasonOf = async (promise: Promise<unknown>): Promise<string> => {
    try {
      await promise;
    } catch (error) {
      if (error instanceof MediaFetchError) return error.reason;
      throw error;
    }
    throw new Error("expected the fetch to fail");
  };

  it("fetches a picture from an allowed host and types it by its bytes", async () => {
    routes.set("/picture", servePng);
    const fetchMedia = createMediaFetcher(settings());
    const result = await fetchMedia(`${origin}/picture`, { accept: IMAGES });
    expect(result.bytes.equals(png)).toBe(true);
    expect(result.mimeType).toBe("image/png");
    expect(result.extension).toBe("png");
    expect(result.url).toBe(`${origin}/picture`);
  });

  it("believes the bytes, not the declared Content-Type", async () => {
    routes.set("/lying-png", (_request, response) => response.writeHead(200, { "content-type": "text/html" }).end(png));
    routes.set("/html", (_request, response) =>
      response.writeHead(200, { "content-type": "image/png" }).end("<html><script>alert(1)</script></html>"),
    );
    const fetchMedia = createMediaFetcher(settings());
    expect((await fetchMedia(`${origin}/lying-png`, { accept: IMAGES })).mimeType).toBe("image/png");
    expect(await reasonOf(fetchMedia(`${origin}/html`, { accept: IMAGES }))).toBe("wrong-type");
  });

  it("refuses a known type the caller did not ask for", async () => {
    routes.set("/picture", servePng);
    const fetchMedia = createMediaFetcher(settings());
    expect(await reasonOf(fetchMedia(`${origin}/picture`, { accept: { mimeTypes: ["audio/aac"] } }))).toBe(
      "wrong-type",
    );
    // A PNG is not text either, even where text is welcome.
    expect(await reasonOf(fetchMedia(`${origin}/picture`, { accept: TEXT }))).toBe("wrong-type");
  });

  it("accepts text only where asked and only without NUL bytes", async () => {
    routes.set("/notes.csv", (_request, response) => response.end("name,score\n张三,90\n"));
    routes.set("/binary", (_request, response) => response.end(Buffer.from([0x41, 0x00, 0x42, 0x00])));
    const fetchMedia = createMediaFetcher(settings());
    const text = await fetchMedia(`${origin}/notes.csv`, { accept: TEXT });
    expect(text.mimeType).toBe("text/plain");
    expect(text.extension).toBeUndefined();
    expect(await reasonOf(fetchMedia(`${origin}/notes.csv`, { accept: IMAGES }))).toBe("wrong-type");
    expect(await reasonOf(fetchMedia(`${origin}/binary`, { accept: TEXT }))).toBe("wrong-type");
  });

  describe("URLs", () => {
    it.each([
      ["not a URL", "bad-url"],
      ["file:///etc/passwd", "bad-url"],
      ["ftp://127.0.0.1/x", "bad-url"],
      ["javascript:alert(1)", "bad-url"],
      ["data:image/png;base64,iVBORw0KGgo=", "bad-url"],
    ])("refuses %s", async (url, reason) => {
      const fetchMedia = createMediaFetcher(settings());
      expect(await reasonOf(fetchMedia(url, { accept: IMAGES }))).toBe(reason);
    });

    it("refuses user info, which makes a URL read as one host and go to another", async () => {
      routes.set("/picture", servePng);
      const fetchMedia = createMediaFetcher(settings({ hosts: `127.0.0.1:${port},nim.nosdn.127.net` }));
      expect(await reasonOf(fetchMedia(`http://nim.nosdn.127.net@127.0.0.1:${port}/picture`, { accept: IMAGES }))).toBe(
        "bad-url",
      );
      expect(await reasonOf(fetchMedia(`http://user:secret@127.0.0.1:${port}/picture`, { accept: IMAGES }))).toBe(
        "bad-url",
      );
      expect(seen).toEqual([]);
    });

    it("refuses http unless MEDIA_ALLOW_HTTP is on", async () => {
      routes.set("/picture", servePng);
      const fetchMedia = createMediaFetcher(settings({ allowHttp: false }));
      expect(await reasonOf(fetchMedia(`${origin}/picture`, { accept: IMAGES }))).toBe("insecure-scheme");
      expect(seen).toEqual([]);
    });

    it("refuses hosts and ports that are not listed", async () => {
      routes.set("/picture", servePng);
      const fetchMedia = createMediaFetcher(settings());
      // Same address, other spellings: none of them is the listed literal.
      for (const url of [
        `http://localhost:${port}/picture`,
        `http://127.0.0.2:${port}/picture`,
        `http://127.0.0.1:${port + 1}/picture`,
        `http://127.0.0.1/picture`,
        `http://[::1]:${port}/picture`,
        `http://[::ffff:127.0.0.1]:${port}/picture`,
        `http://2130706433:${port + 1}/picture`,
        `http://169.254.169.254/latest/meta-data/`,
      ]) {
        expect(await reasonOf(fetchMedia(url, { accept: IMAGES })), url).toBe("host-not-allowed");
      }
      expect(seen).toEqual([]);
    });

    it("normalises numeric IPv4 spellings before matching, as a browser would", async () => {
      routes.set("/picture", servePng);
      const fetchMedia = createMediaFetcher(settings());
      // 0x7f.0.0.1 and 2130706433 are 127.0.0.1: the listed literal, so they are fetched.
      expect((await fetchMedia(`http://0x7f.0.0.1:${port}/picture`, { accept: IMAGES })).mimeType).toBe("image/png");
      expect((await fetchMedia(`http://2130706433:${port}/picture`, { accept: IMAGES })).mimeType).toBe("image/png");
    });

    it("never matches an IP literal through a wildcard", () => {
      const allowedHosts = parseAllowedHosts("*.nosdn.127.net");
      expect(() => checkMediaUrl("https://127.0.0.1/x", { allowedHosts })).toThrow(MediaFetchError);
      expect(() => checkMediaUrl("https://[::1]/x", { allowedHosts })).toThrow(MediaFetchError);
      expect(checkMediaUrl("https://yx-web.nosdn.127.net/x", { allowedHosts }).match).toBe("wildcard");
      expect(() => checkMediaUrl("https://nosdn.127.net.evil.example/x", { allowedHosts })).toThrow(MediaFetchError);
    });
  });

  describe("redirects", () => {
    it("follows a chain of allowed redirects, relative ones included", async () => {
      routes.set("/a", (_request, response) => response.writeHead(302, { location: `${origin}/b` }).end());
      routes.set("/b", (_request, response) => response.writeHead(301, { location: "/c" }).end());
      routes.set("/c", (_request, response) => response.writeHead(307, { location: "d" }).end());
      routes.set("/d", servePng);
      const fetchMedia = createMediaFetcher(settings());
      const result = await fetchMedia(`${origin}/a`, { accept: IMAGES });
      expect(result.url).toBe(`${origin}/d`);
      expect(seen).toEqual(["/a", "/b", "/c", "/d"]);
    });

    it("stops after the maximum number of hops", async () => {
      for (let index = 0; index < 10; index += 1) {
        routes.set(`/hop${index}`, (_request, response) =>
          response.writeHead(302, { location: `/hop${index + 1}` }).end(),
        );
      }
      const fetchMedia = createMediaFetcher(settings({ maxRedirects: 2 }));
      expect(await reasonOf(fetchMedia(`${origin}/hop0`, { accept: IMAGES }))).toBe("too-many-redirects");
      expect(seen).toEqual(["/hop0", "/hop1", "/hop2"]);
    });

    it("treats a redirect loop like a long chain", async () => {
      routes.set("/loop", (_request, response) => response.writeHead(302, { location: "/loop" }).end());
      const fetchMedia = createMediaFetcher(settings());
      expect(await reasonOf(fetchMedia(`${origin}/loop`, { accept: IMAGES }))).toBe("too-many-redirects");
      expect(seen).toHaveLength(4);
    });

    it.each([
      "http://169.254.169.254/latest/meta-data/",
      "http://localhost/admin",
      "http://[::1]/",
      "https://evil.example/picture.png",
      "gopher://127.0.0.1:6379/_FLUSHALL",
    ])("refuses a redirect to %s", async (target) => {
      routes.set("/redirect", (_request, response) => response.writeHead(302, { location: target }).end());
      const fetchMedia = createMediaFetcher(settings());
      const reason = await reasonOf(fetchMedia(`${origin}/redirect`, { accept: IMAGES }));
      expect(["host-not-allowed", "bad-url"]).toContain(reason);
      expect(seen).toEqual(["/redirect"]);
    });

    it("refuses a redirect from https to http when only https is allowed", () => {
      const allowedHosts = parseAllowedHosts("nim.nosdn.127.net");
      const base = new URL("https://nim.nosdn.127.net/a");
      expect(() => checkMediaUrl("http://nim.nosdn.127.net/b", { allowedHosts }, base)).toThrow(/only https/);
    });

    it("reports a redirect without a Location", async () => {
      routes.set("/nowhere", (_request, response) => response.writeHead(302).end());
      const fetchMedia = createMediaFetcher(settings());
      expect(await reasonOf(fetchMedia(`${origin}/nowhere`, { accept: IMAGES }))).toBe("http-status");
    });
  });

  describe("limits", () => {
    it("refuses a declared Content-Length above the limit without reading the body", async () => {
      routes.set("/big", (_request, response) => {
        response.writeHead(200, { "content-length": String(10 * 1024 * 1024) });
        response.write(png);
      });
      const fetchMedia = createMediaFetcher(settings({ maxBytes: 64 * 1024 }));
      expect(await reasonOf(fetchMedia(`${origin}/big`, { accept: IMAGES }))).toBe("too-large");
    });

    it("counts an undeclared (chunked) body and cuts it off past the limit", async () => {
      let written = 0;
      routes.set("/endless", (_request, response) => {
        response.writeHead(200, { "content-type": "image/png" });
        const chunk = Buffer.alloc(16 * 1024, 1);
        const pump = () => {
          while (!response.destroyed && written < 50 * 1024 * 1024) {
            written += chunk.length;
            if (!response.write(chunk)) {
              response.once("drain", pump);
              return;
            }
          }
          if (!response.destroyed) response.end();
        };
        pump();
      });
      const fetchMedia = createMediaFetcher(settings({ maxBytes: 100 * 1024 }));
      expect(await reasonOf(fetchMedia(`${origin}/endless`, { accept: IMAGES }))).toBe("too-large");
      await new Promise((resolve) => setImmediate(resolve));
      expect(written).toBeLessThan(50 * 1024 * 1024);
    });

    it("allows a per-fetch limit below the default", async () => {
      routes.set("/picture", servePng);
      const fetchMedia = createMediaFetcher(settings());
      expect(await reasonOf(fetchMedia(`${origin}/picture`, { accept: IMAGES, maxBytes: 10 }))).toBe("too-large");
    });

    it("gives up on a body that drips slower than the deadline", async () => {
      routes.set("/drip", (_request, response) => {
        response.writeHead(200, { "content-type": "image/png" });
        response.write(png.subarray(0, 8));
        const timer = setInterval(() => response.write(Buffer.from([0])), 20);
        response.on("close", () => clearInterval(timer));
      });
      const fetchMedia = createMediaFetcher(settings({ timeoutMs: 200 }));
      expect(await reasonOf(fetchMedia(`${origin}/drip`, { accept: IMAGES }))).toBe("timeout");
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(closedEarly).toBe(1);
    });

    it("gives up on a server that never answers", async () => {
      routes.set("/silent", () => {});
      const fetchMedia = createMediaFetcher(settings({ timeoutMs: 150 }));
      expect(await reasonOf(fetchMedia(`${origin}/silent`, { accept: IMAGES }))).toBe("timeout");
    });

    it("stops when the caller cancels", async () => {
      routes.set("/silent", () => {});
      const fetchMedia = createMediaFetcher(settings());
      const controller = new AbortController();
      const pending = fetchMedia(`${origin}/silent`, { accept: IMAGES, signal: controller.signal });
      setTimeout(() => controller.abort(), 20);
      expect(await reasonOf(pending)).toBe("timeout");
    });

    it("reports error statuses and a body cut short", async () => {
      routes.set("/gone", (_request, response) => response.writeHead(404).end());
      routes.set("/short", (_request, response) => {
        response.writeHead(200, { "content-length": "1000" });
        response.write(png);
        setTimeout(() => response.socket?.destroy(), 10);
      });
      const fetchMedia = createMediaFetcher(settings());
      expect(await reasonOf(fetchMedia(`${origin}/gone`, { accept: IMAGES }))).toBe("http-status");
      expect(await reasonOf(fetchMedia(`${origin}/short`, { accept: IMAGES }))).toBe("network");
    });
  });

  describe("DNS answers", () => {
    const resolver = (answers: Record<string, string[]>) => {
      const calls: string[] = [];
      const resolve: ResolveHost = async (hostname) => {
        calls.push(hostname);
        const addresses = answers[hostname];
        if (addresses === undefined) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
        return addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
      };
      return { resolve, calls };
    };

    it.each([
      ["127.0.0.1"],
      ["10.0.0.7"],
      ["192.168.0.10"],
      ["169.254.169.254"],
      ["100.100.100.200"],
      ["::1"],
      ["::ffff:127.0.0.1"],
      ["fe80::1"],
      ["fd00::1"],
      ["93.184.216.34", "10.0.0.1"],
    ])("refuses a wildcard-allowed host that resolves to %s", async (...addresses) => {
      const { resolve, calls } = resolver({ "evil.nosdn.test": addresses });
      const fetchMedia = createMediaFetcher(settings({ hosts: `*.nosdn.test:${port}` }), { resolve });
      expect(await reasonOf(fetchMedia(`http://evil.nosdn.test:${port}/picture`, { accept: IMAGES }))).toBe(
        "private-address",
      );
      expect(calls).toEqual(["evil.nosdn.test"]);
      expect(seen).toEqual([]);
    });

    it("lets a host allowed by exact name resolve to a private address, connecting to the checked answer", async () => {
      routes.set("/picture", servePng);
      // media.internal.test exists only in this resolver: the bytes arriving prove the socket used its answer.
      const { resolve, calls } = resolver({ "media.internal.test": ["127.0.0.1"] });
      const fetchMedia = createMediaFetcher(settings({ hosts: `media.internal.test:${port}` }), { resolve });
      const result = await fetchMedia(`http://media.internal.test:${port}/picture`, { accept: IMAGES });
      expect(result.bytes.equals(png)).toBe(true);
      // One question per fetch: nothing is resolved a second time between check and connect.
      expect(calls).toEqual(["media.internal.test"]);
    });

    it("checks the DNS answers of every redirect hop", async () => {
      routes.set("/start", (_request, response) =>
        response.writeHead(302, { location: `http://cdn.nosdn.test:${port}/picture` }).end(),
      );
      const { resolve, calls } = resolver({ "media.internal.test": ["127.0.0.1"], "cdn.nosdn.test": ["127.0.0.1"] });
      const fetchMedia = createMediaFetcher(settings({ hosts: `media.internal.test:${port},*.nosdn.test:${port}` }), {
        resolve,
      });
      expect(await reasonOf(fetchMedia(`http://media.internal.test:${port}/start`, { accept: IMAGES }))).toBe(
        "private-address",
      );
      expect(calls).toEqual(["media.internal.test", "cdn.nosdn.test"]);
      expect(seen).toEqual(["/start"]);
    });

    it("reports a name that does not resolve as a network failure", async () => {
      const { resolve } = resolver({});
      const fetchMedia = createMediaFetcher(settings({ hosts: `*.nosdn.test:${port}` }), { resolve });
      expect(await reasonOf(fetchMedia(`http://missing.nosdn.test:${port}/x`, { accept: IMAGES }))).toBe("network");
    });
  });
});

describe("createMediaFetcher over https", () => {
  const certificate = readFileSync(new URL("../testing/fixtures/tls/media-test.crt", import.meta.url));
  const key = readFileSync(new URL("../testing/fixtures/tls/media-test.key", import.meta.url));
  let server: ReturnType<typeof createTlsServer>;
  let port: number;
  const serverNames: Array<string | false | null> = [];

  beforeAll(async () => {
    server = createTlsServer({ cert: certificate, key }, (request, response) => {
      serverNames.push((request.socket as TLSSocket).servername);
      response.writeHead(200, { "content-type": "image/png" }).end(png);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, "close");
  });

  const resolve: ResolveHost = async () => [{ address: "127.0.0.1", family: 4 }];

  it("fetches over https from the checked address, verifying the certificate against the host name", async () => {
    serverNames.length = 0;
    const fetchMedia = createMediaFetcher(
      { allowedHosts: parseAllowedHosts(`media.test:${port}`), maxBytes: 100_000, timeoutMs: 5_000 },
      { resolve, ca: certificate },
    );
    const result = await fetchMedia(`https://media.test:${port}/picture`, { accept: IMAGES });
    expect(result.bytes.equals(png)).toBe(true);
    expect(serverNames).toEqual(["media.test"]);
  });

  it("refuses a certificate that does not name the host, or one it does not trust", async () => {
    const wrongName = createMediaFetcher(
      { allowedHosts: parseAllowedHosts(`other.test:${port}`), maxBytes: 100_000, timeoutMs: 5_000 },
      { resolve, ca: certificate },
    );
    await expect(wrongName(`https://other.test:${port}/picture`, { accept: IMAGES })).rejects.toMatchObject({
      reason: "network",
    });
    const untrusted = createMediaFetcher(
      { allowedHosts: parseAllowedHosts(`media.test:${port}`), maxBytes: 100_000, timeoutMs: 5_000 },
      { resolve },
    );
    await expect(untrusted(`https://media.test:${port}/picture`, { accept: IMAGES })).rejects.toMatchObject({
      reason: "network",
    });
  });
});

afterAll(() => {
  sharp.cache(false);
});
