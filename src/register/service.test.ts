/**
 * The register service with real parts: the real NIM client (createNimClient) talking HTTP to the
 * NIM emulator on 127.0.0.1, SQLite in memory. NIM's failures are the emulator's fault injection
 * (a NIM body code, a held request, a dropped connection); what NIM ended up with is read from the
 * emulator's state (its accounts and the log of requests it received).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { HttpError } from "../http/errors.ts";
import { createNimClient, type NimClientOptions, type NimLogger } from "../nim/client.ts";
import { NimError } from "../nim/errors.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { AccountRepository, AuditRepository } from "../storage/repositories.ts";
import { accidForSiteUser } from "./accid.ts";
import {
  createRegisterService,
  generateNimToken,
  isUnknownAccount,
  NIM_TOKEN_MAX_LENGTH,
  nimFailureToHttpError,
  type RegisterLogger,
} from "./service.ts";

const APP_KEY = "service-test-app-key";
const APP_SECRET = "service-test-app-secret";
const CREATE = "user/create.action";
const UPDATE = "user/update.action";
/** Every call gets this many attempts; a fault meant to outlast the retries is queued this often. */
const MAX_ATTEMPTS = 2;

function capturingLogger() {
  const lines: string[] = [];
  const logger: RegisterLogger & NimLogger = {
    debug: (details, message) => lines.push(JSON.stringify({ level: "debug", message, ...details })),
    info: (details, message) => lines.push(JSON.stringify({ level: "info", message, ...details })),
    warn: (details, message) => lines.push(JSON.stringify({ level: "warn", message, ...details })),
  };
  return { logger, lines };
}

async function thrown(promise: Promise<unknown>): Promise<HttpError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
  throw new Error("expected an HttpError");
}

describe("createRegisterService", () => {
  let emulator: RunningNimEmulator;
  let database: Database;
  let accounts: AccountRepository;
  let audit: AuditRepository;
  /** What the service logs. */
  let log: ReturnType<typeof capturingLogger>;
  /** What the NIM client logs (retries, failures). */
  let nimLog: ReturnType<typeof capturingLogger>;
  let tokenCounter: number;

  /** The real NIM client against the emulator; tiny back-offs keep the retry tests fast. */
  function nimClient(overrides: Partial<NimClientOptions> = {}) {
    return createNimClient({
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      apiBase: emulator.classicApiBase,
      timeoutMs: 2_000,
      retry: { maxAttempts: MAX_ATTEMPTS, deadlineMs: 5_000, baseDelayMs: 1, maxDelayMs: 5 },
      logger: nimLog.logger,
      ...overrides,
    });
  }

  function service(overrides: Partial<Parameters<typeof createRegisterService>[0]> = {}) {
    return createRegisterService({
      nim: nimClient(),
      accounts,
      audit,
      botAccid: "Advisor_Bot",
      now: () => 1_700_000_000_000,
      generateToken: () => `token-${++tokenCounter}`,
      logger: log.logger,
      ...overrides,
    });
  }

  /** The paths of the requests NIM received, in order. */
  function nimCalls(): string[] {
    return emulator.state.requests.map((request) => request.path);
  }

  /** The token NIM holds for an accid (undefined: NIM has no such account). */
  function nimToken(accid: string): string | undefined {
    return emulator.state.findAccount(accid)?.token;
  }

  /** An account NIM has without our database knowing it (made by another instance, or the database was lost). */
  function nimAlreadyHas(accid: string, token: string) {
    emulator.state.addAccount({ accid, token, createdAt: Date.now() });
  }

  beforeEach(async () => {
    emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET });
    database = await openDatabase("sqlite::memory:");
    accounts = new AccountRepository(database);
    audit = new AuditRepository(database);
    log = capturingLogger();
    nimLog = capturingLogger();
    tokenCounter = 0;
  });

  afterEach(async () => {
    await database.close();
    await emulator.close();
  });

  it("creates the NIM account with a generated token, stores it and audits register.created", async () => {
    const result = await service().register({ siteUserId: "alice", name: "Alice" });
    expect(result).toEqual({ accid: "u_alice", token: "token-1", bot: "advisor_bot", expiresAt: null });
    expect(emulator.state.findAccount("u_alice")).toMatchObject({ token: "token-1", name: "Alice" });
    expect(nimCalls()).toEqual([CREATE]);
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ accid: "u_alice", token: "token-1", name: "Alice" });
    const events = await audit.list({ subject: "u_alice" });
    expect(events.map((event) => event.event)).toEqual(["register.created"]);
    expect(events[0]?.detail).not.toContain("token-1");
  });

  it("returns the stored token on a repeated call without calling NIM", async () => {
    const registerService = service();
    const first = await registerService.register({ siteUserId: "alice" });
    const second = await registerService.register({ siteUserId: "alice", name: "ignored later" });
    expect(second).toEqual(first);
    expect(nimCalls()).toEqual([CREATE]);
  });

  it("rotates the token on refresh: NIM, database and audit agree", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice", name: "Alice" });
    const refreshed = await registerService.register({ siteUserId: "alice", refresh: true });
    expect(refreshed.token).toBe("token-2");
    expect(nimToken("u_alice")).toBe("token-2");
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ token: "token-2", name: "Alice" });
    expect(nimCalls()).toEqual([CREATE, UPDATE]);
    // A refresh does not change the nickname (NIM is not told one), so neither does the row.
    await registerService.register({ siteUserId: "alice", name: "New Name", refresh: true });
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ name: "Alice" });
    expect(emulator.state.findAccount("u_alice")).toMatchObject({ token: "token-3", name: "Alice" });
    expect((await audit.list({ event: "register.refreshed" })).length).toBe(2);
  });

  it("creates the account again when a refresh finds NIM no longer has it", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice", name: "Alice" });
    emulator.state.accounts.delete("u_alice");
    const refreshed = await registerService.register({ siteUserId: "alice", refresh: true });
    expect(refreshed.token).toBe("token-2");
    expect(emulator.state.findAccount("u_alice")).toMatchObject({ token: "token-2", name: "Alice" });
    // NIM answered the update with 414 "accid not exist", then took the create.
    expect(emulator.state.requests.map((request) => [request.path, request.code])).toEqual([
      [CREATE, 200],
      [UPDATE, 414],
      [CREATE, 200],
    ]);
    expect((await audit.list({ event: "register.recreated" })).length).toBe(1);
  });

  it("passes other refresh failures on as 502 without recreating", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice" });
    emulator.faults.push({ path: UPDATE, kind: "code", code: 403, desc: "no permission" });
    await expect(registerService.register({ siteUserId: "alice", refresh: true })).rejects.toMatchObject({
      statusCode: 502,
      message: "NIM refused the request (code 403: no permission)",
    });
    expect(nimCalls()).toEqual([CREATE, UPDATE]);
    expect(nimToken("u_alice")).toBe("token-1");
  });

  it("treats refresh of an unknown user as a plain creation", async () => {
    const result = await service().register({ siteUserId: "new-user", refresh: true });
    expect(result.token).toBe("token-1");
    expect(nimCalls()).toEqual([CREATE]);
    expect(nimToken("u_new-user")).toBe("token-1");
  });

  it("takes over an account NIM already has (already register) with a new token", async () => {
    nimAlreadyHas("u_alice", "someone-elses-token");
    const result = await service().register({ siteUserId: "alice" });
    expect(result.token).toBe("token-1");
    expect(nimToken("u_alice")).toBe("token-1");
    expect(emulator.state.requests.map((request) => [request.path, request.code])).toEqual([
      [CREATE, 414],
      [UPDATE, 200],
    ]);
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ token: "token-1" });
    expect((await audit.list({ event: "register.taken_over" })).length).toBe(1);
    expect(log.lines.some((line) => line.includes("taking it over"))).toBe(true);
  });

  it("serialises concurrent registrations of one user: one NIM account, one token for all", async () => {
    emulator.settings.latencyMs = 20;
    const registerService = service();
    const results = await Promise.all(
      Array.from({ length: 10 }, () => registerService.register({ siteUserId: "Concurrent User" })),
    );
    expect(nimCalls().filter((path) => path === CREATE)).toHaveLength(1);
    expect(nimCalls()).toEqual([CREATE]);
    expect(new Set(results.map((result) => result.token)).size).toBe(1);
    expect(results[0]?.accid).toBe(accidForSiteUser("Concurrent User"));
    expect(nimToken(results[0]?.accid ?? "")).toBe(results[0]?.token);
  });

  it("registers different users concurrently without interference", async () => {
    emulator.settings.latencyMs = 5;
    const registerService = service();
    const results = await Promise.all(["a", "b", "c", "d"].map((id) => registerService.register({ siteUserId: id })));
    expect(new Set(results.map((result) => result.accid)).size).toBe(4);
    expect(new Set(results.map((result) => result.token)).size).toBe(4);
    for (const result of results) expect(nimToken(result.accid)).toBe(result.token);
    expect(nimCalls()).toEqual([CREATE, CREATE, CREATE, CREATE]);
  });

  it("refuses a user whose accid would be the bot's", async () => {
    const error = await thrown(service({ botAccid: "u_bot" }).register({ siteUserId: "bot" }));
    expect(error).toMatchObject({ statusCode: 409, code: "accid_conflict" });
    expect(nimCalls()).toHaveLength(0);
  });

  it("refuses when the accid is held by another site user in the database", async () => {
    await accounts.upsert({ siteUserId: "legacy", accid: "u_alice", token: "t", name: null }, 1);
    const error = await thrown(service().register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 409, code: "accid_conflict" });
    expect(nimCalls()).toHaveLength(0);
  });

  it("maps a retryable NIM failure to 503 nim_unavailable with NIM's code, writing nothing", async () => {
    emulator.faults.push({ path: CREATE, kind: "code", code: 500, times: MAX_ATTEMPTS });
    const error = await thrown(service().register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 503, code: "nim_unavailable" });
    expect(error.message).toBe("NIM is unavailable (code 500); try again");
    // NIM's 500 is final under NIM's own retry rule: one attempt; NIM never created the account.
    expect(nimCalls()).toEqual([CREATE]);
    expect(emulator.state.accounts.size).toBe(0);
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
    expect(await audit.list()).toHaveLength(0);
  });

  it("maps a terminal NIM failure to 502 nim_error with code and desc", async () => {
    emulator.faults.push({ path: CREATE, kind: "code", code: 414, desc: "parameter error" });
    const error = await thrown(service().register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 502, code: "nim_error" });
    expect(error.message).toBe("NIM refused the request (code 414: parameter error)");
    expect(nimCalls()).toEqual([CREATE]);
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
  });

  it("writes nothing when the take-over's token update fails", async () => {
    nimAlreadyHas("u_alice", "old");
    // NIM holds every update attempt far longer than the client waits (300 ms, ample for the
    // create before it): the client times out.
    emulator.faults.push({ path: UPDATE, kind: "delay", ms: 10_000, times: MAX_ATTEMPTS });
    const error = await thrown(service({ nim: nimClient({ timeoutMs: 300 }) }).register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 503, message: "NIM is unavailable (timeout); try again" });
    // A read timeout is never retried (NIM may have applied the update).
    expect(nimCalls()).toEqual([CREATE, UPDATE]);
    expect(nimToken("u_alice")).toBe("old");
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
    expect(await audit.list()).toHaveLength(0);
  });

  it("keeps the old token when a refresh fails at NIM", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice" });
    // The connection is cut on every attempt (a reset): a network failure at the client.
    emulator.faults.push({ path: UPDATE, kind: "drop", times: MAX_ATTEMPTS });
    await expect(registerService.register({ siteUserId: "alice", refresh: true })).rejects.toMatchObject({
      statusCode: 503,
      message: "NIM is unavailable (network); try again",
    });
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ token: "token-1" });
    expect(nimToken("u_alice")).toBe("token-1");
  });

  it("lets non-NIM errors through unchanged (they become 500s)", async () => {
    // A bug inside the client (here its clock throws) is not a NIM failure: no 502/503 for it.
    const broken = nimClient({
      now: () => {
        throw new Error("bug");
      },
    });
    const failure = service({ nim: broken }).register({ siteUserId: "alice" });
    await expect(failure).rejects.toThrow("bug");
    await expect(failure).rejects.not.toBeInstanceOf(HttpError);
    expect(nimCalls()).toHaveLength(0);
  });

  it("refuses an empty site user id with 400", async () => {
    const error = await thrown(service().register({ siteUserId: "" }));
    expect(error).toMatchObject({ statusCode: 400, code: "bad_request" });
    expect(nimCalls()).toHaveLength(0);
  });

  it("refuses a token generator that returns something NIM would refuse", async () => {
    await expect(service({ generateToken: () => "x".repeat(129) }).register({ siteUserId: "a" })).rejects.toThrow(
      /1-128/,
    );
    await expect(service({ generateToken: () => "" }).register({ siteUserId: "a" })).rejects.toThrow(/1-128/);
    expect(nimCalls()).toHaveLength(0);
  });

  it("never puts the token in a log line, an error or an audit record", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice" });
    nimAlreadyHas("u_bob", "x");
    await registerService.register({ siteUserId: "bob" });
    await registerService.register({ siteUserId: "alice", refresh: true });
    emulator.faults.push({ path: UPDATE, kind: "code", code: 500, desc: "boom", times: MAX_ATTEMPTS });
    const error = await thrown(registerService.register({ siteUserId: "alice", refresh: true }));
    expect(error.statusCode).toBe(503);
    const everything = [...log.lines, ...nimLog.lines, error.message, JSON.stringify(await audit.list())].join("\n");
    expect(log.lines.length).toBeGreaterThan(0);
    // The client logged the failed update.
    expect(nimLog.lines.some((line) => line.includes(UPDATE))).toBe(true);
    for (let index = 1; index <= tokenCounter; index++) expect(everything).not.toContain(`token-${index}`);
  });
});

describe("generateNimToken", () => {
  it("makes 43 base64url characters, different every time", () => {
    const tokens = new Set(Array.from({ length: 100 }, generateNimToken));
    expect(tokens.size).toBe(100);
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(token.length).toBeLessThanOrEqual(NIM_TOKEN_MAX_LENGTH);
    }
  });
});

describe("isUnknownAccount", () => {
  it("recognises NIM's answers for an accid it does not have", () => {
    expect(isUnknownAccount(new NimError("api", 414, "accid not exist", false, "e"))).toBe(true);
    expect(isUnknownAccount(new NimError("api", 404, "object not found", false, "e"))).toBe(true);
    expect(isUnknownAccount(new NimError("api", 414, "parameter error", false, "e"))).toBe(false);
    expect(isUnknownAccount(new NimError("http", 404, "HTTP 404", false, "e"))).toBe(false);
    expect(isUnknownAccount(new Error("accid not exist"))).toBe(false);
  });
});

describe("nimFailureToHttpError", () => {
  const cases: Array<[NimError, number, string]> = [
    [new NimError("api", 416, "too frequently", true, "e"), 503, "NIM is unavailable (code 416); try again"],
    [new NimError("api", 500, "", true, "e"), 503, "NIM is unavailable (code 500); try again"],
    [new NimError("http", 502, "HTTP 502", true, "e"), 503, "NIM is unavailable (code 502); try again"],
    [new NimError("timeout", 0, "late", true, "e"), 503, "NIM is unavailable (timeout); try again"],
    [new NimError("network", 0, "ECONNREFUSED", true, "e"), 503, "NIM is unavailable (network); try again"],
    [new NimError("api", 414, "checksum", false, "e"), 502, "NIM refused the request (code 414: checksum)"],
    [new NimError("api", 403, "", false, "e"), 502, "NIM refused the request (code 403)"],
    [new NimError("http", 404, "HTTP 404", false, "e"), 502, "NIM refused the request (code 404: HTTP 404)"],
    [
      new NimError("invalid-response", 0, "not JSON", false, "e"),
      502,
      "NIM request failed (invalid-response: not JSON)",
    ],
  ];
  it.each(cases)("%s → %i", (error, status, message) => {
    const mapped = nimFailureToHttpError(error);
    expect(mapped.statusCode).toBe(status);
    expect(mapped.code).toBe(status === 503 ? "nim_unavailable" : "nim_error");
    expect(mapped.message).toBe(message);
  });

  it("bounds a long desc", () => {
    const mapped = nimFailureToHttpError(new NimError("api", 414, "x".repeat(1000), false, "e"));
    expect(mapped.message.length).toBeLessThan(260);
  });
});
