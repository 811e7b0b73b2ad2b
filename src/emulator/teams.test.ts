/**
 * Teams in the emulator over real HTTP and WebSockets: the classic team API, team sends by the
 * server API (the bot) and by clients (the gateway), 804 for non-members, delivery to members, and
 * team 抄送 with `tMembers` and `ext`, checked with the bridge's own verifier and parser.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseCallbackEvent } from "../callback/parse.ts";
import { verifyCallback } from "../callback/verify.ts";
import { type EmulatorSettings, type RunningNimEmulator, startNimEmulator } from "./index.ts";
import { CallbackReceiver, GatewayTestClient, signedPost } from "./test-clients.ts";

const appKey = "team-test-key";
const appSecret = "team-test-secret";
const bot = "advisor_bot";
const tutor = "tutor_bot";

let emulator: RunningNimEmulator;
let receiver: CallbackReceiver;
let defaults: EmulatorSettings;
const clients: GatewayTestClient[] = [];

beforeAll(async () => {
  receiver = await CallbackReceiver.start();
  emulator = await startNimEmulator({ appKey, appSecret, callbackUrl: receiver.url, callbackRetryDelayMs: 10 });
  defaults = structuredClone({ ...emulator.settings, randomFaults: undefined, callbackFaults: {} });
});
afterAll(async () => {
  await emulator.close();
  await receiver.close();
});
beforeEach(() => {
  for (const accid of ["alice", "bob", "carol", bot, tutor]) {
    emulator.state.addAccount({
      accid,
      token: `${accid}-token`,
      name: accid === "alice" ? "Alice" : "",
      createdAt: Date.now(),
    });
  }
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await emulator.callbacks.idle();
  emulator.state.reset();
  Object.assign(emulator.settings, structuredClone(defaults));
  receiver.reset();
});

function call(path: string, form: Record<string, string>) {
  return signedPost(`${emulator.classicApiBase}/${path}`, { form }, { appKey, appSecret });
}

async function createTeam(owner: string, members: string[], extra: Record<string, string> = {}) {
  const result = await call("team/create.action", {
    tname: "学习小组",
    owner,
    members: JSON.stringify(members),
    msg: "join us",
    magree: "0",
    joinmode: "0",
    ...extra,
  });
  return result;
}

async function teamOf(owner: string, members: string[]): Promise<string> {
  const result = await createTeam(owner, members);
  expect(result.json?.code).toBe(200);
  return result.json?.tid as string;
}

async function login(accid: string) {
  const client = await GatewayTestClient.loggedIn(emulator.gatewayUrl, accid, `${accid}-token`);
  clients.push(client);
  return client;
}

function botSends(tid: string, extra: Record<string, string> = {}, from = bot) {
  return call("msg/sendMsg.action", {
    from,
    ope: "1",
    to: tid,
    type: "0",
    body: JSON.stringify({ msg: "答案" }),
    ...extra,
  });
}

/** The copies received so far, verified and parsed. */
function copies() {
  return receiver.received.map((callback) => {
    const verdict = verifyCallback({
      headers: callback.headers,
      rawBody: callback.rawBody,
      appSecret,
      now: Date.now(),
      windowMs: 5 * 60_000,
    });
    expect(verdict.ok).toBe(true);
    return {
      raw: JSON.parse(callback.rawBody.toString()) as Record<string, string>,
      event: parseCallbackEvent(callback.rawBody),
    };
  });
}

describe("team/create.action", () => {
  it("creates a team of the owner and the members and answers its tid", async () => {
    const result = await createTeam("alice", ["bob", bot, "BOB"]);
    expect(result.json).toEqual({ code: 200, tid: expect.stringMatching(/^\d+$/) });
    const team = emulator.state.findTeam(result.json?.tid as string);
    expect(team).toMatchObject({ name: "学习小组", owner: "alice", members: ["alice", "bob", bot] });
  });

  it.each<[string, Record<string, string>, number, RegExp]>([
    ["no tname", { tname: "" }, 414, /tname/],
    ["no msg", { msg: "" }, 414, /msg/],
    ["members not JSON", { members: "bob" }, 414, /members/],
    ["members not accids", { members: "[1]" }, 414, /members/],
    ["an unknown member", { members: '["nobody"]' }, 414, /does not exist/],
    ["an unknown owner", { owner: "nobody" }, 414, /owner/],
    ["a bad magree", { magree: "2" }, 414, /magree/],
    ["magree=1 (consent) is not modelled", { magree: "1" }, 414, /not modelled/],
    ["no joinmode", { joinmode: "" }, 414, /joinmode/],
  ])("refuses %s", async (_case, override, code, desc) => {
    const result = await createTeam("alice", ["bob"], override);
    expect(result.json?.code).toBe(code);
    expect(String(result.json?.desc)).toMatch(desc);
    expect(emulator.state.teams.size).toBe(0);
  });
});

describe("team/add.action and team/kick.action", () => {
  it("adds members (once) and kicks them again, by member or members", async () => {
    const tid = await teamOf("alice", ["bob"]);
    const added = await call("team/add.action", {
      tid,
      owner: "alice",
      members: JSON.stringify([bot, "bob", tutor]),
      msg: "hi",
      magree: "0",
    });
    expect(added.json).toEqual({ code: 200 });
    expect(emulator.state.findTeam(tid)?.members).toEqual(["alice", "bob", bot, tutor]);

    const kicked = await call("team/kick.action", { tid, owner: "alice", member: tutor });
    expect(kicked.json).toEqual({ code: 200 });
    const both = await call("team/kick.action", { tid, owner: "alice", members: JSON.stringify(["bob", "carol"]) });
    expect(both.json).toEqual({ code: 200, faccid: { accid: ["carol"], msg: "not in team" } });
    expect(emulator.state.findTeam(tid)?.members).toEqual(["alice", bot]);
  });

  it("answers 803 for an unknown team, 802 for a non-owner, 414 for kicking the owner", async () => {
    const tid = await teamOf("alice", ["bob"]);
    const unknown = await call("team/add.action", {
      tid: "999",
      owner: "alice",
      members: '["carol"]',
      msg: "x",
      magree: "0",
    });
    expect(unknown.json?.code).toBe(803);
    const notOwner = await call("team/add.action", { tid, owner: "bob", members: '["carol"]', msg: "x", magree: "0" });
    expect(notOwner.json?.code).toBe(802);
    const owner = await call("team/kick.action", { tid, owner: "alice", member: "alice" });
    expect(owner.json?.code).toBe(414);
    const noMember = await call("team/kick.action", { tid, owner: "alice" });
    expect(noMember.json?.code).toBe(414);
  });
});

describe("sendMsg with ope 1", () => {
  it("refuses a sender that is not a member with 804, and an unknown tid with 803", async () => {
    const tid = await teamOf("alice", ["bob"]);
    expect((await botSends(tid)).json).toEqual({ code: 804, desc: "not in team" });
    expect((await botSends("12345")).json?.code).toBe(803);
    expect((await botSends("not-a-tid")).json?.code).toBe(803);
    expect(emulator.state.messages).toHaveLength(0);
  });

  it("accepts a member's send and records forcepushlist, forcepushcontent and ext", async () => {
    const tid = await teamOf("alice", ["bob", bot]);
    const ext = JSON.stringify({
      yxAitMsg: { alice: { text: "@Alice ", segments: [{ start: 0, end: 5, broken: false }] } },
    });
    const result = await botSends(tid, { forcepushlist: '["alice"]', forcepushcontent: "顾问 回复了你", ext });
    expect(result.json?.code).toBe(200);
    const [message] = emulator.state.messagesMatching({ from: bot, to: tid });
    expect(message).toMatchObject({
      ope: 1,
      to: tid,
      ext,
      forcePushList: ["alice"],
      forcePushContent: "顾问 回复了你",
    });
  });

  it("takes the Java SDK's camelCase spelling too", async () => {
    const tid = await teamOf("alice", [bot]);
    await botSends(tid, { forcePushList: '["alice"]', forcePushContent: "hi" });
    expect(emulator.state.messages[0]).toMatchObject({ forcePushList: ["alice"], forcePushContent: "hi" });
  });

  it.each<[string, string, number]>([
    ["not JSON", "alice", 414],
    ["not strings", "[1,2]", 414],
    ["over 100 accounts", JSON.stringify(Array.from({ length: 101 }, (_, index) => `u${index}`)), 811],
  ])("refuses a forcepushlist that is %s", async (_case, forcepushlist, code) => {
    const tid = await teamOf("alice", [bot]);
    expect((await botSends(tid, { forcepushlist })).json?.code).toBe(code);
  });

  it("answers 804 once the bot was kicked", async () => {
    const tid = await teamOf("alice", [bot]);
    expect((await botSends(tid)).json?.code).toBe(200);
    await call("team/kick.action", { tid, owner: "alice", member: bot });
    expect((await botSends(tid)).json?.code).toBe(804);
  });
});

describe("team messages over the gateway", () => {
  it("delivers a member's team text with its ext to the other members only", async () => {
    const tid = await teamOf("alice", ["bob", bot]);
    const [alice, bob, carol] = await Promise.all([login("alice"), login("bob"), login("carol")]);
    const ext = JSON.stringify({
      yxAitMsg: { [bot]: { text: "@advisor_bot ", segments: [{ start: 0, end: 11, broken: false }] } },
    });
    alice.send({ type: "send", scene: "team", to: tid, text: "@advisor_bot 你好", clientId: "c1", ext });
    const sent = await alice.take((frame) => frame.type === "sent");
    expect(sent).toMatchObject({ code: 200, clientId: "c1", msgid: expect.stringMatching(/^\d+$/) });
    const received = await bob.take((frame) => frame.type === "message");
    expect(received.message).toMatchObject({
      from: "alice",
      to: tid,
      scene: "team",
      ext,
      fromNick: "Alice",
      msgid: sent.msgid,
    });
    expect(await carol.collect((frame) => frame.type === "message", 100)).toEqual([]);
    expect(await alice.collect((frame) => frame.type === "message", 0)).toEqual([]);
  });

  it("answers 804 to a non-member and 803 to an unknown team", async () => {
    const tid = await teamOf("alice", ["bob"]);
    const carol = await login("carol");
    carol.send({ type: "send", scene: "team", to: tid, text: "hi", clientId: "c2" });
    expect(await carol.take((frame) => frame.type === "sent")).toMatchObject({ code: 804, desc: "not in team" });
    carol.send({ type: "send", scene: "team", to: "42", text: "hi", clientId: "c3" });
    expect(await carol.take((frame) => frame.type === "sent")).toMatchObject({ code: 803 });
    carol.send({ type: "send", scene: "room", to: tid, text: "hi", clientId: "c4" });
    expect(await carol.take((frame) => frame.type === "sent")).toMatchObject({ code: 414 });
    carol.send({ type: "send", to: "bob", text: "hi", clientId: "c5", ext: "x".repeat(1025) });
    expect(await carol.take((frame) => frame.type === "sent")).toMatchObject({ code: 414, desc: "ext too long" });
    expect(emulator.state.messages).toHaveLength(0);
  });

  it.each<[string, Record<string, unknown>, number]>([
    ["a tid with spaces", { to: " 1500000000" }, 803],
    ["a tid that is not digits", { to: "team-1" }, 803],
    ["an ext that is not a string", { ext: { yxAitMsg: {} } }, 414],
    ["a scene that is not a string", { scene: 1 }, 414],
    ["an empty text", { text: "" }, 414],
  ])("answers a team send with %s", async (_case, override, code) => {
    await teamOf("alice", ["bob"]);
    const alice = await login("alice");
    alice.send({ type: "send", scene: "team", to: "1500000000", text: "hi", clientId: "c", ...override });
    expect(await alice.take((frame) => frame.type === "sent")).toMatchObject({ code });
    expect(emulator.state.messages).toHaveLength(0);
  });

  it("refuses a team history for a tid that is not a team", async () => {
    const alice = await login("alice");
    alice.send({ type: "history", with: "../../etc", scene: "team" });
    expect(await alice.take((frame) => frame.type === "error")).toMatchObject({ code: 804 });
  });

  it("delivers the bot's stored team reply to a member who was offline, at the next login", async () => {
    const tid = await teamOf("alice", ["bob", bot]);
    await botSends(tid);
    const bob = await login("bob");
    const offline = await bob.take((frame) => frame.type === "offline");
    expect(offline.messages).toEqual([expect.objectContaining({ from: bot, to: tid, scene: "team" })]);
  });

  it("gives a team's history to members only, and lists a user's teams", async () => {
    const tid = await teamOf("alice", ["bob", bot]);
    await botSends(tid);
    const [bob, carol] = await Promise.all([login("bob"), login("carol")]);
    bob.send({ type: "history", with: tid, scene: "team" });
    const history = await bob.take((frame) => frame.type === "history");
    expect(history).toMatchObject({ with: tid, scene: "team", messages: [expect.objectContaining({ from: bot })] });
    carol.send({ type: "history", with: tid, scene: "team" });
    expect(await carol.take((frame) => frame.type === "error")).toMatchObject({ code: 804 });
    bob.send({ type: "teams" });
    expect(await bob.take((frame) => frame.type === "teams")).toMatchObject({
      teams: [{ tid, name: "学习小组", owner: "alice", members: ["alice", "bob", bot] }],
    });
    carol.send({ type: "teams" });
    expect(await carol.take((frame) => frame.type === "teams")).toMatchObject({ teams: [] });
  });
});

describe("team 抄送", () => {
  it("copies a member's team text as convType TEAM with tMembers and ext", async () => {
    const tid = await teamOf("alice", ["bob", bot]);
    const alice = await login("alice");
    const ext = '{"yxAitMsg":{"advisor_bot":{"text":"@顾问 "}}}';
    alice.send({ type: "send", scene: "team", to: tid, text: "@顾问 利率", clientId: "c1", ext });
    await alice.take((frame) => frame.type === "sent");
    await receiver.waitFor(1);
    const [copy] = copies();
    expect(copy?.raw).toMatchObject({
      eventType: "1",
      convType: "TEAM",
      to: tid,
      fromAccount: "alice",
      msgType: "TEXT",
      body: "@顾问 利率",
      ext,
      tMembers: `[alice, bob, ${bot}]`,
    });
    expect(copy?.event).toMatchObject({ kind: "message", conversation: "team", to: tid, text: "@顾问 利率", ext });
    if (copy?.event.kind === "message") expect(copy.event.teamMembers).toEqual(["alice", "bob", bot]);
  });

  it("copies the bot's own team sends too (the bridge must ignore them)", async () => {
    const tid = await teamOf("alice", [bot]);
    await botSends(tid, { ext: '{"k":1}' });
    await receiver.waitFor(1);
    expect(copies()[0]?.raw).toMatchObject({
      convType: "TEAM",
      fromAccount: bot,
      fromClientType: "REST",
      to: tid,
      ext: '{"k":1}',
    });
  });

  it("copies nothing from teams while team 抄送 is switched off", async () => {
    emulator.settings.copyTeamMessages = false;
    const tid = await teamOf("alice", ["bob", bot]);
    const alice = await login("alice");
    alice.send({ type: "send", scene: "team", to: tid, text: "hi", clientId: "c1" });
    await alice.take((frame) => frame.type === "sent");
    await botSends(tid);
    alice.send({ type: "send", to: "bob", text: "p2p", clientId: "c2" });
    await alice.take((frame) => frame.type === "sent");
    await receiver.waitFor(1);
    await emulator.callbacks.idle();
    expect(copies().map((copy) => copy.raw.convType)).toEqual(["PERSON"]);
  });

  it("leaves tMembers out for a team of more than 200 members", async () => {
    const members = Array.from({ length: 200 }, (_, index) => `m${index}`);
    for (const accid of members) emulator.state.addAccount({ accid, token: "t", createdAt: Date.now() });
    const team = emulator.state.createTeam({ name: "big", owner: "alice", members: [...members, bot] });
    expect(team.members).toHaveLength(202);
    await botSends(team.tid);
    await receiver.waitFor(1);
    expect(copies()[0]?.raw.tMembers).toBeUndefined();
  });
});
