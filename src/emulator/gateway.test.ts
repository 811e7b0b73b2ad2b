/**
 * The client gateway over a real WebSocket: login, sending, live delivery of messages from every
 * API, NIM's online-only versus stored semantics, offline messages at login, history, heartbeat.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { messageCopyOf, type RunningNimEmulator, startNimEmulator } from "./index.ts";
import { type Frame, GatewayTestClient, signedPost } from "./test-clients.ts";

const appKey = "gateway-test-key";
const appSecret = "gateway-test-secret";
const segmentOption = JSON.stringify({
  roam: false,
  history: false,
  persistent: false,
  push: false,
  badge: false,
  route: false,
  sessionUpdate: false,
});

let emulator: RunningNimEmulator;
const clients: GatewayTestClient[] = [];

beforeAll(async () => {
  emulator = await startNimEmulator({ appKey, appSecret });
});
afterAll(async () => {
  await emulator.close();
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  emulator.state.reset();
});

function addAccount(accid: string, token = `${accid}-token`): string {
  emulator.state.addAccount({ accid, token, createdAt: Date.now() });
  return token;
}

async function connect(): Promise<GatewayTestClient> {
  const client = await GatewayTestClient.connect(emulator.gatewayUrl);
  clients.push(client);
  return client;
}

async function loggedIn(accid: string): Promise<GatewayTestClient> {
  const client = await connect();
  const answer = await client.login(accid, `${accid.toLowerCase()}-token`);
  expect(answer).toEqual({ type: "login", code: 200, accid: accid.toLowerCase() });
  await client.take((frame) => frame.type === "offline");
  return client;
}

function sendMsg(from: string, to: string, type: number, body: string, option?: string) {
  const form: Record<string, string> = { from, ope: "0", to, type: String(type), body };
  if (option !== undefined) form.option = option;
  return signedPost(`${emulator.classicApiBase}/msg/sendMsg.action`, { form }, { appKey, appSecret });
}

const isMessage = (frame: Frame) => frame.type === "message";

describe("login", () => {
  it("accepts the right token, case-insensitively on the accid, and answers with the stored accid", async () => {
    addAccount("alice");
    const client = await connect();
    expect(await client.login("ALICE", "alice-token")).toEqual({ type: "login", code: 200, accid: "alice" });
    expect(await client.take((frame) => frame.type === "offline")).toEqual({ type: "offline", messages: [] });
  });

  it("answers 302 to a wrong token and closes the socket", async () => {
    addAccount("alice");
    const client = await connect();
    expect(await client.login("alice", "wrong")).toEqual({ type: "login", code: 302, desc: "wrong account or token" });
    expect((await client.closed).code).toBe(4302);
  });

  it("answers 302 to an unknown account and closes the socket", async () => {
    const client = await connect();
    expect((await client.login("nobody", "x")).code).toBe(302);
    await client.closed;
  });

  it("refuses every other frame before login with 403", async () => {
    addAccount("bob");
    const client = await connect();
    client.send({ type: "send", to: "bob", text: "hi", clientId: "c1" });
    expect(await client.take((frame) => frame.type === "error")).toEqual({
      type: "error",
      code: 403,
      desc: "login first",
    });
    expect(emulator.state.messages).toHaveLength(0);
  });

  it("answers a ping with a pong, and malformed frames with 414", async () => {
    addAccount("alice");
    const client = await loggedIn("alice");
    client.send({ type: "ping" });
    expect(await client.take((frame) => frame.type === "pong")).toEqual({ type: "pong" });
    client.socket.send("not json");
    expect((await client.take((frame) => frame.type === "error")).code).toBe(414);
  });
});

describe("sending through the gateway", () => {
  it("records a text message, confirms it and delivers it to the online recipient", async () => {
    addAccount("alice");
    addAccount("bot");
    const alice = await loggedIn("alice");
    const bot = await loggedIn("bot");

    alice.send({ type: "send", to: "BOT", text: "你好 bot", clientId: "client-1" });
    const sent = await alice.take((frame) => frame.type === "sent");
    expect(sent).toMatchObject({ type: "sent", clientId: "client-1", code: 200 });
    expect(sent.msgid).toMatch(/^\d+$/);
    expect(typeof sent.timetag).toBe("number");

    const delivered = await bot.take(isMessage);
    expect(delivered.message).toMatchObject({
      msgid: sent.msgid,
      from: "alice",
      to: "bot",
      type: 0,
      body: JSON.stringify({ msg: "你好 bot" }),
      timetag: sent.timetag,
      msgidClient: "client-1",
      fromClientType: "WEB",
      option: { persistent: true, route: true, roam: true, history: true },
    });
    const [recorded] = emulator.state.messagesMatching({ from: "alice" });
    expect(recorded).toMatchObject({ source: "client", type: 0, msgidClient: "client-1" });
    // The sender does not get its own message back as a `message` frame.
    expect(await alice.collect(isMessage, 50)).toEqual([]);
  });

  it("delivers to every open session of the recipient", async () => {
    addAccount("alice");
    addAccount("bot");
    const alice = await loggedIn("alice");
    const firstTab = await loggedIn("bot");
    const secondTab = await loggedIn("bot");
    alice.send({ type: "send", to: "bot", text: "hi", clientId: "c" });
    const [first, second] = await Promise.all([firstTab.take(isMessage), secondTab.take(isMessage)]);
    expect(first.message).toEqual(second.message);
  });

  it("answers 404 for an unknown recipient and 414 for a text over 5000 characters", async () => {
    addAccount("alice");
    const alice = await loggedIn("alice");
    alice.send({ type: "send", to: "ghost", text: "hi", clientId: "c404" });
    expect(await alice.take((frame) => frame.type === "sent")).toMatchObject({ clientId: "c404", code: 404 });

    addAccount("bot");
    alice.send({ type: "send", to: "bot", text: "x".repeat(5001), clientId: "c414" });
    expect(await alice.take((frame) => frame.type === "sent")).toMatchObject({ clientId: "c414", code: 414 });
    alice.send({ type: "send", to: "bot", text: "x".repeat(5000), clientId: "c200" });
    expect(await alice.take((frame) => frame.type === "sent")).toMatchObject({ clientId: "c200", code: 200 });
  });
});

describe("messages from the server API", () => {
  it("delivers a custom message live with the body exactly as the sender passed it", async () => {
    addAccount("bot");
    addAccount("alice");
    const alice = await loggedIn("alice");
    const body = '{"kind":"bot_stream","seq":0,"delta":"He", "done":false}';
    const result = await sendMsg("bot", "alice", 100, body, segmentOption);
    expect(result.json?.code).toBe(200);
    const frame = await alice.take(isMessage);
    expect(frame.message).toMatchObject({ from: "bot", to: "alice", type: 100, body });
    expect((frame.message as { option: { persistent: boolean } }).option.persistent).toBe(false);
  });

  it("drops online-only segments for an absent user but delivers stored messages at the next login", async () => {
    addAccount("bot");
    addAccount("alice");
    // Alice was online once and left: nobody is connected when the reply arrives.
    const earlier = await loggedIn("alice");
    await earlier.close();

    const segment = '{"kind":"bot_stream","seq":0,"delta":"Hel","done":false}';
    const final = '{"kind":"bot_stream","seq":1,"delta":"","done":true,"status":"ok","text":"Hello"}';
    expect((await sendMsg("bot", "alice", 100, segment, segmentOption)).json?.code).toBe(200);
    expect((await sendMsg("bot", "alice", 100, final)).json?.code).toBe(200);

    const alice = await connect();
    expect((await alice.login("alice", "alice-token")).code).toBe(200);
    const offline = await alice.take((frame) => frame.type === "offline");
    const bodies = (offline.messages as Array<{ body: string; type: number }>).map((message) => message.body);
    expect(bodies).toEqual([final]);
    // Nothing else trickles in afterwards: the segment is gone for good.
    expect(await alice.collect(isMessage, 50)).toEqual([]);

    // Delivered once: the next login gets an empty offline frame.
    await alice.close();
    const again = await connect();
    await again.login("alice", "alice-token");
    expect(await again.take((frame) => frame.type === "offline")).toEqual({ type: "offline", messages: [] });
  });

  it("does not queue a stored message for a user who is online (it was delivered live)", async () => {
    addAccount("bot");
    addAccount("alice");
    const alice = await loggedIn("alice");
    await sendMsg("bot", "alice", 0, JSON.stringify({ msg: "live" }));
    await alice.take(isMessage);
    await alice.close();
    const later = await connect();
    await later.login("alice", "alice-token");
    expect(await later.take((frame) => frame.type === "offline")).toEqual({ type: "offline", messages: [] });
  });
});

describe("history", () => {
  it("returns the stored messages of the conversation, both directions, oldest first, up to limit", async () => {
    addAccount("bot");
    addAccount("alice");
    addAccount("carol");
    const alice = await loggedIn("alice");
    alice.send({ type: "send", to: "bot", text: "question", clientId: "q1" });
    await alice.take((frame) => frame.type === "sent");
    await sendMsg("bot", "alice", 100, '{"seg":1}', segmentOption);
    await sendMsg("bot", "alice", 100, '{"final":1}');
    await sendMsg("bot", "carol", 0, JSON.stringify({ msg: "someone else's" }));

    alice.send({ type: "history", with: "BOT", limit: 50 });
    const history = await alice.take((frame) => frame.type === "history");
    expect(history.with).toBe("bot");
    const messages = history.messages as Array<{ from: string; body: string }>;
    expect(messages.map((message) => [message.from, message.body])).toEqual([
      ["alice", JSON.stringify({ msg: "question" })],
      ["bot", '{"final":1}'],
    ]);

    alice.send({ type: "history", with: "bot", limit: 1 });
    const limited = await alice.take((frame) => frame.type === "history");
    expect((limited.messages as Array<{ body: string }>).map((message) => message.body)).toEqual(['{"final":1}']);
  });
});

describe("pictures and files", () => {
  const picture = {
    url: "http://127.0.0.1:1/nos/0123456789abcdef0123456789abcdef/photo.png",
    name: "photo.png",
    ext: "png",
    size: 120,
    md5: "0123456789abcdef0123456789abcdef",
    w: 16,
    h: 9,
  };

  it("sends a PICTURE as type 1 whose body, and the copy's attach, is the attach JSON", async () => {
    addAccount("alice");
    addAccount("bot");
    const alice = await loggedIn("alice");
    const bot = await loggedIn("bot");
    alice.send({
      type: "send",
      to: "bot",
      clientId: "p1",
      msgType: "PICTURE",
      attach: { ...picture, extra: "dropped" },
    });
    expect(await alice.take((frame) => frame.type === "sent")).toMatchObject({ clientId: "p1", code: 200 });
    const delivered = (await bot.take(isMessage)).message as { type: number; body: string };
    expect(delivered.type).toBe(1);
    expect(JSON.parse(delivered.body)).toEqual(picture);
    const [stored] = emulator.state.messagesMatching({ from: "alice", type: 1 });
    const copy = messageCopyOf(stored!, emulator.state);
    expect(copy.msgType).toBe("PICTURE");
    expect(copy.body).toBe("");
    expect(JSON.parse(copy.attach ?? "")).toEqual(picture);
  });

  it("sends a FILE as type 6 without w and h", async () => {
    addAccount("alice");
    addAccount("bot");
    const alice = await loggedIn("alice");
    const { w: _w, h: _h, ...file } = { ...picture, name: "notes.md", ext: "md" };
    alice.send({ type: "send", to: "bot", clientId: "f1", msgType: "FILE", attach: { ...file, w: 3, h: 4 } });
    expect(await alice.take((frame) => frame.type === "sent")).toMatchObject({ code: 200 });
    const [stored] = emulator.state.messagesMatching({ from: "alice", type: 6 });
    expect(messageCopyOf(stored!, emulator.state).msgType).toBe("FILE");
    expect(JSON.parse(stored!.body)).toEqual(file);
  });

  it.each([
    ["an unknown msgType", { msgType: "VIDEO", attach: picture }, "msgType"],
    ["no attach", { msgType: "PICTURE" }, "attach must be an object"],
    ["a javascript: URL", { msgType: "FILE", attach: { ...picture, url: "javascript:alert(1)" } }, "attach.url"],
    [
      "an over-long URL",
      { msgType: "FILE", attach: { ...picture, url: `http://a/${"x".repeat(1100)}` } },
      "attach.url",
    ],
    ["an empty name", { msgType: "FILE", attach: { ...picture, name: "" } }, "attach.name"],
    ["a strange ext", { msgType: "FILE", attach: { ...picture, ext: "m/d" } }, "attach.ext"],
    ["a size as a string", { msgType: "FILE", attach: { ...picture, size: "120" } }, "attach.size"],
    ["a negative size", { msgType: "FILE", attach: { ...picture, size: -1 } }, "attach.size"],
    ["a bad md5", { msgType: "FILE", attach: { ...picture, md5: "xyz" } }, "attach.md5"],
    ["a picture without w", { msgType: "PICTURE", attach: { ...picture, w: undefined } }, "attach.w"],
    ["a picture of height 0", { msgType: "PICTURE", attach: { ...picture, h: 0 } }, "attach.w"],
  ])("refuses %s with 414 and stores nothing", async (_case, fields, desc) => {
    addAccount("alice");
    addAccount("bot");
    const alice = await loggedIn("alice");
    alice.send({ type: "send", to: "bot", clientId: "bad", ...fields });
    const answer = await alice.take((frame) => frame.type === "sent");
    expect(answer).toMatchObject({ clientId: "bad", code: 414 });
    expect(String(answer.desc)).toContain(desc);
    expect(emulator.state.messagesMatching({ from: "alice" })).toHaveLength(0);
  });
});
