/**
 * The before-delivery hook: the 2-second budget with a manual clock (no waiting), the request
 * parser, the route in-process, and the NIM emulator's gateway asking a real listening route
 * before it delivers a user's message.
 */
import type { FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildMessageCopy } from "../callback/build.ts";
import { signCallback } from "../callback/sign.ts";
import { type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { GatewayTestClient } from "../emulator/test-clients.ts";
import { buildHttpApp } from "../http/app.ts";
import { createLogger } from "../http/logger.ts";
import type { ModerationVerdict, Moderator } from "../moderation/types.ts";
import { systemClock } from "../reply/clock.ts";
import { ManualClock, settlePromises } from "../reply/manual-clock.ts";
import { createBoundedAudit } from "../security/rejection-audit.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { AuditRepository } from "../storage/repositories.ts";
import { decideWithinBudget, type InterceptSettings, interceptAnswer, parseInterceptBody } from "./index.ts";
import { INTERCEPT_PATH, interceptRoute } from "./route.ts";

const APP_KEY = "intercept-key";
const APP_SECRET = "intercept-secret";
const SETTINGS: InterceptSettings = {
  budgetMs: 1500,
  onTimeout: "allow",
  allowErrCode: 0,
  blockErrCode: 1,
  blockResponseCode: 20000,
};

/** Blocks any text containing "forbidden"; `hold` makes every check wait until released. */
function wordModerator(): Moderator & { hold(): void; release(): void } {
  let gate: Promise<void> | undefined;
  let open: () => void = () => {};
  return {
    hold() {
      gate = new Promise((resolve) => {
        open = resolve;
      });
    },
    release() {
      open();
      gate = undefined;
    },
    async checkInput(text) {
      if (gate) await gate;
      return /forbidden/i.test(text)
        ? { allowed: false, reason: "word: forbidden", category: "keyword" }
        : { allowed: true };
    },
    async checkOutput() {
      return { allowed: true };
    },
  };
}

describe("decideWithinBudget", () => {
  it("takes the verdict that arrives within the budget", async () => {
    const clock = new ManualClock();
    const decision = decideWithinBudget(async () => ({ allowed: false, reason: "x" }), SETTINGS, clock);
    expect(await decision).toMatchObject({ decision: "block", why: "verdict" });
    // The budget timer was cleared: nothing is left to fire.
    expect(clock.nextDueTime()).toBeUndefined();
  });

  it("answers the configured default when the check outlasts the budget, and ignores the late verdict", async () => {
    for (const onTimeout of ["allow", "block"] as const) {
      const clock = new ManualClock();
      let late: (verdict: ModerationVerdict) => void = () => {};
      const decision = decideWithinBudget(
        () =>
          new Promise<ModerationVerdict>((resolve) => {
            late = resolve;
          }),
        { budgetMs: 1500, onTimeout },
        clock,
      );
      let settled = false;
      void decision.then(() => {
        settled = true;
      });
      clock.advance(1499);
      await settlePromises();
      expect(settled).toBe(false);
      clock.advance(1);
      expect(await decision).toEqual({ decision: onTimeout, why: "timeout" });
      late({ allowed: onTimeout !== "allow", reason: "late" } as ModerationVerdict);
      await settlePromises();
      expect(await decision).toEqual({ decision: onTimeout, why: "timeout" });
    }
  });

  it("answers the default when the check fails, synchronously or not", async () => {
    const clock = new ManualClock();
    expect(
      await decideWithinBudget(() => Promise.reject(new Error("down")), { budgetMs: 1500, onTimeout: "block" }, clock),
    ).toEqual({ decision: "block", why: "error" });
    expect(
      await decideWithinBudget(
        () => {
          throw new Error("sync");
        },
        { budgetMs: 1500, onTimeout: "allow" },
        clock,
      ),
    ).toEqual({ decision: "allow", why: "error" });
  });
});

describe("parseInterceptBody and interceptAnswer", () => {
  it("reads P2P (1), team (2) and super-team (22) messages, string or number eventType", () => {
    const copy = buildMessageCopy({ from: "u_a", to: "u_b", body: "hi" });
    expect(parseInterceptBody(copy)).toEqual({
      conversation: "person",
      from: "u_a",
      to: "u_b",
      msgType: "TEXT",
      text: "hi",
    });
    expect(parseInterceptBody({ ...copy, eventType: 2, to: "123" })).toMatchObject({ conversation: "team", to: "123" });
    expect(parseInterceptBody({ ...copy, eventType: "22" })).toMatchObject({ conversation: "super-team" });
    expect(parseInterceptBody({ ...copy, msgType: "PICTURE" })).toEqual({
      conversation: "person",
      from: "u_a",
      to: "u_b",
      msgType: "PICTURE",
    });
  });

  it("leaves everything else unread", () => {
    for (const body of [null, [], "x", {}, { eventType: "36", accid: "u_a" }, { eventType: "1", to: "u_b" }]) {
      expect(parseInterceptBody(body)).toBeUndefined();
    }
  });

  it("answers with the configured codes and never the reason", () => {
    expect(interceptAnswer("allow", SETTINGS)).toEqual({
      errCode: 0,
      responseCode: 200,
      modifyResponse: {},
      callbackExt: "",
    });
    const block = interceptAnswer("block", { ...SETTINGS, blockErrCode: 7, blockResponseCode: 20042 });
    expect(block).toMatchObject({ errCode: 7, responseCode: 20042 });
    expect(JSON.stringify(block)).not.toContain("forbidden");
  });
});

describe("POST /im/intercept", () => {
  let database: Database;
  let audit: AuditRepository;
  let app: FastifyInstance;
  let moderator: ReturnType<typeof wordModerator>;
  let clock: ManualClock;
  let emulator: RunningNimEmulator | undefined;
  const clients: GatewayTestClient[] = [];

  async function build(timers: ManualClock | typeof systemClock) {
    app = await buildHttpApp({
      logger: createLogger({ level: "silent" }),
      bodyLimitBytes: 64 * 1024,
      requestTimeoutMs: 10_000,
      routes: [
        interceptRoute({
          appSecret: APP_SECRET,
          windowMs: 300_000,
          clock: systemClock,
          timers,
          audit,
          moderator,
          isBot: (accid) => accid === "advisor_bot",
          settings: SETTINGS,
          rejections: createBoundedAudit({
            record: (event, detail) => audit.record(event, null, detail),
            perWindow: 60,
            windowMs: 60_000,
            now: () => Date.now(),
            logger: { warn: () => {} },
          }),
        }),
      ],
    });
  }

  function signed(body: string, secret = APP_SECRET) {
    return {
      method: "POST" as const,
      url: INTERCEPT_PATH,
      headers: {
        "content-type": "application/json; charset=utf-8",
        ...signCallback({ appSecret: secret, body, curTime: Date.now() }),
      },
      payload: body,
    };
  }

  beforeEach(async () => {
    database = await openDatabase("sqlite::memory:");
    audit = new AuditRepository(database);
    moderator = wordModerator();
    clock = new ManualClock();
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    await emulator?.close();
    emulator = undefined;
    await app.close();
    await database.close();
  });

  it("allows a clean message, blocks a bad one and audits the block without answering the reason", async () => {
    await build(clock);
    const allowed = await app.inject(
      signed(JSON.stringify(buildMessageCopy({ from: "u_a", to: "u_b", body: "hello" }))),
    );
    expect(allowed.statusCode).toBe(200);
    expect(allowed.json()).toMatchObject({ errCode: 0 });

    const blocked = await app.inject(
      signed(JSON.stringify(buildMessageCopy({ from: "U_A", to: "u_b", body: "so forbidden" }))),
    );
    expect(blocked.json()).toEqual({
      errCode: 1,
      responseCode: 20000,
      modifyResponse: {},
      callbackExt: "blocked-by-moderation",
    });
    await settlePromises();
    const [row] = await audit.list({ event: "moderation.intercept.blocked" });
    expect(row!.subject).toBe("u_a");
    expect(JSON.parse(row!.detail!)).toMatchObject({ to: "u_b", conversation: "person", why: "verdict" });
  });

  it("refuses a bad signature with 401 and lets non-message events through", async () => {
    await build(clock);
    const forged = await app.inject(
      signed(JSON.stringify(buildMessageCopy({ from: "u_a", to: "u_b", body: "x" })), "wrong"),
    );
    expect(forged.statusCode).toBe(401);
    expect(forged.json().error.code).toBe("invalid_signature");
    const login = await app.inject(signed(JSON.stringify({ eventType: "36", accid: "u_a" })));
    expect(login.json()).toMatchObject({ errCode: 0 });
  });

  it("answers the default once the budget is spent (the manual clock stands for 1.5 s)", async () => {
    await build(clock);
    moderator.hold();
    const pending = app.inject(signed(JSON.stringify(buildMessageCopy({ from: "u_a", to: "u_b", body: "forbidden" }))));
    // Wait for the check to start, then spend the budget.
    while (clock.nextDueTime() === undefined) await settlePromises();
    expect(clock.nextDueTime()).toBe(1500);
    clock.advance(1500);
    const response = await pending;
    expect(response.json()).toMatchObject({ errCode: 0 });
    moderator.release();
  });

  it("is asked by the emulator's gateway before delivery: a blocked text never reaches the receiver", async () => {
    await build(systemClock);
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    emulator = await startNimEmulator({
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      interceptUrl: `${url}${INTERCEPT_PATH}`,
    });
    for (const accid of ["u_a", "u_b"]) emulator.state.addAccount({ accid, token: "t", createdAt: Date.now() });
    const sender = await GatewayTestClient.loggedIn(emulator.gatewayUrl, "u_a", "t");
    const receiver = await GatewayTestClient.loggedIn(emulator.gatewayUrl, "u_b", "t");
    clients.push(sender, receiver);

    sender.send({ type: "send", to: "u_b", text: "a forbidden word", clientId: "c1" });
    expect(await sender.take((frame) => frame.type === "sent")).toMatchObject({ clientId: "c1", code: 403 });
    sender.send({ type: "send", to: "u_b", text: "a kind word", clientId: "c2" });
    expect(await sender.take((frame) => frame.type === "sent")).toMatchObject({ clientId: "c2", code: 200 });

    const delivered = await receiver.take((frame) => frame.type === "message");
    expect(delivered.message).toMatchObject({ body: JSON.stringify({ msg: "a kind word" }) });
    expect(receiver.frames.filter((frame) => frame.type === "message")).toEqual([]);
    expect(emulator.state.messages.map((message) => message.body)).toEqual([JSON.stringify({ msg: "a kind word" })]);
    expect(emulator.state.intercepts.map((record) => [record.decision, record.decidedBy])).toEqual([
      ["reject", "answer"],
      ["allow", "answer"],
    ]);
  });

  it("emulator: applies the console's default policy when the intercept is unreachable", async () => {
    await build(systemClock);
    emulator = await startNimEmulator({
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      interceptUrl: "http://127.0.0.1:9/im/intercept",
      interceptDefaultPolicy: "reject",
    });
    emulator.state.addAccount({ accid: "u_a", token: "t", createdAt: Date.now() });
    emulator.state.addAccount({ accid: "u_b", token: "t", createdAt: Date.now() });
    const sender = await GatewayTestClient.loggedIn(emulator.gatewayUrl, "u_a", "t");
    clients.push(sender);
    sender.send({ type: "send", to: "u_b", text: "anything", clientId: "c3" });
    expect(await sender.take((frame) => frame.type === "sent")).toMatchObject({ code: 403 });
    expect(emulator.state.intercepts[0]).toMatchObject({ decision: "reject", decidedBy: "default-policy" });
  });
});
