import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HttpError } from "../http/errors.ts";
import { NimError } from "../nim/errors.ts";
import type { NimAccount, NimClient } from "../nim/types.ts";
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

/** An in-memory NIM that records calls; failures are queued per method. */
class FakeNim implements NimClient {
  readonly accounts = new Map<string, string>();
  readonly calls: Array<{ method: string; accid: string }> = [];
  readonly failures: { createAccount: unknown[]; updateToken: unknown[] } = { createAccount: [], updateToken: [] };
  delayMs = 0;

  async createAccount(input: { accid: string; name?: string; token?: string }): Promise<NimAccount> {
    this.calls.push({ method: "createAccount", accid: input.accid });
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    const failure = this.failures.createAccount.shift();
    if (failure) throw failure;
    const accid = input.accid.toLowerCase();
    if (this.accounts.has(accid)) throw new NimError("api", 414, "already register", false, "user/create.action");
    const token = input.token ?? "server-made";
    this.accounts.set(accid, token);
    return { accid, token, ...(input.name ? { name: input.name } : {}) };
  }

  async updateToken(input: { accid: string; token: string }): Promise<void> {
    this.calls.push({ method: "updateToken", accid: input.accid });
    const failure = this.failures.updateToken.shift();
    if (failure) throw failure;
    if (!this.accounts.has(input.accid.toLowerCase())) {
      throw new NimError("api", 414, "accid not exist", false, "user/update.action");
    }
    this.accounts.set(input.accid.toLowerCase(), input.token);
  }

  async refreshToken(): Promise<NimAccount> {
    throw new Error("not used by the register service");
  }
  async getUserInfos(): Promise<never[]> {
    return [];
  }
  async sendMessage(): Promise<never> {
    throw new Error("not used by the register service");
  }
}

function capturingLogger() {
  const lines: string[] = [];
  const logger: RegisterLogger = {
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
  let database: Database;
  let accounts: AccountRepository;
  let audit: AuditRepository;
  let nim: FakeNim;
  let log: ReturnType<typeof capturingLogger>;
  let tokenCounter: number;

  function service(overrides: Partial<Parameters<typeof createRegisterService>[0]> = {}) {
    return createRegisterService({
      nim,
      accounts,
      audit,
      botAccid: "Advisor_Bot",
      now: () => 1_700_000_000_000,
      generateToken: () => `token-${++tokenCounter}`,
      logger: log.logger,
      ...overrides,
    });
  }

  beforeEach(async () => {
    database = await openDatabase("sqlite::memory:");
    accounts = new AccountRepository(database);
    audit = new AuditRepository(database);
    nim = new FakeNim();
    log = capturingLogger();
    tokenCounter = 0;
  });

  afterEach(async () => {
    await database.close();
  });

  it("creates the NIM account with a generated token, stores it and audits register.created", async () => {
    const result = await service().register({ siteUserId: "alice", name: "Alice" });
    expect(result).toEqual({ accid: "u_alice", token: "token-1", bot: "advisor_bot" });
    expect(nim.accounts.get("u_alice")).toBe("token-1");
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
    expect(nim.calls).toHaveLength(1);
  });

  it("rotates the token on refresh: NIM, database and audit agree", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice", name: "Alice" });
    const refreshed = await registerService.register({ siteUserId: "alice", refresh: true });
    expect(refreshed.token).toBe("token-2");
    expect(nim.accounts.get("u_alice")).toBe("token-2");
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ token: "token-2", name: "Alice" });
    expect(nim.calls.map((call) => call.method)).toEqual(["createAccount", "updateToken"]);
    // A refresh does not change the nickname (NIM is not told one), so neither does the row.
    await registerService.register({ siteUserId: "alice", name: "New Name", refresh: true });
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ name: "Alice" });
    expect((await audit.list({ event: "register.refreshed" })).length).toBe(2);
  });

  it("creates the account again when a refresh finds NIM no longer has it", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice", name: "Alice" });
    nim.accounts.clear();
    const refreshed = await registerService.register({ siteUserId: "alice", refresh: true });
    expect(refreshed.token).toBe("token-2");
    expect(nim.accounts.get("u_alice")).toBe("token-2");
    expect(nim.calls.map((call) => call.method)).toEqual(["createAccount", "updateToken", "createAccount"]);
    expect((await audit.list({ event: "register.recreated" })).length).toBe(1);
  });

  it("passes other refresh failures on as 502 without recreating", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice" });
    nim.failures.updateToken.push(new NimError("api", 403, "no permission", false, "user/update.action"));
    await expect(registerService.register({ siteUserId: "alice", refresh: true })).rejects.toMatchObject({
      statusCode: 502,
      message: "NIM refused the request (code 403: no permission)",
    });
    expect(nim.calls.map((call) => call.method)).toEqual(["createAccount", "updateToken"]);
  });

  it("treats refresh of an unknown user as a plain creation", async () => {
    const result = await service().register({ siteUserId: "new-user", refresh: true });
    expect(result.token).toBe("token-1");
    expect(nim.calls.map((call) => call.method)).toEqual(["createAccount"]);
  });

  it("takes over an account NIM already has (already register) with a new token", async () => {
    nim.accounts.set("u_alice", "someone-elses-token");
    const result = await service().register({ siteUserId: "alice" });
    expect(result.token).toBe("token-1");
    expect(nim.accounts.get("u_alice")).toBe("token-1");
    expect(nim.calls.map((call) => call.method)).toEqual(["createAccount", "updateToken"]);
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ token: "token-1" });
    expect((await audit.list({ event: "register.taken_over" })).length).toBe(1);
    expect(log.lines.some((line) => line.includes("taking it over"))).toBe(true);
  });

  it("serialises concurrent registrations of one user: one NIM account, one token for all", async () => {
    nim.delayMs = 20;
    const registerService = service();
    const results = await Promise.all(
      Array.from({ length: 10 }, () => registerService.register({ siteUserId: "Concurrent User" })),
    );
    expect(nim.calls.filter((call) => call.method === "createAccount")).toHaveLength(1);
    expect(new Set(results.map((result) => result.token)).size).toBe(1);
    expect(results[0]?.accid).toBe(accidForSiteUser("Concurrent User"));
    expect(nim.accounts.get(results[0]?.accid ?? "")).toBe(results[0]?.token);
  });

  it("registers different users concurrently without interference", async () => {
    nim.delayMs = 5;
    const registerService = service();
    const results = await Promise.all(["a", "b", "c", "d"].map((id) => registerService.register({ siteUserId: id })));
    expect(new Set(results.map((result) => result.accid)).size).toBe(4);
    expect(new Set(results.map((result) => result.token)).size).toBe(4);
  });

  it("refuses a user whose accid would be the bot's", async () => {
    const error = await thrown(service({ botAccid: "u_bot" }).register({ siteUserId: "bot" }));
    expect(error).toMatchObject({ statusCode: 409, code: "accid_conflict" });
    expect(nim.calls).toHaveLength(0);
  });

  it("refuses when the accid is held by another site user in the database", async () => {
    await accounts.upsert({ siteUserId: "legacy", accid: "u_alice", token: "t", name: null }, 1);
    const error = await thrown(service().register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 409, code: "accid_conflict" });
    expect(nim.calls).toHaveLength(0);
  });

  it("maps a retryable NIM failure to 503 nim_unavailable with NIM's code, writing nothing", async () => {
    nim.failures.createAccount.push(new NimError("api", 500, "server error", true, "user/create.action"));
    const error = await thrown(service().register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 503, code: "nim_unavailable" });
    expect(error.message).toBe("NIM is unavailable (code 500); try again");
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
    expect(await audit.list()).toHaveLength(0);
  });

  it("maps a terminal NIM failure to 502 nim_error with code and desc", async () => {
    nim.failures.createAccount.push(new NimError("api", 414, "parameter error", false, "user/create.action"));
    const error = await thrown(service().register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 502, code: "nim_error" });
    expect(error.message).toBe("NIM refused the request (code 414: parameter error)");
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
  });

  it("writes nothing when the take-over's token update fails", async () => {
    nim.accounts.set("u_alice", "old");
    nim.failures.updateToken.push(new NimError("timeout", 0, "no answer", true, "user/update.action"));
    const error = await thrown(service().register({ siteUserId: "alice" }));
    expect(error).toMatchObject({ statusCode: 503, message: "NIM is unavailable (timeout); try again" });
    expect(await accounts.findBySiteUser("alice")).toBeUndefined();
  });

  it("keeps the old token when a refresh fails at NIM", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice" });
    nim.failures.updateToken.push(new NimError("network", 0, "ECONNRESET", true, "user/update.action"));
    await expect(registerService.register({ siteUserId: "alice", refresh: true })).rejects.toMatchObject({
      statusCode: 503,
    });
    expect(await accounts.findBySiteUser("alice")).toMatchObject({ token: "token-1" });
    expect(nim.accounts.get("u_alice")).toBe("token-1");
  });

  it("lets non-NIM errors through unchanged (they become 500s)", async () => {
    nim.failures.createAccount.push(new Error("bug"));
    await expect(service().register({ siteUserId: "alice" })).rejects.toThrow("bug");
  });

  it("refuses an empty site user id with 400", async () => {
    const error = await thrown(service().register({ siteUserId: "" }));
    expect(error).toMatchObject({ statusCode: 400, code: "bad_request" });
  });

  it("refuses a token generator that returns something NIM would refuse", async () => {
    await expect(service({ generateToken: () => "x".repeat(129) }).register({ siteUserId: "a" })).rejects.toThrow(
      /1-128/,
    );
    await expect(service({ generateToken: () => "" }).register({ siteUserId: "a" })).rejects.toThrow(/1-128/);
  });

  it("never puts the token in a log line, an error or an audit record", async () => {
    const registerService = service();
    await registerService.register({ siteUserId: "alice" });
    nim.accounts.set("u_bob", "x");
    await registerService.register({ siteUserId: "bob" });
    await registerService.register({ siteUserId: "alice", refresh: true });
    nim.failures.updateToken.push(new NimError("api", 500, "boom", true, "user/update.action"));
    const error = await thrown(registerService.register({ siteUserId: "alice", refresh: true }));
    const everything = [...log.lines, error.message, JSON.stringify(await audit.list())].join("\n");
    expect(log.lines.length).toBeGreaterThan(0);
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
