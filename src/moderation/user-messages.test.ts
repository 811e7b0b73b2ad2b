/**
 * User-to-user moderation with real parts: the keyword moderator on a real file, the real NIM
 * client against the NIM emulator (msg/recall.action, msg/sendMsg.action), SQLite for the audit.
 * Users talk through the emulator's gateway; the event under test is exactly the message copy the
 * emulator would POST for their message, parsed by the bridge's own parser.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildMessageCopy } from "../callback/build.ts";
import type { MessageEvent } from "../callback/events.ts";
import { parseCallbackEvent } from "../callback/parse.ts";
import { messageCopyOf, type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { GatewayTestClient } from "../emulator/test-clients.ts";
import { createNimClient } from "../nim/client.ts";
import type { NimClient, NimRecallRequest } from "../nim/types.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { AuditRepository } from "../storage/repositories.ts";
import { createKeywordModerator, type KeywordModerator } from "./keyword.ts";
import { createUserMessageModeration, type UserMessageModerationOptions } from "./user-messages.ts";

const APP_KEY = "user-moderation-key";
const APP_SECRET = "user-moderation-secret";
const BOT = "advisor_bot";
const NOTICE = "你的消息已被撤回。Your message was withdrawn.";

describe("user-to-user moderation", () => {
  let emulator: RunningNimEmulator;
  let database: Database;
  let audit: AuditRepository;
  let moderator: KeywordModerator;
  let directory: string;
  const clients: GatewayTestClient[] = [];
  const logged: string[] = [];

  function nim() {
    return createNimClient({
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      apiBase: emulator.classicApiBase,
      timeoutMs: 2_000,
      retry: { maxAttempts: 1, deadlineMs: 5_000 },
    });
  }

  function moderation(overrides: Partial<UserMessageModerationOptions> = {}) {
    return createUserMessageModeration({
      moderator,
      nim: nim(),
      audit,
      isBot: (accid) => accid === BOT,
      noticeFrom: BOT,
      recall: true,
      notice: NOTICE,
      respectNimAntispam: true,
      logger: {
        info: (_details, message) => logged.push(message),
        warn: (_details, message) => logged.push(message),
        error: (_details, message) => logged.push(message),
      },
      ...overrides,
    });
  }

  async function online(accid: string) {
    const client = await GatewayTestClient.loggedIn(emulator.gatewayUrl, accid, `token-${accid}`);
    clients.push(client);
    return client;
  }

  /** `from` sends `text` to `to` through the gateway; returns the copy NIM would POST, parsed. */
  async function send(from: GatewayTestClient, to: string, text: string): Promise<MessageEvent> {
    from.send({ type: "send", to, text, clientId: `c-${Math.random()}` });
    const sent = await from.take((frame) => frame.type === "sent");
    expect(sent.code).toBe(200);
    const message = emulator.state.findMessage(String(sent.msgid))!;
    const event = parseCallbackEvent(Buffer.from(JSON.stringify(messageCopyOf(message, emulator.state))));
    if (event.kind !== "message") throw new Error(`not a message event: ${event.kind}`);
    return event;
  }

  beforeEach(async () => {
    emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET });
    for (const accid of ["u_alice", "u_bob", BOT]) {
      emulator.state.addAccount({ accid, token: `token-${accid}`, createdAt: Date.now() });
    }
    database = await openDatabase("sqlite::memory:");
    audit = new AuditRepository(database);
    directory = mkdtempSync(join(tmpdir(), "user-moderation-"));
    writeFileSync(join(directory, "keywords.txt"), "# test list\n违禁词\nforbidden\n");
    moderator = createKeywordModerator({ file: join(directory, "keywords.txt"), reloadIntervalMs: 60_000 });
    logged.length = 0;
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    moderator.close();
    rmSync(directory, { recursive: true, force: true });
    await database.close();
    await emulator.close();
  });

  it("recalls a blocked P2P message, tells both sides, notifies the sender and audits", async () => {
    const alice = await online("u_alice");
    const bob = await online("u_bob");
    const event = await send(alice, "u_bob", "buy FORBIDDEN stuff");
    await bob.take((frame) => frame.type === "message");

    const outcome = await moderation().check(event);
    expect(outcome).toEqual({ kind: "blocked", recalled: true, notified: true });

    const message = emulator.state.findMessage(event.msgidServer)!;
    expect(message.recalled).toBeDefined();
    // NIM's SDK shows both sides the withdrawal; the message leaves the history.
    for (const client of [alice, bob]) {
      expect(await client.take((frame) => frame.type === "recall")).toMatchObject({
        recall: { msgid: event.msgidServer, from: "u_alice", to: "u_bob", scene: "p2p" },
      });
    }
    expect(emulator.state.conversationHistory("u_alice", "u_bob", 10)).toEqual([]);

    const notice = await alice.take((frame) => frame.type === "message");
    expect(notice.message).toMatchObject({ from: BOT, to: "u_alice", type: 0, body: JSON.stringify({ msg: NOTICE }) });

    const rows = await audit.list();
    expect(rows.map((row) => row.event)).toEqual([
      "moderation.user_message.blocked",
      "moderation.user_message.recalled",
    ]);
    expect(rows[0]!.subject).toBe(event.msgidServer);
    expect(JSON.parse(rows[0]!.detail!)).toMatchObject({ from: "u_alice", to: "u_bob", conversation: "person" });
  });

  it("leaves an allowed message alone and calls NIM for nothing", async () => {
    const alice = await online("u_alice");
    const event = await send(alice, "u_bob", "see you at 5");
    const requestsBefore = emulator.state.requests.length;
    expect(await moderation().check(event)).toEqual({ kind: "allowed" });
    expect(emulator.state.requests).toHaveLength(requestsBefore);
    expect(await audit.list()).toEqual([]);
  });

  it("skips what it does not own: bots, messages to a bot, non-text, super teams, redeliveries", async () => {
    const parse = (input: Parameters<typeof buildMessageCopy>[0]) => {
      const event = parseCallbackEvent(Buffer.from(JSON.stringify(buildMessageCopy(input))));
      if (event.kind !== "message") throw new Error(event.kind);
      return event;
    };
    const instance = moderation();
    const base = { body: "forbidden", msgTimestamp: Date.now() };
    expect(await instance.check(parse({ ...base, from: BOT, to: "u_bob" }))).toEqual({
      kind: "skipped",
      why: "from-bot",
    });
    expect(await instance.check(parse({ ...base, from: "u_bob", to: "Advisor_Bot" }))).toEqual({
      kind: "skipped",
      why: "to-bot",
    });
    expect(
      await instance.check(parse({ ...base, from: "u_bob", to: "u_alice", msgType: "PICTURE", attach: "{}" })),
    ).toEqual({ kind: "skipped", why: "not-text" });
    expect(await instance.check(parse({ ...base, from: "u_bob", to: "1234", convType: "SUPER_TEAM" }))).toEqual({
      kind: "skipped",
      why: "super-team",
    });
    const once = parse({ ...base, body: "hello", from: "u_bob", to: "u_alice", msgidServer: "77" });
    expect(await instance.check(once)).toEqual({ kind: "allowed" });
    expect(await instance.check(once)).toEqual({ kind: "skipped", why: "duplicate" });
  });

  it("recalls a team message with type 8 and the tid, and respects NIM's antispam flag", async () => {
    const recalls: NimRecallRequest[] = [];
    const real = nim();
    // The emulator has no teams, so the recall request itself is what is checked here.
    const recording: Pick<NimClient, "recallMessage" | "sendMessage"> = {
      recallMessage: async (request) => {
        recalls.push(request);
      },
      sendMessage: (request) => real.sendMessage(request),
    };
    const copy = buildMessageCopy({
      from: "U_Bob",
      to: "99887766",
      convType: "TEAM",
      body: "nothing wrong in the words",
      msgidServer: "5550001",
      msgTimestamp: 1_700_000_000_123,
    });
    const flagged = parseCallbackEvent(Buffer.from(JSON.stringify({ ...copy, antispam: "true" })));
    if (flagged.kind !== "message") throw new Error(flagged.kind);
    expect(await moderation({ nim: recording }).check(flagged)).toMatchObject({ kind: "blocked", recalled: true });
    expect(recalls).toEqual([
      expect.objectContaining({
        msgidServer: "5550001",
        timetag: 1_700_000_000_123,
        conversation: "team",
        from: "u_bob",
        to: "99887766",
        ignoreTimeLimit: true,
      }),
    ]);
    const [blocked] = await audit.list({ event: "moderation.user_message.blocked" });
    expect(JSON.parse(blocked!.detail!)).toMatchObject({ conversation: "team", category: "nim-antispam" });
  });

  it("audits a recall NIM refuses and still tells the sender", async () => {
    const alice = await online("u_alice");
    const event = await send(alice, "u_bob", "违禁词 here");
    emulator.faults.push({ path: "msg/recall.action", kind: "code", code: 414, desc: "msg not exist" });
    expect(await moderation().check(event)).toEqual({ kind: "blocked", recalled: false, notified: true });
    const failed = await audit.list({ event: "moderation.user_message.recall_failed" });
    expect(JSON.parse(failed[0]!.detail!)).toMatchObject({ nimCode: 414 });
    expect(emulator.state.findMessage(event.msgidServer)!.recalled).toBeUndefined();
  });

  it("with MODERATION_RECALL=false and no notice only audits", async () => {
    const alice = await online("u_alice");
    const event = await send(alice, "u_bob", "forbidden");
    const requestsBefore = emulator.state.requests.length;
    expect(await moderation({ recall: false, notice: "" }).check(event)).toEqual({
      kind: "blocked",
      recalled: false,
      notified: false,
    });
    expect(emulator.state.requests).toHaveLength(requestsBefore);
    expect((await audit.list()).map((row) => row.event)).toEqual(["moderation.user_message.blocked"]);
  });

  it("consider() returns at once, runs the check in the background and never throws", async () => {
    const alice = await online("u_alice");
    const event = await send(alice, "u_bob", "forbidden");
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const instance = moderation({
      moderator: {
        checkInput: async () => {
          calls++;
          await held;
          if (calls === 1) throw new Error("moderation service exploded");
          return { allowed: false, reason: "test" };
        },
        checkOutput: async () => ({ allowed: true }),
      },
    });
    instance.consider(event);
    expect(emulator.state.findMessage(event.msgidServer)!.recalled).toBeUndefined();
    release();
    await instance.idle();
    expect(logged).toContain("user message moderation failed");
    // The failed check is forgotten, so NIM's redelivery of the copy gets checked again.
    instance.consider(event);
    await instance.idle();
    expect(emulator.state.findMessage(event.msgidServer)!.recalled).toBeDefined();
  });
});
