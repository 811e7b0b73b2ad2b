/**
 * The demo site of `npm start`, mounted on the bridge's own HTTP app through
 * `createBridge(config, { extraRoutes: [demoSiteRoutes(…)] })`. It plays the part of "your
 * website": it serves the chat page (web/), the browser build of `im-bridge/client`, and a
 * stand-in for the site's own login that hands out the short-lived user JWT `/im/register`
 * expects.
 *
 * `npm run serve` never mounts this: `POST /demo/login` gives a JWT to anyone for any name, which
 * is fine for a local demo and unthinkable in production.
 *
 * Routes:
 * - `GET /` the page (web/index.html) and `GET /<file>` every other file of web/ (flat);
 * - `GET /demo/client.js` src/client bundled for the browser (ES module);
 * - `GET /demo/config` what the page needs to connect: gateway URL, default bot accid, the bots
 *   (accid and name), generator kind, whether there is a group room, and where pictures and files
 *   are uploaded (`uploadUrl`, the emulator's NOS stand-in, when there is one);
 * - `POST /demo/login` `{"name": "…"}` → `{"token": "<HS256 JWT, sub = name, 1 h>"}`;
 * - `POST /demo/room` with that JWT as `Authorization: Bearer …` → `{"tid", "name"}`: makes the
 *   user (already registered through /im/register) a member of the demo group room, where the
 *   bots are members too (see demo-room.ts).
 *
 * Nothing here knows the AppSecret, and nothing it answers contains it.
 *
 * @example
 * extraRoutes: [demoSiteRoutes({ webDirectory, clientBundle: await buildClientBundle(), jwtSecret,
 *   botAccid: "advisor_bot", generator: "demo", gatewayUrl: () => "ws://127.0.0.1:53211/gateway" })]
 */
import { readdir, readFile } from "node:fs/promises";
import { extname, join } from "node:path";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { jwtVerify, SignJWT } from "jose";
import type { BotSummary } from "../bots/types.ts";
import type { GeneratorKind } from "../config/index.ts";
import { HttpError } from "../http/errors.ts";
import { accidForSiteUser } from "../register/accid.ts";
import type { DemoRoom, DemoRoomInfo } from "./demo-room.ts";

export interface DemoSiteOptions {
  /** The folder with index.html, app.js, styles.css. Files are read on each request (edit and reload). */
  webDirectory: string;
  /** The browser build of src/client (see buildClientBundle). */
  clientBundle: string;
  /** HS256 secret shared with the bridge's IM_AUTH_JWT_SECRET. */
  jwtSecret: string;
  /** Set when IM_AUTH_JWT_ISSUER / IM_AUTH_JWT_AUDIENCE are, so the bridge accepts the tokens. */
  jwtIssuer?: string | undefined;
  jwtAudience?: string | undefined;
  /** Lifetime of a demo JWT, seconds. Default 3600. */
  tokenLifetimeSeconds?: number;
  botAccid: string;
  /** Every bot, for the page's bot picker and @ list; default: the one `botAccid`. */
  bots?: BotSummary[];
  /** The group room; without it the page offers no room and `POST /demo/room` answers 404. */
  room?: DemoRoom;
  generator: GeneratorKind;
  /** The emulator's WebSocket gateway as the browser must reach it (may depend on the Host it used). */
  gatewayUrl: (request: FastifyRequest) => string;
  /**
   * The emulator's storage (NOS) base URL as the browser reaches it, e.g. http://127.0.0.1:53211:
   * the page uploads to `${it}/nos/upload` and shows pictures from there. Without it the page
   * offers no attachments.
   */
  storageUrl?: (request: FastifyRequest) => string;
}

/** A demo name is a site user id and a NIM nickname: NIM allows 64 characters for the latter. */
export const DEMO_NAME_MAX_LENGTH = 64;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
};

/**
 * The page loads only its own files; it talks to the bridge (same origin) and to the emulator's
 * gateway (another port, hence `ws:`), and uploads to and shows pictures from the emulator's
 * storage (`storageOrigin`, when there is one). No inline script or style anywhere.
 */
function contentSecurityPolicy(storageOrigin: string | undefined): string {
  const storage = storageOrigin ? ` ${storageOrigin}` : "";
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' data:${storage}`,
    `connect-src 'self' ws: wss:${storage}`,
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

export function demoSiteRoutes(options: DemoSiteOptions): FastifyPluginAsync {
  const secret = new TextEncoder().encode(options.jwtSecret);
  const lifetime = options.tokenLifetimeSeconds ?? 3600;

  return plugin;

  async function plugin(app: Parameters<FastifyPluginAsync>[0]) {
    const files = (await readdir(options.webDirectory, { withFileTypes: true }))
      .filter((entry) => entry.isFile() && CONTENT_TYPES[extname(entry.name)] !== undefined)
      .map((entry) => entry.name);
    if (!files.includes("index.html")) throw new Error(`demo site: no index.html in ${options.webDirectory}`);

    const storageOrigin = (request: FastifyRequest) => {
      const url = options.storageUrl?.(request);
      return url === undefined ? undefined : new URL(url).origin;
    };
    const sendFile = async (request: FastifyRequest, reply: FastifyReply, name: string) => {
      const body = await readFile(join(options.webDirectory, name));
      return reply
        .header("content-type", CONTENT_TYPES[extname(name)])
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", contentSecurityPolicy(storageOrigin(request)))
        .header("referrer-policy", "no-referrer")
        .send(body);
    };

    app.get("/", (request, reply) => sendFile(request, reply, "index.html"));
    // One route per file found at start, so no path from the request ever reaches the file system.
    for (const name of files) {
      if (name !== "index.html") app.get(`/${name}`, (request, reply) => sendFile(request, reply, name));
    }

    app.get("/demo/client.js", (_request, reply) =>
      reply
        .header("content-type", CONTENT_TYPES[".js"])
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .send(options.clientBundle),
    );

    const bots = options.bots ?? [{ accid: options.botAccid, name: options.botAccid }];
    app.get("/demo/config", (request, reply) =>
      reply.header("cache-control", "no-store").send({
        gatewayUrl: options.gatewayUrl(request),
        bot: options.botAccid,
        bots,
        generator: options.generator,
        room: options.room !== undefined,
        ...(options.storageUrl && { uploadUrl: `${options.storageUrl(request)}/nos/upload` }),
      }),
    );

    app.post("/demo/room", async (request, reply) => {
      const room = options.room;
      if (!room) throw new HttpError(404, "not_found", "this demo has no group room");
      const siteUserId = await demoUserOf(request);
      let accid: string;
      try {
        accid = accidForSiteUser(siteUserId);
      } catch {
        throw new HttpError(400, "bad_request", "the token's subject is not a usable user id");
      }
      let joined: DemoRoomInfo;
      try {
        joined = await room.join(accid);
      } catch (error) {
        request.log.warn({ err: error }, "demo room: joining failed");
        throw new HttpError(502, "room_unavailable", "the group room could not be joined; register first, then retry");
      }
      return reply.header("cache-control", "no-store").send(joined);
    });

    app.post("/demo/login", async (request, reply) => {
      const name = parseName(request.body);
      let jwt = new SignJWT({ name })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setSubject(name)
        .setIssuedAt()
        .setExpirationTime(`${lifetime}s`);
      if (options.jwtIssuer) jwt = jwt.setIssuer(options.jwtIssuer);
      if (options.jwtAudience) jwt = jwt.setAudience(options.jwtAudience);
      const token = await jwt.sign(secret);
      return reply
        .header("cache-control", "no-store")
        .send({ token, token_type: "Bearer", expires_in: lifetime, user_id: name });
    });
  }

  /** The demo JWT's subject (the site user id), or 401. */
  async function demoUserOf(request: FastifyRequest): Promise<string> {
    const header = request.headers.authorization;
    const token = typeof header === "string" && /^Bearer \S+$/i.test(header) ? header.slice(7).trim() : undefined;
    if (!token) throw new HttpError(401, "unauthorized", "Authorization: Bearer <token from /demo/login> is required");
    try {
      const { payload } = await jwtVerify(token, secret, {
        algorithms: ["HS256"],
        ...(options.jwtIssuer !== undefined && { issuer: options.jwtIssuer }),
        ...(options.jwtAudience !== undefined && { audience: options.jwtAudience }),
      });
      if (typeof payload.sub !== "string" || payload.sub === "") throw new Error("no subject");
      return payload.sub;
    } catch {
      throw new HttpError(401, "unauthorized", "the token is invalid or expired; log in again");
    }
  }
}

/** `{"name": "…"}`: 1–64 characters after trimming, no control characters, well-formed Unicode. */
function parseName(body: unknown): string {
  const raw = typeof body === "object" && body !== null ? (body as { name?: unknown }).name : undefined;
  if (typeof raw !== "string") throw new HttpError(400, "bad_request", "name: must be a string");
  const name = raw.trim();
  if (name === "") throw new HttpError(400, "bad_request", "name: must not be empty");
  if (name.length > DEMO_NAME_MAX_LENGTH) {
    throw new HttpError(400, "bad_request", `name: must be at most ${DEMO_NAME_MAX_LENGTH} characters`);
  }
  if (CONTROL_CHARACTERS.test(name) || LONE_SURROGATE.test(name)) {
    throw new HttpError(400, "bad_request", "name: must be printable, well-formed text");
  }
  return name;
}
