/**
 * The operator console's HTTP side, everything under `/admin` (registered only when ADMIN_TOKEN
 * is set):
 *
 * - `GET /admin` the page (web/admin/: plain HTML, one ES module, one stylesheet; no build step);
 * - `POST /admin/api/login` `{"token"}` → session cookie; `POST /admin/api/logout`;
 *   `GET /admin/api/session` → the CSRF token and the non-secret settings the page shows;
 * - `GET /admin/api/conversations?q=`, `GET /admin/api/conversations/:id`,
 *   `GET /admin/api/events?conversation=` (server-sent events: replies as they stream);
 * - `GET /admin/api/usage?days=`, `GET /admin/api/usage.csv?days=`;
 * - `GET /admin/api/pauses`, `POST /admin/api/pauses`, `POST /admin/api/pauses/resume`,
 *   `POST /admin/api/conversations/:id/takeover`, `POST /admin/api/conversations/:id/messages`.
 *
 * Security, on purpose:
 * - every API route but login needs the signed session cookie (401 otherwise);
 * - every change (POST) needs the session's CSRF token in `X-CSRF-Token` and a same-origin request
 *   (`Origin` equal to the Host, or `Sec-Fetch-Site: same-origin` when no Origin is sent): 403;
 *   the login itself is checked for origin too, so another site cannot log a browser in;
 * - login attempts are limited per client address (ADMIN_LOGIN_PER_MINUTE) and audited;
 * - every operator action is an `admin.*` audit row; nothing answered contains a secret (account
 *   tokens are never selected, audit details are redacted).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { HttpError } from "../http/errors.ts";
import { enforceLimit } from "../limits/http.ts";
import type { RateLimit } from "../limits/types.ts";
import { lastDays } from "../usage/day.ts";
import type { UsageRepository } from "../usage/repository.ts";
import { type ConsoleEvent, type ConsoleEventHub, conversationOf } from "./event-hub.ts";
import { PAUSE_MODES, type PauseMode, type PauseRepository, type PauseScope } from "./pauses.ts";
import { type ConsoleQueries, type ConversationParts, parseConversationId } from "./queries.ts";
import { type AdminSession, parseCookies, type SessionCodec, sessionCookie } from "./session.ts";
import { operatorTextProblem } from "./takeover.ts";

export const SESSION_COOKIE = "im_bridge_admin";

export interface ConsoleRoutesOptions {
  sessions: SessionCodec;
  lifetimeMs: number;
  queries: ConsoleQueries;
  usage: UsageRepository;
  pauses: PauseRepository;
  hub: ConsoleEventHub;
  /** Where console events go (the hub, or Redis and from there every hub). */
  publish: (event: ConsoleEvent) => void;
  audit: (event: string, subject: string | null, detail: Record<string, unknown>) => Promise<void>;
  /** Sends an operator's text to the conversation's user as the bot (src/admin/takeover.ts). */
  sendAsOperator: (conversationId: string, parts: ConversationParts, text: string) => Promise<{ msgid: string }>;
  loginLimit?: RateLimit | undefined;
  /**
   * ADMIN_JWT_CLAIM: a site user JWT (verified with IM_AUTH_JWT_SECRET / IM_AUTH_JWKS_URL, like
   * /im/register's) whose `claim` is `true` logs in as well as the admin token.
   */
  siteJwtLogin?: {
    claim: string;
    verify: (token: string) => Promise<{ subject: string; claims: Record<string, unknown> }>;
  };
  clientAddress: (request: FastifyRequest) => string;
  now: () => number;
  /** USAGE_TIME_ZONE */
  timeZone: string;
  /** Non-secret settings the page shows (budgets, the pause note, the time zone). */
  settings: Record<string, unknown>;
  /** web/admin: index.html, app.js, admin.css. */
  webDirectory: string;
  /** Comment lines keep SSE connections (and proxies) alive. Default 15 s. */
  keepAliveMs?: number;
}

const STATIC_FILES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "admin.css": "text/css; charset=utf-8",
};

const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const MAX_CONVERSATION_ID = 200;

declare module "fastify" {
  interface FastifyRequest {
    adminSession?: AdminSession;
  }
}

export function consoleRoutes(options: ConsoleRoutesOptions): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    const files = new Map<string, Buffer>();
    for (const name of Object.keys(STATIC_FILES)) files.set(name, await readFile(join(options.webDirectory, name)));
    const sendStatic = (reply: FastifyReply, name: string) =>
      reply
        .header("content-type", STATIC_FILES[name])
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", CONTENT_SECURITY_POLICY)
        .header("referrer-policy", "no-referrer")
        .header("x-frame-options", "DENY")
        .send(files.get(name));
    app.get("/admin", (_request, reply) => sendStatic(reply, "index.html"));
    app.get("/admin/", (_request, reply) => sendStatic(reply, "index.html"));
    app.get("/admin/app.js", (_request, reply) => sendStatic(reply, "app.js"));
    app.get("/admin/admin.css", (_request, reply) => sendStatic(reply, "admin.css"));

    /** Open SSE responses, ended when the server closes (they would hold `app.close()` forever). */
    const streams = new Set<() => void>();
    app.addHook("preClose", async () => {
      for (const end of streams) end();
    });

    // ---- authentication and CSRF ------------------------------------------------------------
    const sessionOf = (request: FastifyRequest) =>
      options.sessions.verify(parseCookies(request.headers.cookie).get(SESSION_COOKIE));

    const requireSession = (request: FastifyRequest): AdminSession => {
      const session = sessionOf(request);
      if (!session) throw new HttpError(401, "unauthorized", "Log in to the console first");
      request.adminSession = session;
      return session;
    };

    const requireChange = (request: FastifyRequest): AdminSession => {
      const session = requireSession(request);
      requireSameOrigin(request);
      const presented = request.headers["x-csrf-token"];
      if (!options.sessions.csrfMatches(session, typeof presented === "string" ? presented : undefined)) {
        throw new HttpError(403, "csrf", "The X-CSRF-Token header is missing or wrong; reload the console");
      }
      return session;
    };

    app.addHook("onSend", async (request, reply, payload) => {
      if (request.url.startsWith("/admin/api/")) reply.header("cache-control", "no-store");
      return payload;
    });

    app.post("/admin/api/login", async (request, reply) => {
      requireSameOrigin(request);
      const address = options.clientAddress(request);
      await enforceLimit(options.loginLimit, address);
      const body = (request.body ?? {}) as { token?: unknown; jwt?: unknown };
      const token = typeof body.token === "string" ? body.token : undefined;
      let method = "token";
      let subject: string | undefined;
      if (token === undefined || !options.sessions.tokenMatches(token)) {
        // Not the admin token: maybe a site JWT with the admin claim (sent as `jwt`, or typed into
        // the same field on the login page).
        const jwt = typeof body.jwt === "string" ? body.jwt : token && JWT_SHAPE.test(token) ? token : undefined;
        subject = jwt && options.siteJwtLogin ? await adminSubject(options.siteJwtLogin, jwt) : undefined;
        if (subject === undefined) {
          await options.audit("admin.login_failed", null, { ip: address, method: jwt ? "jwt" : "token" });
          throw new HttpError(401, "unauthorized", "The admin token is not valid");
        }
        method = "jwt";
      }
      const { session, cookieValue } = options.sessions.issue();
      await options.audit("admin.login", subject ?? null, { ip: address, session: session.sid, method });
      return reply
        .header(
          "set-cookie",
          sessionCookie(SESSION_COOKIE, cookieValue, {
            maxAgeSeconds: options.lifetimeMs / 1000,
            secure: !isLoopback(request.hostname),
          }),
        )
        .send({ ok: true, csrfToken: options.sessions.csrfToken(session), expiresAt: session.exp });
    });

    app.post("/admin/api/logout", async (request, reply) => {
      const session = requireChange(request);
      await options.audit("admin.logout", null, { ip: options.clientAddress(request), session: session.sid });
      return reply
        .header(
          "set-cookie",
          sessionCookie(SESSION_COOKIE, "", { maxAgeSeconds: 0, secure: !isLoopback(request.hostname) }),
        )
        .send({ ok: true });
    });

    app.get("/admin/api/session", async (request) => {
      const session = requireSession(request);
      return { csrfToken: options.sessions.csrfToken(session), expiresAt: session.exp, settings: options.settings };
    });

    // ---- conversations ----------------------------------------------------------------------
    app.get("/admin/api/conversations", async (request) => {
      requireSession(request);
      const query = request.query as { q?: unknown; limit?: unknown };
      const q = typeof query.q === "string" ? query.q.slice(0, 100) : "";
      const limit = boundedInteger(query.limit, 50, 1, 200);
      return { conversations: await options.queries.listConversations({ query: q, limit }) };
    });

    app.get("/admin/api/conversations/:id", async (request) => {
      requireSession(request);
      const { id } = conversationParam(request);
      const conversation = await options.queries.conversation(id);
      if (!conversation) throw new HttpError(404, "not_found", "No such conversation");
      return conversation;
    });

    app.get("/admin/api/events", async (request, reply) => {
      requireSession(request);
      const filter = (request.query as { conversation?: unknown }).conversation;
      const conversation = typeof filter === "string" && filter !== "" ? filter : undefined;
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        connection: "keep-alive",
        // nginx would otherwise buffer the stream.
        "x-accel-buffering": "no",
      });
      raw.write(": connected\n\n");
      const unsubscribe = options.hub.subscribe((event) => {
        const concerns = conversationOf(event);
        if (conversation && concerns && concerns !== conversation) return;
        raw.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      });
      const keepAlive = setInterval(() => raw.write(": keep-alive\n\n"), options.keepAliveMs ?? 15_000);
      keepAlive.unref();
      const end = () => {
        clearInterval(keepAlive);
        unsubscribe();
        streams.delete(end);
        if (!raw.writableEnded) raw.end();
      };
      streams.add(end);
      request.raw.on("close", end);
    });

    // ---- usage ------------------------------------------------------------------------------
    const usageRange = (request: FastifyRequest) => {
      const days = boundedInteger((request.query as { days?: unknown }).days, 14, 1, 366);
      const list = lastDays(options.now(), days, options.timeZone);
      return { list, from: list[0] as string, to: list[list.length - 1] as string };
    };

    app.get("/admin/api/usage", async (request) => {
      requireSession(request);
      const range = usageRange(request);
      const [perDay, topUsers] = await Promise.all([
        options.usage.perDay(range.from, range.to),
        options.usage.topUsers(range.from, range.to, 10),
      ]);
      const byDay = new Map(perDay.map((row) => [row.day, row]));
      const days = range.list.map(
        (day) =>
          byDay.get(day) ?? {
            day,
            replies: 0,
            promptTokens: 0,
            completionTokens: 0,
            totalTokens: 0,
            estimatedReplies: 0,
          },
      );
      return { days, topUsers, timeZone: options.timeZone };
    });

    app.get("/admin/api/usage.csv", async (request, reply) => {
      requireSession(request);
      const range = usageRange(request);
      const lines = await options.usage.lines(range.from, range.to);
      await options.audit("admin.usage_exported", null, {
        from: range.from,
        to: range.to,
        rows: lines.length,
        session: request.adminSession?.sid,
      });
      const header = "day,bot,user,replies,prompt_tokens,completion_tokens,total_tokens,estimated_replies";
      const body = lines.map((line) =>
        [
          line.day,
          line.botAccid,
          line.userAccid,
          line.replies,
          line.promptTokens,
          line.completionTokens,
          line.totalTokens,
          line.estimatedReplies,
        ]
          .map(csvField)
          .join(","),
      );
      return reply
        .header("content-type", "text/csv; charset=utf-8")
        .header("content-disposition", `attachment; filename="im-bridge-usage-${range.from}-${range.to}.csv"`)
        .send(`${[header, ...body].join("\r\n")}\r\n`);
    });

    // ---- stepping in ------------------------------------------------------------------------
    app.get("/admin/api/pauses", async (request) => {
      requireSession(request);
      const [pauses, bots] = await Promise.all([options.pauses.list(), options.queries.bots()]);
      return { pauses, bots };
    });

    app.post("/admin/api/pauses", async (request) => {
      const session = requireChange(request);
      const body = (request.body ?? {}) as { scope?: unknown; target?: unknown; mode?: unknown };
      const { scope, target } = pauseTarget(body);
      const mode = body.mode ?? "skip";
      if (typeof mode !== "string" || !(PAUSE_MODES as readonly string[]).includes(mode)) {
        throw new HttpError(400, "bad_request", `mode: must be one of ${PAUSE_MODES.join(", ")}`);
      }
      if (mode === "takeover" && scope === "bot") {
        throw new HttpError(400, "bad_request", "mode: takeover applies to one conversation, not a bot");
      }
      await options.pauses.set(scope, target, mode as PauseMode, options.now());
      await options.audit("admin.pause", target, { scope, mode, session: session.sid });
      options.publish({ type: "pause", scope, target, mode });
      return { ok: true };
    });

    app.post("/admin/api/pauses/resume", async (request) => {
      const session = requireChange(request);
      const { scope, target } = pauseTarget((request.body ?? {}) as { scope?: unknown; target?: unknown });
      const removed = await options.pauses.remove(scope, target);
      await options.audit("admin.resume", target, { scope, wasPaused: removed, session: session.sid });
      options.publish({ type: "pause", scope, target, mode: null });
      return { ok: true, wasPaused: removed };
    });

    app.post("/admin/api/conversations/:id/takeover", async (request) => {
      const session = requireChange(request);
      const { id } = conversationParam(request);
      await options.pauses.set("conversation", id, "takeover", options.now());
      await options.audit("admin.takeover", id, { session: session.sid });
      options.publish({ type: "pause", scope: "conversation", target: id, mode: "takeover" });
      return { ok: true };
    });

    app.post("/admin/api/conversations/:id/messages", async (request) => {
      const session = requireChange(request);
      const { id, parts } = conversationParam(request);
      const text = (request.body as { text?: unknown } | undefined)?.text;
      const problem = operatorTextProblem(text);
      if (problem) throw new HttpError(400, "bad_request", problem);
      const pause = await options.pauses.get("conversation", id);
      if (pause?.mode !== "takeover") {
        throw new HttpError(409, "not_taken_over", "Take the conversation over before writing to the user");
      }
      let sent: { msgid: string };
      try {
        sent = await options.sendAsOperator(id, parts, text as string);
      } catch (error) {
        await options.audit("admin.message_failed", id, {
          session: session.sid,
          reason: (error as Error).message.slice(0, 200),
        });
        throw new HttpError(
          502,
          "nim_failed",
          `NIM did not take the message: ${(error as Error).message.slice(0, 200)}`,
        );
      }
      const at = options.now();
      await options.audit("admin.message_sent", id, {
        session: session.sid,
        characters: (text as string).length,
        nimMsgid: sent.msgid,
      });
      options.publish({ type: "operator", conversationId: id, text: text as string, at });
      return { ok: true, msgid: sent.msgid };
    });

    app.get("/admin/api/audit", async (request) => {
      requireSession(request);
      const prefix = (request.query as { prefix?: unknown }).prefix;
      return {
        events: await options.queries.audit({
          ...(typeof prefix === "string" && prefix !== "" ? { prefix: prefix.slice(0, 40) } : {}),
          limit: 200,
        }),
      };
    });
  };
}

/**
 * The change comes from the console's own page: `Origin` (sent by browsers on every POST) names
 * this host, or, without Origin, `Sec-Fetch-Site` says same-origin. A request with neither is a
 * non-browser client, which still needs the session cookie and the CSRF token.
 */
function requireSameOrigin(request: FastifyRequest): void {
  const origin = request.headers.origin;
  if (typeof origin === "string") {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host === undefined || host !== request.headers.host) {
      throw new HttpError(403, "cross_origin", "Changes are accepted only from the console's own page");
    }
    return;
  }
  const site = request.headers["sec-fetch-site"];
  if (typeof site === "string" && site !== "same-origin" && site !== "none") {
    throw new HttpError(403, "cross_origin", "Changes are accepted only from the console's own page");
  }
}

/** Three base64url parts: what a compact JWS looks like. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The JWT's subject when it verifies and carries the admin claim as `true`; else undefined. */
async function adminSubject(
  login: NonNullable<ConsoleRoutesOptions["siteJwtLogin"]>,
  jwt: string,
): Promise<string | undefined> {
  try {
    const { subject, claims } = await login.verify(jwt);
    return claims[login.claim] === true ? subject : undefined;
  } catch (error) {
    // The site's JWKS could not be fetched: our outage (503), not a wrong credential.
    if (error instanceof HttpError && error.statusCode >= 500) throw error;
    return undefined;
  }
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/:\d+$/, "");
  return host === "localhost" || host === "127.0.0.1" || host === "[::1]" || host === "::1";
}

function conversationParam(request: FastifyRequest): { id: string; parts: ConversationParts } {
  const id = (request.params as { id?: unknown }).id;
  const parts = typeof id === "string" && id.length <= MAX_CONVERSATION_ID ? parseConversationId(id) : undefined;
  if (!parts) throw new HttpError(400, "bad_request", "Not a conversation id");
  return { id: id as string, parts };
}

function pauseTarget(body: { scope?: unknown; target?: unknown }): { scope: PauseScope; target: string } {
  if (body.scope !== "bot" && body.scope !== "conversation") {
    throw new HttpError(400, "bad_request", "scope: must be bot or conversation");
  }
  if (typeof body.target !== "string" || body.target === "" || body.target.length > MAX_CONVERSATION_ID) {
    throw new HttpError(400, "bad_request", "target: must be a bot accid or a conversation id");
  }
  if (body.scope === "conversation" && !parseConversationId(body.target)) {
    throw new HttpError(400, "bad_request", "target: not a conversation id");
  }
  if (body.scope === "bot" && !/^[a-z0-9_@.-]{1,32}$/.test(body.target)) {
    throw new HttpError(400, "bad_request", "target: not a bot accid (lower-case, at most 32 characters)");
  }
  return { scope: body.scope, target: body.target };
}

function boundedInteger(value: unknown, fallback: number, minimum: number, maximum: number): number {
  const number = typeof value === "string" && /^\d{1,6}$/.test(value) ? Number(value) : fallback;
  return Math.min(maximum, Math.max(minimum, number));
}

/** A CSV field; a leading = + - @ is neutralised so a spreadsheet does not run it as a formula. */
export function csvField(value: string | number): string {
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
