/**
 * Teams and turn control, end to end: the real bridge (in-process, SQLite) behind the NIM emulator
 * and the fake OpenAI server. Users' messages go *through the emulator* (msg/sendMsg.action, ope 1
 * for a team) and reach the bridge as NIM's signed 抄送, built by the emulator's dispatcher with the
 * same helpers NIM's shape is pinned in (src/callback/build.ts: `tMembers`, `ext`, every value a
 * string); recalls go through msg/recall.action and arrive as recall copies (eventType 7 / 8). The
 * bots' own sends are copied back too, as NIM does with team 抄送 switched on.
 *
 * The last suite runs two bridge processes on PostgreSQL + Redis (test/multi-stack.ts) and hands a
 * /stop or a recall to the instance that is *not* producing the reply.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildMessageCopy } from "../src/callback/build.ts";
import { signCallback } from "../src/callback/sign.ts";
import type { EmulatorMessage } from "../src/emulator/index.ts";
import { signedPost } from "../src/emulator/test-clients.ts";
import {
  APP_KEY,
  APP_SECRET,
  BOT,
  type Stack,
  type StackOptions,
  type StreamBody,
  sleep,
  startStack,
} from "./harness.ts";
import { MultiStack, newMessageIdServer } from "./multi-stack.ts";
import { POSTGRES_URL, REDIS_URL, services } from "./services.ts";

const TUTOR = "tutor_bot";
const ADVISOR_PROMPT = "You are the advisor (顾问).";
const TUTOR_PROMPT = "You are the tutor (导师).";
const BOTS = [
  { accid: BOT, name: "顾问", system_prompt: ADVISOR_PROMPT },
  { accid: TUTOR, name: "导师", system_prompt: TUTOR_PROMPT },
];
const SIGNING = { appKey: APP_KEY, appSecret: APP_SECRET };

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** UIKit's `ext` for a text that @s `accids` (each mention's segment is checked against the text). */
function aitExt(text: string, mentions: Array<{ accid: string; name: string }>): string {
  const yxAitMsg: Record<string, unknown> = {};
  for (const { accid, name } of mentions) {
    const start = text.indexOf(`@${name}`);
    yxAitMsg[accid] = { text: `@${name} `, segments: [{ start, end: start + name.length, broken: false }] };
  }
  return JSON.stringify({ yxAitMsg });
}

interface BotReply {
  messages: Array<{ body: StreamBody; message: EmulatorMessage }>;
  segments: StreamBody[];
  finals: Array<{ body: StreamBody; message: EmulatorMessage }>;
  deltaText: string;
  finalText: string;
  status: string | undefined;
}

/**
 * A stack with BOTS_FILE, two registered users (alice, bob), a team made through team/create.action
 * and the emulator's 抄送 pointed at the bridge.
 */
class TeamStack {
  alice = "";
  bob = "";
  tid = "";

  private constructor(
    readonly stack: Stack,
    private readonly directory: string,
  ) {}

  static async start(options: StackOptions & { bots?: typeof BOTS; botsInTeam?: boolean } = {}): Promise<TeamStack> {
    const directory = mkdtempSync(join(tmpdir(), "im-bridge-teams-"));
    const botsFile = join(directory, "bots.json");
    const bots = options.bots ?? BOTS;
    writeFileSync(botsFile, JSON.stringify({ bots }));
    const stack = await startStack({ ...options, env: { BOTS_FILE: botsFile, ...options.env } });
    const team = new TeamStack(stack, directory);
    team.alice = await stack.register("alice");
    team.bob = await stack.register("bob");
    const botAccids = bots.map((bot) => bot.accid);
    const members = [team.bob, ...(options.botsInTeam === false ? [] : botAccids)];
    const created = await team.api("team/create.action", {
      tname: "e2e room",
      owner: team.alice,
      members: JSON.stringify(members),
      msg: "join",
      magree: "0",
      joinmode: "0",
    });
    team.tid = String(created.tid);
    stack.emulator.settings.callbackUrl = `${stack.bridgeUrl}/im/callback`;
    return team;
  }

  get openai() {
    return this.stack.openai;
  }

  get bridge() {
    return this.stack.bridge!;
  }

  async api(path: string, form: Record<string, string>): Promise<Record<string, unknown> & { text: string }> {
    const answer = await signedPost(`${this.stack.emulator.classicApiBase}/${path}`, { form }, SIGNING);
    if (answer.json?.code !== 200) throw new Error(`${path} answered ${answer.text}`);
    return { ...answer.json, text: answer.text };
  }

  /** `from` sends a text (to the team, or P2P to a bot); resolves once NIM's copy reached the bridge. */
  async say(from: string, text: string, options: { ext?: string; to?: string } = {}): Promise<string> {
    const p2p = options.to !== undefined;
    const answer = await this.api("msg/sendMsg.action", {
      from,
      ope: p2p ? "0" : "1",
      to: options.to ?? this.tid,
      type: "0",
      body: JSON.stringify({ msg: text }),
      ...(options.ext ? { ext: options.ext } : {}),
    });
    // Read from the raw text: NIM's msgid is a 64-bit integer.
    const msgid = /"msgid":\s*"?(\d+)/.exec(answer.text)?.[1];
    if (!msgid) throw new Error(`no msgid in ${answer.text}`);
    await this.stack.emulator.state.waitForCallbacks({
      kind: "message-copy",
      msgidServer: msgid,
      where: (record) => record.status === 200,
      count: 1,
    });
    return msgid;
  }

  /** The sender recalls `msgid` through msg/recall.action; resolves once the recall copy reached the bridge. */
  async recall(msgid: string): Promise<void> {
    const message = this.stack.emulator.state.messages.find((candidate) => candidate.msgid === msgid);
    if (!message) throw new Error(`no message ${msgid}`);
    await this.api("msg/recall.action", {
      deleteMsgid: msgid,
      timetag: String(message.timetag),
      type: message.ope === 1 ? "8" : "7",
      from: message.from,
      to: message.to,
    });
    await this.stack.emulator.state.waitForCallbacks({
      kind: "recall-copy",
      msgidServer: msgid,
      where: (record) => record.status === 200,
      count: 1,
    });
  }

  /** What `bot` sent NIM for the reply to `replyTo` (NIM's msgid, as clients see it). */
  reply(replyTo: string, bot = BOT): BotReply {
    const messages = this.stack.emulator.state
      .messagesMatching({ from: bot, type: 100 })
      .map((message) => ({ message, body: JSON.parse(message.body) as StreamBody }))
      .filter((entry) => entry.body.kind === "bot_stream" && entry.body.reply_to === replyTo);
    const ordered = [...messages].sort((left, right) => left.body.seq - right.body.seq);
    const finals = ordered.filter((entry) => entry.body.done || entry.body.part !== undefined);
    return {
      messages,
      segments: ordered.filter((entry) => !entry.body.done && entry.body.part === undefined).map((entry) => entry.body),
      finals,
      deltaText: ordered.map((entry) => entry.body.delta).join(""),
      finalText: finals.map((entry) => entry.body.text ?? "").join(""),
      status: finals.find((entry) => entry.body.done)?.body.status,
    };
  }

  async waitForReply(replyTo: string, bot = BOT, timeoutMs = 10_000): Promise<BotReply> {
    await until(() => this.reply(replyTo, bot).messages.some((entry) => entry.body.done), timeoutMs, `${bot}'s done`);
    return this.reply(replyTo, bot);
  }

  /** The last user turn of generator request `index`. */
  lastUserText(index: number): string | undefined {
    return this.openai.requests[index]?.body?.messages.filter((message) => message.role === "user").at(-1)?.content;
  }

  async close(): Promise<void> {
    await this.stack.close();
    rmSync(this.directory, { recursive: true, force: true });
  }
}

describe("teams, end to end", () => {
  let team: TeamStack | undefined;
  afterEach(async () => {
    await team?.close();
    team = undefined;
  });

  it("answers an @ by yxAitMsg and by @name into the team, mentioning the asker; never ait_all or a bot", async () => {
    team = await TeamStack.start({ scenario: { kind: "text", text: "年利率 2%。", pieces: 3 } });
    const { alice, bob, tid } = team;

    const byExt = "@顾问 利率是多少？";
    const first = await team.say(alice, byExt, { ext: aitExt(byExt, [{ accid: BOT, name: "顾问" }]) });
    const reply = await team.waitForReply(first);
    expect(reply.status).toBe("ok");
    expect(reply.finalText).toBe("年利率 2%。");
    expect(reply.deltaText).toBe("年利率 2%。");
    for (const { message } of reply.messages) expect(message).toMatchObject({ ope: 1, to: tid, from: BOT });
    const done = reply.finals.find((entry) => entry.body.done)!.message;
    expect(done.forcePushList).toEqual([alice]);
    const mention = JSON.parse(done.ext ?? "{}") as { yxAitMsg?: Record<string, { text: string }> };
    expect(Object.keys(mention.yxAitMsg ?? {})).toEqual([alice]);
    expect(mention.yxAitMsg?.[alice]?.text).toBe(`@${alice} `); // fromNick: the account name, its accid here
    expect(team.lastUserText(0)).toBe("利率是多少？");

    // Typed by a client without UIKit: no ext, the name after an @ in the middle of the text.
    const second = await team.say(bob, "请问 @顾问 汇率呢");
    const typed = await team.waitForReply(second);
    expect(typed.status).toBe("ok");
    const typedDone = typed.finals.find((entry) => entry.body.done)!.message;
    expect(typedDone).toMatchObject({ ope: 1, to: tid, forcePushList: [bob] });
    expect(Object.keys((JSON.parse(typedDone.ext ?? "{}") as { yxAitMsg: object }).yxAitMsg)).toEqual([bob]);
    expect(team.lastUserText(1)).toBe("请问 汇率呢");

    // @all, a plain message, and a bot's own team message (which even @s the bots) wake nobody.
    const everyone = "@所有人 明天开会";
    const all = await team.say(alice, everyone, {
      ext: JSON.stringify({ yxAitMsg: { ait_all: { text: "@所有人 ", segments: [{ start: 0, end: 3 }] } } }),
    });
    const plain = await team.say(bob, "大家好");
    const fromBot = "@顾问 @导师 你们好";
    const own = await team.say(TUTOR, fromBot, {
      ext: aitExt(fromBot, [
        { accid: BOT, name: "顾问" },
        { accid: TUTOR, name: "导师" },
      ]),
    });
    // The bots' replies above came back as team copies as well, and were acknowledged.
    const botCopies = team.stack.emulator.state.callbacks.filter(
      (record) => record.kind === "message-copy" && JSON.parse(record.body).fromAccount === BOT,
    );
    expect(botCopies.length).toBeGreaterThan(0);
    expect(botCopies.every((record) => record.status === 200)).toBe(true);
    await sleep(500);
    expect(team.openai.requests).toHaveLength(2);
    for (const msgid of [all, plain, own]) {
      expect(team.reply(msgid).messages).toHaveLength(0);
      expect(team.reply(msgid, TUTOR).messages).toHaveLength(0);
      expect(await team.bridge.repositories.inbox.get(`${msgid}#${BOT}`)).toBeUndefined();
    }
  });

  it("a long team reply: every final part mentions the asker", async () => {
    const long = Array.from({ length: 1000 }, (_, index) => `第${index}句话。`).join("");
    team = await TeamStack.start({ scenario: { kind: "text", text: long, pieces: 20 } });
    const asked = await team.say(team.bob, "@顾问 tell me everything");
    const reply = await team.waitForReply(asked);
    expect(reply.finalText).toBe(long);
    expect(reply.finals.length).toBeGreaterThan(1);
    for (const { message } of reply.finals) {
      expect(message).toMatchObject({ ope: 1, to: team.tid, forcePushList: [team.bob] });
      expect(Object.keys((JSON.parse(message.ext ?? "{}") as { yxAitMsg: object }).yxAitMsg)).toEqual([team.bob]);
    }
  });

  for (const session of ["user", "team"] as const) {
    it(`TEAM_SESSION=${session}: the second asker's request ${session === "team" ? "holds" : "does not hold"} the first asker's exchange`, async () => {
      team = await TeamStack.start({
        env: { TEAM_SESSION: session },
        scenario: { kind: "text", text: "Noted, Alice likes tea.", pieces: 2 },
      });
      const firstText = "@顾问 I am Alice and I like tea";
      const first = await team.say(team.alice, firstText);
      await team.waitForReply(first);
      team.openai.setScenario({ kind: "text", text: "You asked about drinks.", pieces: 2 });
      const second = await team.say(team.bob, "@顾问 what does Alice like?");
      await team.waitForReply(second);
      const contents = team.openai.requests[1]?.body?.messages.map((message) => message.content) ?? [];
      expect(contents.at(-1)).toBe("what does Alice like?");
      const held = ["I am Alice and I like tea", "Noted, Alice likes tea."];
      if (session === "team") expect(contents).toEqual(expect.arrayContaining(held));
      else for (const text of held) expect(contents).not.toContain(text);
      // Alice's next question in her own (user) or the shared (team) conversation has her exchange.
      const third = await team.say(team.alice, "@顾问 and me?");
      await team.waitForReply(third);
      const again = team.openai.requests[2]?.body?.messages.map((message) => message.content) ?? [];
      expect(again).toEqual(expect.arrayContaining(held));
      if (session === "team") expect(again).toContain("what does Alice like?");
      else expect(again).not.toContain("what does Alice like?");
    });
  }

  it("two bots @-ed in one message each answer once, as themselves", async () => {
    team = await TeamStack.start({ scenario: { kind: "text", text: "Hello there.", pieces: 2 } });
    const text = "@顾问 @导师 你们好";
    const asked = await team.say(team.alice, text, {
      ext: aitExt(text, [
        { accid: BOT, name: "顾问" },
        { accid: TUTOR, name: "导师" },
      ]),
    });
    const advisor = await team.waitForReply(asked, BOT);
    const tutor = await team.waitForReply(asked, TUTOR);
    for (const reply of [advisor, tutor]) {
      expect(reply.finals.filter((entry) => entry.body.done)).toHaveLength(1);
      expect(reply.finalText).toBe("Hello there.");
      expect(reply.status).toBe("ok");
      for (const { message } of reply.messages) expect(message).toMatchObject({ ope: 1, to: team.tid });
    }
    expect(new Set(advisor.messages.map((entry) => entry.body.stream_id)).size).toBe(1);
    expect(advisor.messages[0]?.body.stream_id).not.toBe(tutor.messages[0]?.body.stream_id);
    // Each bot's generator request carries its own system prompt and the text without its own @.
    await sleep(500); // the bots' finals come back as copies: they must not wake each other
    const requests = team.openai.requests.map((request) => request.body?.messages ?? []);
    expect(requests).toHaveLength(2);
    const bySystem = new Map(requests.map((messages) => [messages[0]?.content, messages.at(-1)?.content]));
    expect(bySystem.get(ADVISOR_PROMPT)).toBe("@导师 你们好");
    expect(bySystem.get(TUTOR_PROMPT)).toBe("@顾问 你们好");
    const rows = await Promise.all([BOT, TUTOR].map((bot) => team!.bridge.repositories.inbox.get(`${asked}#${bot}`)));
    expect(rows.map((row) => row?.status)).toEqual(["done", "done"]);
  });

  it("two bots streaming one message's replies: a recall stops both; a /stop @-ing both stops both", async () => {
    team = await TeamStack.start({ scenario: { kind: "stall", text: "On it" } });
    const both = [
      { accid: BOT, name: "顾问" },
      { accid: TUTOR, name: "导师" },
    ];
    const streaming = async (text: string) => {
      const msgid = await team!.say(team!.alice, text, { ext: aitExt(text, both) });
      for (const bot of [BOT, TUTOR]) {
        await until(() => team!.reply(msgid, bot).segments.length > 0, 10_000, `${bot}'s first segment`);
      }
      return msgid;
    };
    const recalled = await streaming("@顾问 @导师 first question");
    await team.recall(recalled);
    for (const bot of [BOT, TUTOR]) expect((await team.waitForReply(recalled, bot, 5_000)).status).toBe("stopped");

    const asked = await streaming("@顾问 @导师 second question");
    const stop = "@顾问 @导师 /stop";
    const command = await team.say(team.alice, stop, { ext: aitExt(stop, both) });
    for (const bot of [BOT, TUTOR]) expect((await team.waitForReply(asked, bot, 5_000)).status).toBe("stopped");
    await sleep(300);
    // The command reached no model and got no reply of its own.
    expect(team.openai.requests).toHaveLength(4);
    for (const bot of [BOT, TUTOR]) expect(team.reply(command, bot).messages).toHaveLength(0);
  });

  it("a bot that is not a member: NIM's 804 ends the reply without a retry loop, audited", async () => {
    team = await TeamStack.start({
      bots: [BOTS[0]!],
      botsInTeam: false,
      scenario: { kind: "text", text: "You will never see this.", pieces: 2 },
    });
    expect(team.stack.emulator.state.isTeamMember(team.tid, BOT)).toBe(false);
    const asked = await team.say(team.alice, "@顾问 hello?");
    const key = `${asked}#${BOT}`;
    await until(
      async () => ["done", "failed"].includes((await team!.bridge.repositories.inbox.get(key))?.status ?? ""),
      10_000,
      "the reply to end",
    );
    const sends = () =>
      team!.stack.emulator.state.requests.filter((request) => request.path.endsWith("msg/sendMsg.action"));
    const refused = sends().filter((request) => request.code === 804);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.length).toBeLessThanOrEqual(3);
    const countAfterEnd = sends().length;
    await sleep(1_500);
    expect(sends().length).toBe(countAfterEnd);
    expect(team.reply(asked).messages).toHaveLength(0);
    const row = await team.bridge.repositories.inbox.get(key);
    expect(row?.attempts).toBe(1);
    const audits = await team.bridge.repositories.audit.list({ event: "reply.failed" });
    expect(audits.map((audit) => audit.subject)).toContain(key);
    const [sendFailed] = await team.bridge.repositories.audit.list({ event: "reply.send_failed", subject: key });
    expect(JSON.parse(sendFailed?.detail ?? "{}")).toMatchObject({ code: "804", bot: BOT });
  });
});

describe("turn control in P2P and teams, end to end", () => {
  let team: TeamStack | undefined;
  afterEach(async () => {
    await team?.close();
    team = undefined;
  });

  it("停止 in a team during generation closes the generator and ends the reply stopped", async () => {
    team = await TeamStack.start({ scenario: { kind: "stall", text: "让我想一想" } });
    const asked = await team.say(team.alice, "@顾问 一个很长的问题");
    await until(() => team!.reply(asked).segments.length > 0, 10_000, "the first segment");
    // Bob's 停止 is his own conversation's (TEAM_SESSION=user): it stops nothing of Alice's.
    await team.say(team.bob, "@顾问 停止");
    await sleep(300);
    expect(team.reply(asked).status).toBeUndefined();
    const stoppedAt = Date.now();
    await team.say(team.alice, "@顾问 停止");
    const reply = await team.waitForReply(asked, BOT, 5_000);
    expect(Date.now() - stoppedAt).toBeLessThan(2_000);
    expect(reply.status).toBe("stopped");
    expect(reply.finalText).toBe("让我想一想");
    expect(reply.deltaText).toBe(reply.finalText);
    await until(() => team!.openai.requests[0]?.disconnected === true, 2_000, "the upstream to be closed");
  });

  it("/stop during delivery (slow pacing, the generator already done) ends the reply with what was sent", async () => {
    const full = Array.from({ length: 12 }, (_, index) => `Sentence ${index}. `).join("");
    team = await TeamStack.start({
      env: { REPLY_PACING_MS: "1500" },
      scenario: { kind: "text", text: full, pieces: 12, delayMs: 10 },
    });
    const asked = await team.say(team.alice, "long answer please", { to: BOT });
    await until(
      () => team!.openai.requests[0]?.completed === true && team!.reply(asked).segments.length > 0,
      10_000,
      "the generator to finish while the reply is still being paced",
    );
    expect(team.reply(asked).status).toBeUndefined();
    const stoppedAt = Date.now();
    await team.say(team.alice, "/stop", { to: BOT });
    const reply = await team.waitForReply(asked, BOT, 5_000);
    expect(Date.now() - stoppedAt).toBeLessThan(2_000);
    expect(reply.status).toBe("stopped");
    expect(reply.deltaText).toBe(reply.finalText);
    expect(full.startsWith(reply.finalText)).toBe(true);
    expect(reply.finalText.length).toBeLessThan(full.length);
  });

  for (const scope of ["p2p", "team"] as const) {
    it(`${scope}: a message recalled before its reply started is never answered`, async () => {
      team = await TeamStack.start({
        scenario: { kind: "text", text: "First answer, slowly.", pieces: 8, delayMs: 120 },
      });
      const to = scope === "p2p" ? { to: BOT } : {};
      const prefix = scope === "p2p" ? "" : "@顾问 ";
      const first = await team.say(team.alice, `${prefix}first`, to);
      const second = await team.say(team.alice, `${prefix}second`, to);
      await until(() => team!.reply(first).segments.length > 0, 10_000, "the first reply to stream");
      await team.recall(second);
      expect((await team.waitForReply(first)).status).toBe("ok");
      const key = scope === "p2p" ? second : `${second}#${BOT}`;
      await until(async () => (await team!.bridge.repositories.inbox.get(key))?.status === "done", 5_000, "skip");
      await sleep(300);
      expect(team.reply(second).messages).toHaveLength(0);
      expect(team.openai.requests).toHaveLength(1);
      const skipped = await team.bridge.repositories.audit.list({ event: "reply.skipped" });
      expect(skipped.find((row) => row.subject === key)?.detail).toContain("recalled");
    });

    it(`${scope}: a recall while the reply streams stops it`, async () => {
      team = await TeamStack.start({ scenario: { kind: "stall", text: "Partial" } });
      const to = scope === "p2p" ? { to: BOT } : {};
      const asked = await team.say(team.alice, scope === "p2p" ? "question" : "@顾问 question", to);
      await until(() => team!.reply(asked).segments.length > 0, 10_000, "the first segment");
      const recalledAt = Date.now();
      await team.recall(asked);
      const reply = await team.waitForReply(asked, BOT, 5_000);
      expect(Date.now() - recalledAt).toBeLessThan(2_000);
      expect(reply.status).toBe("stopped");
      expect(reply.finalText).toBe("Partial");
      await until(() => team!.openai.requests[0]?.disconnected === true, 2_000, "the upstream to be closed");
    });
  }

  it("TEAM_SESSION=team: another member's /stop does not end a reply to someone else; the asker's does", async () => {
    team = await TeamStack.start({ env: { TEAM_SESSION: "team" }, scenario: { kind: "stall", text: "Alice, wait" } });
    const asked = await team.say(team.alice, "@顾问 a long question");
    await until(() => team!.reply(asked).segments.length > 0, 10_000, "the first segment");
    await team.say(team.bob, "@顾问 /stop");
    await sleep(500);
    expect(team.reply(asked).status).toBeUndefined();
    expect(team.openai.requests[0]?.disconnected).toBe(false);
    await team.say(team.alice, "@顾问 /stop");
    expect((await team.waitForReply(asked, BOT, 5_000)).status).toBe("stopped");
  });

  it("TEAM_SESSION=team with REPLY_DEBOUNCE_MS: two members' quick messages are not merged into one turn", async () => {
    team = await TeamStack.start({
      env: { TEAM_SESSION: "team", REPLY_DEBOUNCE_MS: "600" },
      scenario: { kind: "text", text: "Answered.", pieces: 2 },
    });
    const fromAlice = await team.say(team.alice, "@顾问 what is the rate?");
    const fromBob = await team.say(team.bob, "@顾问 and the fee?");
    const [aliceReply, bobReply] = [await team.waitForReply(fromAlice), await team.waitForReply(fromBob)];
    expect(aliceReply.finals.find((entry) => entry.body.done)?.message.forcePushList).toEqual([team.alice]);
    expect(bobReply.finals.find((entry) => entry.body.done)?.message.forcePushList).toEqual([team.bob]);
    expect(team.openai.requests.map((_, index) => team!.lastUserText(index))).toEqual([
      "what is the rate?",
      "and the fee?",
    ]);
  });

  for (const debounceMs of [600, 0]) {
    it(`REPLY_DEBOUNCE_MS=${debounceMs}: a burst of three messages is ${debounceMs ? "one turn" : "three turns"}`, async () => {
      team = await TeamStack.start({
        env: { REPLY_DEBOUNCE_MS: String(debounceMs) },
        scenario: { kind: "text", text: "Answered.", pieces: 2 },
      });
      const burst: string[] = [];
      for (const text of ["my order", "number 42", "where is it?"])
        burst.push(await team.say(team.alice, `@顾问 ${text}`));
      const keys = burst.map((msgid) => `${msgid}#${BOT}`);
      await until(
        async () => {
          const rows = await Promise.all(keys.map((key) => team!.bridge.repositories.inbox.get(key)));
          return rows.every((row) => row?.status === "done");
        },
        10_000,
        "every message to be done",
      );
      await sleep(300);
      const answered = burst.filter((msgid) => team!.reply(msgid).messages.some((entry) => entry.body.done));
      if (debounceMs) {
        expect(answered).toEqual([burst[0]]);
        expect(team.openai.requests).toHaveLength(1);
        const text = team.lastUserText(0) ?? "";
        for (const part of ["my order", "number 42", "where is it?"]) expect(text).toContain(part);
        expect(text).not.toContain("@顾问");
        const merged = await team.bridge.repositories.audit.list({ event: "reply.merged" });
        expect(merged.map((row) => row.subject).sort()).toEqual(keys.slice(1).sort());
      } else {
        expect(answered).toEqual(burst);
        expect(team.openai.requests.map((_, index) => team!.lastUserText(index))).toEqual([
          "my order",
          "number 42",
          "where is it?",
        ]);
      }
    });
  }
});

describe.runIf(services.postgres && services.redis)("turn control across two instances (PostgreSQL + Redis)", () => {
  let stack: MultiStack;

  beforeAll(async () => {
    stack = new MultiStack({
      labels: ["A", "B"],
      postgresUrl: POSTGRES_URL,
      redisUrl: REDIS_URL,
      scenario: { kind: "stall", text: "Thinking it over" },
    });
    await stack.start();
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
  }, 60_000);

  /** Who produces the reply (the instance that sent its first segment) and who does not. */
  async function producerOf(replyTo: string): Promise<{ producer: string; other: string }> {
    await until(() => stack.calls.some((call) => call.stream?.reply_to === replyTo), 15_000, `a segment of ${replyTo}`);
    const producer = stack.calls.find((call) => call.stream?.reply_to === replyTo)!.instance;
    return { producer, other: producer === "A" ? "B" : "A" };
  }

  async function postSigned(url: string, copy: Record<string, string>): Promise<number> {
    const body = JSON.stringify(copy);
    const headers = signCallback({ appSecret: APP_SECRET, body, curTime: Date.now() });
    const response = await fetch(`${url}/im/callback`, {
      method: "POST",
      headers: { "content-type": "application/json", AppKey: APP_KEY, ...headers },
      body,
    });
    await response.arrayBuffer();
    return response.status;
  }

  async function doneWithin(replyTo: string, sinceMs: number, limitMs: number) {
    await until(() => stack.delivered(replyTo).some((entry) => entry.body.done), 10_000, `the done of ${replyTo}`);
    const done = stack.delivered(replyTo).find((entry) => entry.body.done)!;
    expect(done.timetag - sinceMs).toBeLessThan(limitMs);
    return done.body;
  }

  it("a /stop delivered to the instance that is not producing the reply stops it within 2 s", async () => {
    const accid = await stack.instance("A").register(`stop-${stack.schema}`);
    const asked = newMessageIdServer();
    expect(await stack.instance("A").deliver(accid, "a long question", asked)).toBe(200);
    const { other } = await producerOf(asked);
    const stoppedAt = Date.now();
    expect(await stack.instance(other).deliver(accid, "/stop", newMessageIdServer())).toBe(200);
    const done = await doneWithin(asked, stoppedAt, 2_000);
    expect(done).toMatchObject({ status: "stopped", text: "Thinking it over" });
    const request = stack.openai.requests.find((candidate) =>
      candidate.body?.messages.some((message) => message.content === "a long question"),
    );
    await until(() => request?.disconnected === true, 2_000, "the upstream to be closed");
  });

  it("a recall delivered to the instance that is not producing the reply stops it within 2 s", async () => {
    const accid = await stack.instance("B").register(`recall-${stack.schema}`);
    const asked = newMessageIdServer();
    const sentAt = Date.now();
    expect(await stack.instance("B").deliver(accid, "another long question", asked)).toBe(200);
    const { other } = await producerOf(asked);
    const recalledAt = Date.now();
    // NIM's recall copy (nim-protocol §10.1 #1): eventType 7, msgId = the recalled message's server id.
    const status = await postSigned(stack.instance(other).url, {
      eventType: "7",
      from: accid,
      to: BOT,
      msgId: asked,
      clientId: "c-1",
      deleteTime: String(recalledAt),
      sendTime: String(sentAt),
      fromClientType: "WEB",
      selfMsg: "true",
      attach: "",
    });
    expect(status).toBe(200);
    const done = await doneWithin(asked, recalledAt, 2_000);
    expect(done).toMatchObject({ status: "stopped", text: "Thinking it over" });
  });

  it("a team recall (eventType 8) delivered to the other instance stops the reply keyed msgid#bot", async () => {
    const accid = await stack.instance("A").register(`team-${stack.schema}`);
    const room = stack.emulator.state.createTeam({ name: "room", owner: accid, members: [BOT] });
    const asked = newMessageIdServer();
    const sentAt = Date.now();
    const text = "@顾问 a team question";
    const copy = buildMessageCopy({
      from: accid,
      to: room.tid,
      convType: "TEAM",
      body: text,
      msgidServer: asked,
      msgTimestamp: sentAt,
      ext: aitExt(text, [{ accid: BOT, name: "顾问" }]),
    });
    copy.tMembers = `[${room.members.join(", ")}]`;
    expect(await postSigned(stack.instance("A").url, copy)).toBe(200);
    const { other } = await producerOf(asked);
    const recalledAt = Date.now();
    const status = await postSigned(stack.instance(other).url, {
      eventType: "8",
      from: accid,
      to: room.tid,
      msgId: asked,
      clientId: copy.msgidClient ?? "",
      deleteTime: String(recalledAt),
      sendTime: String(sentAt),
      fromClientType: "WEB",
      selfMsg: "true",
      attach: "",
    });
    expect(status).toBe(200);
    const done = await doneWithin(asked, recalledAt, 2_000);
    expect(done).toMatchObject({ status: "stopped", text: "Thinking it over" });
    expect(stack.delivered(asked).every((entry) => entry.to === room.tid)).toBe(true);
  });
});
