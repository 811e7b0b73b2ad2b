/**
 * POST /im/register end to end inside one process: a Fastify app with the contract's error shape,
 * SQLite in memory, and the real NIM client talking HTTP to the NIM emulator on 127.0.0.1.
 */
import { Writable } from "node:stream";
import fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { installErrorHandling } from "../http/errors.ts";
import { createLogger, type Logger } from "../http/logger.ts";
import { createNimClient } from "../nim/client.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { AccountRepository, AuditRepository } from "../storage/repositories.ts";
import { accidForSiteUser } from "./accid.ts";
import { createRegisterAuthenticator, type RegisterAuthOptions } from "./auth.ts";
import { REGISTER_PATH, registerRoute } from "./route.ts";
import { createRegisterService } from "./service.ts";

const APP_KEY = "test-app-key";
const APP_SECRET = "test-app-secret";
const BOT = "advisor_bot";
const JWT_SECRET = "route-test-jwt-secret-route-test-jwt-secret";
const API_KEY = "route-test-service-key";

/** Every log line of the app, the service and the NIM client, as written. */
class CapturedLog extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void) {
    this.lines.push(chunk.toString("utf8"));
    callback();
  }
  get text() {
    return this.lines.join("");
  }
}

function signJwt(subject: string) {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(subject)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(JWT_SECRET));
}

describe("POST /im/register", () => {
  let emulator: RunningNimEmulator;
  let database: Database;
  let accounts: AccountRepository;
  let audit: AuditRepository;
  let log: CapturedLog;
  let logger: Logger;
  let app: FastifyInstance;

  /** Builds the app under test; the NIM client may get another secret to provoke NIM's 414. */
  async function buildApp(
    options: { appSecret?: string; auth?: RegisterAuthOptions; style?: "call" | "register" | "factory" } = {},
  ) {
    const nim = createNimClient({
      appKey: APP_KEY,
      appSecret: options.appSecret ?? APP_SECRET,
      apiBase: emulator.classicApiBase,
      timeoutMs: 2_000,
      // Two attempts and tiny back-offs keep the fault tests fast while still exercising the retry.
      retry: { maxAttempts: 2, deadlineMs: 5_000, baseDelayMs: 1, maxDelayMs: 5 },
      logger,
    });
    const service = createRegisterService({ nim, accounts, audit, botAccid: BOT, logger });
    const authenticator = createRegisterAuthenticator(
      options.auth ?? { jwtSecret: JWT_SECRET, serviceApiKey: API_KEY },
    );
    // Upcast to Fastify's logger type: a pino-typed instance is not assignable to FastifyInstance
    // (the same mismatch src/http/app.ts has); the object is the same pino logger either way.
    const instance = fastify({ loggerInstance: logger as FastifyBaseLogger });
    installErrorHandling(instance);
    const style = options.style ?? "call";
    if (style === "call") await registerRoute(instance, { service, authenticator });
    else if (style === "register") await instance.register(registerRoute, { service, authenticator });
    else await instance.register(registerRoute({ service, authenticator }));
    await instance.ready();
    return instance;
  }

  function post(body: unknown, headers: Record<string, string> = { "x-api-key": API_KEY }) {
    return app.inject({
      method: "POST",
      url: REGISTER_PATH,
      headers: { "content-type": "application/json", ...headers },
      payload: typeof body === "string" ? body : JSON.stringify(body),
    });
  }

  function nimRequests(path: string) {
    return emulator.state.requests.filter((request) => request.path === path).length;
  }

  beforeAll(async () => {
    emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET });
  });

  afterAll(async () => {
    await emulator.close();
  });

  beforeEach(async () => {
    emulator.state.reset();
    database = await openDatabase("sqlite::memory:");
    accounts = new AccountRepository(database);
    audit = new AuditRepository(database);
    log = new CapturedLog();
    logger = createLogger({ level: "trace", destination: log });
    app = await buildApp();
  });

  afterEach(async () => {
    await app.close();
    await database.close();
  });

  it("creates the NIM account and answers 200 {accid, token, bot, expires_at} with Cache-Control: no-store", async () => {
    const response = await post({ user_id: "alice", name: "Alice" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["cache-control"]).toBe("no-store");
    const body = response.json();
    expect(Object.keys(body).sort()).toEqual(["accid", "bot", "bots", "expires_at", "token"]);
    // A static token never expires (contract: `expires_at` null).
    expect(body).toMatchObject({ accid: "u_alice", bot: BOT, expires_at: null });
    expect(body.token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const account = emulator.state.findAccount("u_alice");
    expect(account).toMatchObject({ accid: "u_alice", token: body.token, name: "Alice" });
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ accid: "u_alice", token: body.token });
    expect((await audit.list({ event: "register.created" })).length).toBe(1);
  });

  it("gives a hashed, lower-case accid to ids that are not plain accid material", async () => {
    const response = await post({ user_id: "Bob Smith 用户" });
    expect(response.statusCode).toBe(200);
    const { accid } = response.json();
    expect(accid).toBe(accidForSiteUser("Bob Smith 用户"));
    expect(accid).toMatch(/^h_[0-9a-f]{30}$/);
    expect(emulator.state.findAccount(accid)).toBeDefined();
  });

  it("answers a repeated call with the same accid and token, calling NIM once", async () => {
    const first = (await post({ user_id: "alice" })).json();
    const second = await post({ user_id: "alice" });
    expect(second.statusCode).toBe(200);
    expect(second.json()).toEqual(first);
    expect(nimRequests("user/create.action")).toBe(1);
    expect(emulator.state.requests).toHaveLength(1);
  });

  it("rotates the token on refresh, and NIM has the new one", async () => {
    const first = (await post({ user_id: "alice" })).json();
    const refreshed = await post({ user_id: "alice", refresh: true });
    expect(refreshed.statusCode).toBe(200);
    const body = refreshed.json();
    expect(body.accid).toBe(first.accid);
    expect(body.token).not.toBe(first.token);
    expect(emulator.state.findAccount(first.accid)?.token).toBe(body.token);
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ token: body.token });
    // The next plain call hands out the rotated token.
    expect((await post({ user_id: "alice" })).json().token).toBe(body.token);
  });

  it("takes over an account NIM already has ('already register') and NIM ends with our token", async () => {
    emulator.state.addAccount({ accid: "u_alice", token: "token-of-a-lost-database", createdAt: Date.now() });
    const response = await post({ user_id: "alice" });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body.accid).toBe("u_alice");
    expect(body.token).not.toBe("token-of-a-lost-database");
    expect(emulator.state.findAccount("u_alice")?.token).toBe(body.token);
    expect(emulator.state.requests.map((request) => [request.path, request.code])).toEqual([
      ["user/create.action", 414],
      ["user/update.action", 200],
    ]);
    expect((await audit.list({ event: "register.taken_over" })).length).toBe(1);
  });

  it("creates the account again on refresh when NIM lost it", async () => {
    await post({ user_id: "alice" });
    emulator.state.accounts.clear();
    const response = await post({ user_id: "alice", refresh: true });
    expect(response.statusCode).toBe(200);
    expect(emulator.state.findAccount("u_alice")?.token).toBe(response.json().token);
  });

  it("serves 10 concurrent first calls for one user with one NIM account and one token", async () => {
    emulator.settings.latencyMs = 20;
    try {
      const responses = await Promise.all(Array.from({ length: 10 }, () => post({ user_id: "Concurrent" })));
      expect(responses.map((response) => response.statusCode)).toEqual(Array(10).fill(200));
      const tokens = new Set(responses.map((response) => response.json().token));
      expect(tokens.size).toBe(1);
      expect(nimRequests("user/create.action")).toBe(1);
      expect(emulator.state.accounts.size).toBe(1);
      const accid = accidForSiteUser("Concurrent");
      expect(emulator.state.findAccount(accid)?.token).toBe([...tokens][0]);
    } finally {
      emulator.settings.latencyMs = 0;
    }
  });

  it("answers 503 with NIM's code when NIM keeps failing with 500, and stores nothing", async () => {
    emulator.faults.push({ path: "user/create.action", kind: "code", code: 500, times: Number.POSITIVE_INFINITY });
    const response = await post({ user_id: "alice" });
    expect(response.statusCode).toBe(503);
    expect(response.headers["cache-control"]).toBe("no-store");
    expect(response.json()).toEqual({
      error: { code: "nim_unavailable", message: "NIM is unavailable (code 500); try again" },
    });
    // NIM's 500 is final under NIM's own retry rule (it may have acted): one attempt, then 503.
    expect(nimRequests("user/create.action")).toBe(1);
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
    expect(emulator.state.accounts.size).toBe(0);
  });

  it("recovers from one NIM 416 (frequency control) through the client's retry", async () => {
    emulator.faults.push({ path: "user/create.action", kind: "code", code: 416 });
    const response = await post({ user_id: "alice" });
    expect(response.statusCode).toBe(200);
    expect(emulator.state.findAccount("u_alice")?.token).toBe(response.json().token);
  });

  it("answers 503 when NIM's gateway answers 502", async () => {
    emulator.faults.push({ path: "user/create.action", kind: "http-status", status: 502, times: 2 });
    const response = await post({ user_id: "alice" });
    expect(response.statusCode).toBe(503);
    expect(response.json().error.message).toContain("code 502");
  });

  it("answers 502 with NIM's code and desc when NIM refuses (wrong AppSecret → 414 checksum)", async () => {
    await app.close();
    app = await buildApp({ appSecret: "not-the-app-secret" });
    const response = await post({ user_id: "alice" });
    expect(response.statusCode).toBe(502);
    expect(response.json()).toEqual({
      error: { code: "nim_error", message: "NIM refused the request (code 414: checksum)" },
    });
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
    expect(log.text).not.toContain("not-the-app-secret");
  });

  describe("bad bodies: 400 naming the field, nothing written, NIM not called", () => {
    const cases: Array<[string, unknown, string]> = [
      ["missing user_id", { name: "x" }, "user_id"],
      ["empty object", {}, "user_id"],
      ["user_id a number", { user_id: 42 }, "user_id"],
      ["user_id empty", { user_id: "" }, "user_id"],
      ["user_id too long", { user_id: "a".repeat(129) }, "user_id"],
      ["user_id with a newline", { user_id: "alice\nbob" }, "user_id"],
      ["user_id with NUL", { user_id: "alice\u0000" }, "user_id"],
      ["user_id with a C1 control", { user_id: "alice\u0085" }, "user_id"],
      ["user_id with a lone surrogate", { user_id: "alice\ud800" }, "user_id"],
      ["name too long", { user_id: "alice", name: "n".repeat(65) }, "name"],
      ["name with a tab", { user_id: "alice", name: "a\tb" }, "name"],
      ["name a number", { user_id: "alice", name: 7 }, "name"],
      ["refresh a string", { user_id: "alice", refresh: "yes" }, "refresh"],
      ["an array body", [{ user_id: "alice" }], "JSON object"],
      ["a string body", '"alice"', "JSON object"],
      ["a null body", "null", "JSON object"],
    ];
    it.each(cases)("%s", async (_label, body, field) => {
      const response = await post(body);
      expect(response.statusCode).toBe(400);
      expect(response.json().error.code).toBe("bad_request");
      expect(response.json().error.message).toContain(field);
      expect(await accounts.findBySiteUser("alice")).toBeUndefined();
      expect(emulator.state.requests).toHaveLength(0);
    });

    it("invalid JSON", async () => {
      const response = await post("{not json");
      expect(response.statusCode).toBe(400);
      expect(response.json().error.code).toBe("invalid_json");
      expect(emulator.state.requests).toHaveLength(0);
    });
  });

  it("accepts the longest allowed values, null optionals, and ignores unknown keys", async () => {
    const longId = "x".repeat(128);
    const response = await post({ user_id: longId, name: "n".repeat(64), refresh: null, extra: { any: 1 } });
    expect(response.statusCode).toBe(200);
    expect(response.json().accid).toBe(accidForSiteUser(longId));
  });

  it("refuses a body over the route's limit with 413", async () => {
    const response = await post({ user_id: "alice", padding: "p".repeat(20_000) });
    expect(response.statusCode).toBe(413);
    expect(response.json().error.code).toBe("body_too_large");
    expect(emulator.state.requests).toHaveLength(0);
  });

  describe("content type", () => {
    it("answers 415 to a form body", async () => {
      const response = await app.inject({
        method: "POST",
        url: REGISTER_PATH,
        headers: { "content-type": "application/x-www-form-urlencoded", "x-api-key": API_KEY },
        payload: "user_id=alice",
      });
      expect(response.statusCode).toBe(415);
      expect(response.json().error.code).toBe("unsupported_media_type");
    });

    it("answers 415 to text/plain, which Fastify would otherwise parse", async () => {
      const response = await app.inject({
        method: "POST",
        url: REGISTER_PATH,
        headers: { "content-type": "text/plain", "x-api-key": API_KEY },
        payload: '{"user_id":"alice"}',
      });
      expect(response.statusCode).toBe(415);
      expect(response.headers["cache-control"]).toBe("no-store");
      expect(emulator.state.requests).toHaveLength(0);
    });

    it("answers 415 without a content type", async () => {
      const response = await app.inject({ method: "POST", url: REGISTER_PATH, headers: { "x-api-key": API_KEY } });
      expect(response.statusCode).toBe(415);
    });

    it("accepts a charset parameter", async () => {
      const response = await post(
        { user_id: "alice" },
        { "x-api-key": API_KEY, "content-type": "application/json; charset=utf-8" },
      );
      expect(response.statusCode).toBe(200);
    });
  });

  describe("authentication", () => {
    it("answers 401 without credentials, before looking at the body", async () => {
      const response = await post({ user_id: 42 }, {});
      expect(response.statusCode).toBe(401);
      expect(response.json().error.code).toBe("unauthorized");
      expect(response.headers["www-authenticate"]).toContain("Bearer");
      expect(emulator.state.requests).toHaveLength(0);
    });

    it("answers 401 to a wrong API key", async () => {
      const response = await post({ user_id: "alice" }, { "x-api-key": "wrong" });
      expect(response.statusCode).toBe(401);
      expect(await accounts.findBySiteUser("alice")).toBeUndefined();
    });

    it("fails closed when nothing is configured, naming what to set", async () => {
      await app.close();
      app = await buildApp({ auth: {} });
      const response = await post({ user_id: "alice" });
      expect(response.statusCode).toBe(401);
      expect(response.json().error.code).toBe("auth_not_configured");
      expect(response.json().error.message).toContain("IM_SERVICE_API_KEY");
      expect(emulator.state.requests).toHaveLength(0);
    });

    it("registers the JWT's subject when the body has no user_id", async () => {
      const token = await signJwt("jwt-user");
      const response = await post({}, { authorization: `Bearer ${token}` });
      expect(response.statusCode).toBe(200);
      expect(response.json().accid).toBe("u_jwt-user");
      expect(await accounts.findBySiteUser("jwt-user")).toBeDefined();
    });

    it("accepts a user_id equal to the JWT's subject", async () => {
      const token = await signJwt("jwt-user");
      const response = await post({ user_id: "jwt-user", refresh: false }, { authorization: `Bearer ${token}` });
      expect(response.statusCode).toBe(200);
    });

    it("answers 403 user_mismatch when user_id differs from the JWT's subject", async () => {
      const token = await signJwt("jwt-user");
      const response = await post({ user_id: "someone-else" }, { authorization: `Bearer ${token}` });
      expect(response.statusCode).toBe(403);
      expect(response.json().error.code).toBe("user_mismatch");
      expect(emulator.state.requests).toHaveLength(0);
      expect(await accounts.findBySiteUser("someone-else")).toBeUndefined();
      expect(await accounts.findBySiteUser("jwt-user")).toBeUndefined();
    });

    it("answers 400 when the JWT's subject is not a usable user id", async () => {
      const token = await signJwt("s".repeat(129));
      const response = await post({}, { authorization: `Bearer ${token}` });
      expect(response.statusCode).toBe(400);
      expect(response.json().error.message).toContain("sub");
    });

    it("answers 400 when an API-key call has no user_id", async () => {
      const response = await post({ name: "x" });
      expect(response.statusCode).toBe(400);
      expect(response.json().error.message).toContain("user_id");
    });

    it("answers 401 token_expired to an expired JWT", async () => {
      const expired = await new SignJWT({ sub: "jwt-user" })
        .setProtectedHeader({ alg: "HS256" })
        .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
        .sign(new TextEncoder().encode(JWT_SECRET));
      const response = await post({}, { authorization: `Bearer ${expired}` });
      expect(response.statusCode).toBe(401);
      expect(response.json().error.code).toBe("token_expired");
    });
  });

  it("can be added with app.register(registerRoute, options) and as registerRoute(options)", async () => {
    for (const style of ["register", "factory"] as const) {
      const instance = await buildApp({ style });
      try {
        const response = await instance.inject({
          method: "POST",
          url: REGISTER_PATH,
          headers: { "content-type": "application/json", "x-api-key": API_KEY },
          payload: JSON.stringify({ user_id: `style-${style}` }),
        });
        expect(response.statusCode).toBe(200);
        // The error handler of the root app still shapes errors inside the plugin's context.
        const bad = await instance.inject({
          method: "POST",
          url: REGISTER_PATH,
          headers: { "content-type": "application/json", "x-api-key": API_KEY },
          payload: "{}",
        });
        expect(bad.json().error.code).toBe("bad_request");
      } finally {
        await instance.close();
      }
    }
  });

  it("never writes a token, the API key or a JWT to the log", async () => {
    const jwt = await signJwt("logged-user");
    const tokens: string[] = [];
    tokens.push((await post({ user_id: "alice" })).json().token);
    tokens.push((await post({ user_id: "alice", refresh: true })).json().token);
    emulator.state.addAccount({ accid: "u_bob", token: "emulator-side-token", createdAt: Date.now() });
    tokens.push((await post({ user_id: "bob" })).json().token);
    tokens.push((await post({}, { authorization: `Bearer ${jwt}` })).json().token);
    emulator.faults.push({ path: "user/update.action", kind: "code", code: 500, times: Number.POSITIVE_INFINITY });
    expect((await post({ user_id: "alice", refresh: true })).statusCode).toBe(503);

    expect(tokens).toHaveLength(4);
    for (const token of tokens) expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Something was logged (requests, NIM failures, take-over), so the check below means something.
    expect(log.lines.length).toBeGreaterThan(5);
    expect(log.text).toContain("taking it over");
    for (const secret of [...tokens, "emulator-side-token", API_KEY, jwt, APP_SECRET]) {
      expect(log.text).not.toContain(secret);
    }
  });
});
