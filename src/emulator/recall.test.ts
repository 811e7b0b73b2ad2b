/**
 * Recalls in the emulator: a user's recall through the gateway and the server's msg/recall.action,
 * NIM's recall copies (eventType 7 for P2P, 8 for teams) with the §10.1 fields, the `recall` frame
 * to the conversation's clients, and the recalled message gone from history and offline queues.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseCallbackEvent } from "../callback/parse.ts";
import { verifyCallback } from "../callback/verify.ts";
import { type EmulatorSettings, type RunningNimEmulator, startNimEmulator } from "./index.ts";
import { recallCopyOf } from "./recall.ts";
import { DEFAULT_MESSAGE_OPTION } from "./state.ts";
import { CallbackReceiver, GatewayTestClient, signedPost } from "./test-clients.ts";

const appKey = "recall-test-key";
const appSecret = "recall-test-secret";
const bot = "advisor_bot";

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
  for (const accid of ["alice", "bob", bot]) {
    emulator.state.addAccount({ accid, token: `${accid}-token`, createdAt: Date.now() });
  }
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await emulator.callbacks.idle();
  emulator.state.reset();
  Object.assign(emulator.settings, structuredClone(defaults));
  receiver.reset();
});

async function login(accid: string) {
  const client = await GatewayTestClient.loggedIn(emulator.gatewayUrl, accid, `${accid}-token`);
  clients.push(client);
  return client;
}

async function send(client: GatewayTestClient, frame: Record<string, unknown>): Promise<string> {
  client.send({ type: "send", clientId: `c-${Math.random()}`, ...frame });
  const sent = await client.take((candidate) => candidate.type === "sent");
  expect(sent.code).toBe(200);
  return sent.msgid as string;
}

async function recall(client: GatewayTestClient, msgid: string) {
  client.send({ type: "recall", msgid });
  return client.take((frame) => frame.type === "recalled");
}

/** Recall copies received so far (message copies left out), verified. */
function recallCopies(): Array<Record<string, string>> {
  return receiver.received
    .filter((callback) => {
      const verdict = verifyCallback({
        headers: callback.headers,
        rawBody: callback.rawBody,
        appSecret,
        now: Date.now(),
        windowMs: 5 * 60_000,
      });
      expect(verdict.ok).toBe(true);
      return ["7", "8"].includes((JSON.parse(callback.rawBody.toString()) as { eventType: string }).eventType);
    })
    .map((callback) => JSON.parse(callback.rawBody.toString()) as Record<string, string>);
}

async function waitForRecallCopies(count: number) {
  await emulator.state.waitForCallbacks({ kind: "recall-copy", delivered: true, count });
  return recallCopies();
}

describe("a user recalls a P2P message", () => {
  it("copies eventType 7 with NIM's fields and tells both sides", async () => {
    const [alice, bobClient] = await Promise.all([login("alice"), login(bot)]);
    const msgid = await send(alice, { to: bot, text: "算了，不问了" });
    const original = emulator.state.messages[0]!;
    expect(await recall(alice, msgid)).toEqual({ type: "recalled", msgid, code: 200 });

    const [copy] = await waitForRecallCopies(1);
    expect(copy).toEqual({
      eventType: "7",
      from: "alice",
      to: bot,
      msgId: msgid,
      clientId: original.msgidClient,
      deleteTime: expect.stringMatching(/^\d{13}$/),
      sendTime: String(original.timetag),
      fromClientType: "WEB",
      selfMsg: "true",
      attach: "",
    });
    expect(Number(copy!.deleteTime)).toBeGreaterThanOrEqual(original.timetag);
    expect(parseCallbackEvent(Buffer.from(JSON.stringify(copy)))).toMatchObject({
      kind: "recall",
      conversation: "person",
    });

    for (const client of [alice, bobClient]) {
      const frame = await client.take((candidate) => candidate.type === "recall");
      expect(frame.recall).toMatchObject({ msgid, from: "alice", to: bot, scene: "p2p" });
    }
    alice.send({ type: "history", with: bot });
    expect(await alice.take((frame) => frame.type === "history")).toMatchObject({ messages: [] });
    expect(emulator.state.recalls).toEqual([expect.objectContaining({ by: "alice", source: "client" })]);
  });

  it("takes a recalled message out of an offline recipient's queue", async () => {
    const alice = await login("alice");
    const kept = await send(alice, { to: "bob", text: "keep" });
    const gone = await send(alice, { to: "bob", text: "gone" });
    await recall(alice, gone);
    const bob = await login("bob");
    const offline = await bob.take((frame) => frame.type === "offline");
    expect((offline.messages as Array<{ msgid: string }>).map((message) => message.msgid)).toEqual([kept]);
  });

  it.each<[string, (msgid: string) => string, number]>([
    ["an unknown message", () => "999999", 404],
    ["a malformed msgid", () => "abc", 414],
  ])("answers %s with %i", async (_case, target, code) => {
    const alice = await login("alice");
    const msgid = await send(alice, { to: "bob", text: "x" });
    expect(await recall(alice, target(msgid))).toMatchObject({ code });
  });

  it("refuses someone else's message (403), a second recall (414) and a late one (508)", async () => {
    const [alice, bob] = await Promise.all([login("alice"), login("bob")]);
    const msgid = await send(alice, { to: "bob", text: "x" });
    expect(await recall(bob, msgid)).toMatchObject({ code: 403 });
    expect(await recall(alice, msgid)).toMatchObject({ code: 200 });
    expect(await recall(alice, msgid)).toMatchObject({ code: 414 });
    emulator.settings.recallWindowMs = -1;
    const late = await send(alice, { to: "bob", text: "y" });
    expect(await recall(alice, late)).toMatchObject({ code: 508, desc: "recall time expired" });
    expect(emulator.state.recalls).toHaveLength(1);
  });
});

describe("a user recalls a team message", () => {
  it("copies eventType 8 with the tid in `to` and tells every member", async () => {
    const team = emulator.state.createTeam({ name: "room", owner: "alice", members: ["bob", bot] });
    const [alice, bob] = await Promise.all([login("alice"), login("bob")]);
    const msgid = await send(alice, { scene: "team", to: team.tid, text: "@advisor_bot 问题" });
    await recall(alice, msgid);
    const [copy] = await waitForRecallCopies(1);
    expect(copy).toMatchObject({ eventType: "8", from: "alice", to: team.tid, msgId: msgid, selfMsg: "true" });
    expect(parseCallbackEvent(Buffer.from(JSON.stringify(copy)))).toMatchObject({
      kind: "recall",
      conversation: "team",
    });
    expect((await bob.take((frame) => frame.type === "recall")).recall).toMatchObject({
      msgid,
      scene: "team",
      to: team.tid,
    });
    bob.send({ type: "history", with: team.tid, scene: "team" });
    expect(await bob.take((frame) => frame.type === "history")).toMatchObject({ messages: [] });
  });

  it("sends no team recall copy while team 抄送 is off", async () => {
    emulator.settings.copyTeamMessages = false;
    const team = emulator.state.createTeam({ name: "room", owner: "alice", members: [bot] });
    const alice = await login("alice");
    const msgid = await send(alice, { scene: "team", to: team.tid, text: "x" });
    expect(await recall(alice, msgid)).toMatchObject({ code: 200 });
    await emulator.callbacks.idle();
    expect(recallCopies()).toEqual([]);
  });
});

describe("msg/recall.action", () => {
  function serverRecall(form: Record<string, string>) {
    return signedPost(`${emulator.classicApiBase}/msg/recall.action`, { form }, { appKey, appSecret });
  }

  it("recalls a server-sent message and copies it as REST with the postscript in attach", async () => {
    const sent = await signedPost(
      `${emulator.classicApiBase}/msg/sendMsg.action`,
      { form: { from: bot, ope: "0", to: "alice", type: "0", body: '{"msg":"oops"}' } },
      { appKey, appSecret },
    );
    expect(sent.json?.code).toBe(200);
    const message = emulator.state.messages[0]!;
    const base = { deleteMsgid: message.msgid, timetag: String(message.timetag), type: "7", from: bot, to: "alice" };
    expect((await serverRecall({ ...base, timetag: "1" })).json?.code).toBe(414);
    expect((await serverRecall({ ...base, type: "8" })).json?.code).toBe(414);
    expect((await serverRecall({ ...base, to: "bob" })).json?.code).toBe(414);
    expect((await serverRecall({ ...base, from: "alice" })).json?.code).toBe(403);
    expect((await serverRecall({ ...base, deleteMsgid: "x" })).json?.code).toBe(414);
    emulator.settings.recallWindowMs = -1;
    expect((await serverRecall(base)).json?.code).toBe(508);
    expect((await serverRecall({ ...base, msg: "撤回", ignoreTime: "1" })).json).toEqual({ code: 200 });
    await receiver.waitFor(1);
    await emulator.callbacks.idle();
    const recalls = recallCopies();
    expect(recalls).toEqual([
      expect.objectContaining({ eventType: "7", from: bot, fromClientType: "REST", attach: "撤回" }),
    ]);
  });
});

describe("recallCopyOf", () => {
  it("writes every value as a string", () => {
    const copy = recallCopyOf({
      message: {
        msgid: "9007199254740993",
        msgidClient: "cid",
        source: "client",
        fromClientType: "WEB",
        fromDeviceId: "d",
        from: "x",
        to: "y",
        ope: 0,
        type: 0,
        body: "{}",
        option: { ...DEFAULT_MESSAGE_OPTION },
        timetag: 5,
        fields: {},
      },
      by: "x",
      source: "client",
      postscript: "",
      deleteTime: 6,
    });
    for (const value of Object.values(copy)) expect(typeof value).toBe("string");
    expect(copy.msgId).toBe("9007199254740993");
  });
});
