/**
 * NIM_TOKEN_MODE=dynamic end to end in one process: the register service (real NIM client, SQLite
 * in memory) mints NIM's dynamic token, and the emulator's gateway, which checks tokens the way NIM
 * does at an authType 1 login, accepts it until its TTL has passed and refuses it afterwards. Both
 * share one injected clock, so "after the TTL" is a number, not a sleep.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { GatewayTestClient } from "../emulator/test-clients.ts";
import { createNimClient } from "../nim/client.ts";
import { decodeDynamicToken } from "../nim/dynamic-token.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { AccountRepository, AuditRepository } from "../storage/repositories.ts";
import { createRegisterService } from "./service.ts";

const APP_KEY = "dynamic-test-app-key";
const APP_SECRET = "dynamic-test-app-secret";
const TTL_SECONDS = 600;
const START = Date.UTC(2026, 0, 2, 3, 4, 5);

describe("dynamic tokens (NIM_TOKEN_MODE=dynamic)", () => {
  let emulator: RunningNimEmulator;
  let database: Database;
  let clock: number;
  const clients: GatewayTestClient[] = [];

  function service() {
    return createRegisterService({
      nim: createNimClient({
        appKey: APP_KEY,
        appSecret: APP_SECRET,
        apiBase: emulator.classicApiBase,
        timeoutMs: 2_000,
        retry: { maxAttempts: 1, deadlineMs: 5_000 },
        // NIM checks CurTime against its own clock, which is the injected one here.
        now: () => clock,
      }),
      accounts: new AccountRepository(database),
      audit: new AuditRepository(database),
      botAccid: "advisor_bot",
      now: () => clock,
      dynamicTokens: { appKey: APP_KEY, appSecret: APP_SECRET, ttlSeconds: TTL_SECONDS },
    });
  }

  async function login(accid: string, token: string, authType: 0 | 1 = 1) {
    const client = await GatewayTestClient.connect(emulator.gatewayUrl);
    clients.push(client);
    client.send({ type: "login", accid, token, authType });
    return { client, answer: await client.take((frame) => frame.type === "login") };
  }

  beforeEach(async () => {
    clock = START;
    emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET, now: () => clock });
    database = await openDatabase("sqlite::memory:");
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    await database.close();
    await emulator.close();
  });

  it("returns a dynamic token with expires_at, and NIM's account keeps a static token nobody got", async () => {
    const result = await service().register({ siteUserId: "alice" });
    expect(result.accid).toBe("u_alice");
    expect(result.expiresAt).toBe(new Date(START + TTL_SECONDS * 1000).toISOString());
    expect(result.expiresAt).toBe("2026-01-02T03:14:05.000Z");
    expect(decodeDynamicToken(result.token)).toMatchObject({ curTime: START, ttl: TTL_SECONDS });

    const staticToken = emulator.state.findAccount("u_alice")?.token;
    expect(staticToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(result.token).not.toBe(staticToken);
    // The dynamic token is no static token: a static (authType 0) login with it fails.
    expect((await login("u_alice", result.token, 0)).answer).toMatchObject({ code: 302 });
  });

  it("makes no NIM call once the account exists, and each call gets a full lifetime", async () => {
    const registrations = service();
    await registrations.register({ siteUserId: "bob" });
    const callsAfterCreate = emulator.state.requests.length;
    expect(emulator.state.requests.map((request) => request.path)).toEqual(["user/create.action"]);

    clock += 120_000;
    const again = await registrations.register({ siteUserId: "bob" });
    expect(emulator.state.requests).toHaveLength(callsAfterCreate);
    expect(again.expiresAt).toBe(new Date(clock + TTL_SECONDS * 1000).toISOString());
  });

  it("logs in with authType 1 until the TTL has passed, then the login is refused", async () => {
    const { accid, token } = await service().register({ siteUserId: "carol" });

    clock = START + TTL_SECONDS * 1000 - 1;
    const before = await login(accid, token);
    expect(before.answer).toEqual({ type: "login", code: 200, accid });

    clock = START + TTL_SECONDS * 1000;
    const after = await login(accid, token);
    expect(after.answer).toEqual({ type: "login", code: 302, desc: "token expired" });
    expect((await after.client.closed).code).toBe(4302);
  });

  it("answers the configured code for an expired token (NIM's is unconfirmed)", async () => {
    emulator.settings.dynamicTokenExpiredCode = 417;
    const { accid, token } = await service().register({ siteUserId: "dave" });
    clock += TTL_SECONDS * 1000 + 1;
    const { answer, client } = await login(accid, token);
    expect(answer).toEqual({ type: "login", code: 417, desc: "token expired" });
    expect((await client.closed).code).toBe(4417);
  });

  it("refuses a dynamic token for another accid and when the app has dynamic login off", async () => {
    const registrations = service();
    const erin = await registrations.register({ siteUserId: "erin" });
    await registrations.register({ siteUserId: "frank" });
    expect((await login("u_frank", erin.token)).answer).toMatchObject({ code: 302 });

    emulator.settings.dynamicTokenLogin = false;
    expect((await login(erin.accid, erin.token)).answer).toMatchObject({ code: 302 });
  });

  it("refresh rotates the unused static token at NIM and still answers a dynamic token", async () => {
    const registrations = service();
    await registrations.register({ siteUserId: "gina" });
    const firstStatic = emulator.state.findAccount("u_gina")?.token;
    const refreshed = await registrations.register({ siteUserId: "gina", refresh: true });
    expect(emulator.state.findAccount("u_gina")?.token).not.toBe(firstStatic);
    expect(refreshed.expiresAt).not.toBeNull();
    expect((await login(refreshed.accid, refreshed.token)).answer).toMatchObject({ code: 200 });
  });
});
