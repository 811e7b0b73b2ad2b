/**
 * Message-copy callbacks (消息抄送) from the emulator to a real local HTTP receiver, checked with the
 * bridge's own verifier and parser: what the emulator sends must pass exactly the checks real NIM
 * traffic passes.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { isUserToBotText, parseCallbackEvent } from "../callback/parse.ts";
import { verifyCallback } from "../callback/verify.ts";
import { type EmulatorSettings, type RunningNimEmulator, startNimEmulator } from "./index.ts";
import { CallbackReceiver, GatewayTestClient, type ReceivedCallback, signedPost } from "./test-clients.ts";

const appKey = "callback-test-key";
const appSecret = "callback-test-secret";
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
  emulator.state.addAccount({ accid: "alice", token: "alice-token", name: "Alice", createdAt: Date.now() });
  emulator.state.addAccount({ accid: bot, token: "bot-token", createdAt: Date.now() });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await emulator.callbacks.idle();
  emulator.state.reset();
  Object.assign(emulator.settings, structuredClone(defaults));
  receiver.reset();
});

/** Alice writes to the bot through the gateway, like the web page does; resolves with the `sent` frame. */
async function aliceSends(text: string, clientId = "client-id-1") {
  const alice = await GatewayTestClient.loggedIn(emulator.gatewayUrl, "alice", "alice-token");
  clients.push(alice);
  alice.send({ type: "send", to: bot, text, clientId });
  return alice.take((frame) => frame.type === "sent");
}

function verify(callback: ReceivedCallback) {
  return verifyCallback({
    headers: callback.headers,
    rawBody: callback.rawBody,
    appSecret,
    now: Date.now(),
    windowMs: 5 * 60_000,
  });
}

describe("message copies", () => {
  it("copies a user's gateway text as NIM does: signed, all values strings, parsed into a user→bot text", async () => {
    const sent = await aliceSends("你好，机器人");
    const [callback] = await receiver.waitFor(1);

    expect(callback!.headers["content-type"]).toBe("application/json");
    expect(callback!.headers["appkey"]).toBe(appKey);
    expect(callback!.headers["curtime"]).toMatch(/^\d{13}$/); // milliseconds, unlike the API's seconds
    expect(verify(callback!)).toMatchObject({ ok: true });

    const raw = JSON.parse(callback!.rawBody.toString("utf8")) as Record<string, unknown>;
    expect(Object.values(raw).every((value) => typeof value === "string")).toBe(true);
    expect(raw).toMatchObject({
      eventType: "1",
      convType: "PERSON",
      to: bot,
      fromAccount: "alice",
      fromClientType: "WEB",
      fromNick: "Alice",
      msgType: "TEXT",
      body: "你好，机器人",
      msgidClient: "client-id-1",
      msgidServer: sent.msgid,
      msgTimestamp: String(sent.timetag),
      resendFlag: "0",
    });

    const event = parseCallbackEvent(callback!.rawBody);
    expect(isUserToBotText(event, bot)).toBe(true);
    expect(event).toMatchObject({ kind: "message", text: "你好，机器人", msgidServer: sent.msgid });

    const [record] = await emulator.state.waitForCallbacks({ count: 1 });
    expect(record).toMatchObject({
      kind: "message-copy",
      url: receiver.url,
      msgidServer: sent.msgid,
      status: 200,
      delivered: true,
      attempt: 1,
      duplicate: false,
    });
    expect(record!.body).toBe(callback!.rawBody.toString("utf8"));
    expect(record!.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("copies the bot's own server-API custom messages (CUSTOM, payload in attach), which the bridge must ignore", async () => {
    const body = '{"kind":"bot_stream","seq":1,"done":true,"text":"hi"}';
    const result = await signedPost(
      `${emulator.classicApiBase}/msg/sendMsg.action`,
      { form: { from: bot, ope: "0", to: "alice", type: "100", body } },
      { appKey, appSecret },
    );
    expect(result.json?.code).toBe(200);
    const [callback] = await receiver.waitFor(1);
    expect(verify(callback!)).toMatchObject({ ok: true });
    expect(JSON.parse(callback!.rawBody.toString("utf8"))).toMatchObject({
      fromAccount: bot,
      to: "alice",
      msgType: "CUSTOM",
      body: "",
      attach: body,
      fromClientType: "REST",
      fromDeviceId: "",
    });
    expect(isUserToBotText(parseCallbackEvent(callback!.rawBody), bot)).toBe(false);
  });

  it("does not copy server messages with option.route false, nor any when copyServerMessages is off", async () => {
    const send = (option?: string) =>
      signedPost(
        `${emulator.classicApiBase}/msg/sendMsg.action`,
        { form: { from: bot, ope: "0", to: "alice", type: "100", body: "{}", ...(option ? { option } : {}) } },
        { appKey, appSecret },
      );
    await send(JSON.stringify({ route: false, persistent: false }));
    emulator.settings.copyServerMessages = false;
    await send();
    await emulator.callbacks.idle();
    expect(receiver.received).toHaveLength(0);
    expect(emulator.state.messages).toHaveLength(2);

    // Client messages are copied regardless of copyServerMessages.
    await aliceSends("still copied");
    await receiver.waitFor(1);
  });

  it("sends nothing while no callback URL is configured", async () => {
    emulator.settings.callbackUrl = undefined;
    await aliceSends("nobody listens");
    await emulator.callbacks.idle();
    expect(receiver.received).toHaveLength(0);
    expect(emulator.state.callbacks).toHaveLength(0);
  });
});

describe("delivery, retries and faults", () => {
  it("retries a copy answered 500, with the same body, until one attempt gets 200", async () => {
    receiver.respond = (index) => ({ status: index < 2 ? 500 : 200 });
    await aliceSends("retry me");
    const received = await receiver.waitFor(3);
    await emulator.callbacks.idle();
    expect(new Set(received.map((callback) => callback.rawBody.toString("utf8"))).size).toBe(1);
    for (const callback of received) expect(verify(callback)).toMatchObject({ ok: true });
    expect(emulator.state.callbacks.map((record) => [record.attempt, record.status, record.delivered])).toEqual([
      [1, 500, false],
      [2, 500, false],
      [3, 200, true],
    ]);
  });

  it("gives up after callbackRetries failed retries", async () => {
    emulator.settings.callbackRetries = 1;
    receiver.respond = () => ({ status: 503 });
    await aliceSends("lost");
    await receiver.waitFor(2);
    await emulator.callbacks.idle();
    expect(receiver.received).toHaveLength(2);
    expect(emulator.state.callbacks.every((record) => !record.delivered)).toBe(true);
  });

  it("counts 500 as delivered when configured like NIM's English doc reads (200 or 500)", async () => {
    emulator.settings.callbackDeliveredStatuses = [200, 500];
    receiver.respond = () => ({ status: 500 });
    await aliceSends("500 is fine");
    await receiver.waitFor(1);
    await emulator.callbacks.idle();
    expect(receiver.received).toHaveLength(1);
    expect(emulator.state.callbacks[0]).toMatchObject({ status: 500, delivered: true });
  });

  it("treats an answer slower than callbackTimeoutMs as a failure and retries", async () => {
    emulator.settings.callbackTimeoutMs = 100;
    receiver.respond = (index) => ({ status: 200, delayMs: index === 0 ? 400 : 0 });
    await aliceSends("slow receiver");
    const records = await emulator.state.waitForCallbacks({ count: 2 });
    expect(records[0]).toMatchObject({ attempt: 1, delivered: false, error: "no answer within 100 ms" });
    expect(records[1]).toMatchObject({ attempt: 2, delivered: true, status: 200 });
  });

  it("delivers the same copy twice under the duplicate fault (for de-duplication tests)", async () => {
    emulator.settings.callbackFaults = { duplicateProbability: 1 };
    const sent = await aliceSends("say it twice");
    const received = await receiver.waitFor(2);
    await emulator.callbacks.idle();
    expect(received).toHaveLength(2);
    const [first, second] = received.map((callback) => parseCallbackEvent(callback.rawBody));
    expect(first).toMatchObject({ kind: "message", msgidServer: sent.msgid });
    expect(second).toEqual(first);
    for (const callback of received) expect(verify(callback)).toMatchObject({ ok: true });
    expect(emulator.state.callbacks.map((record) => record.duplicate)).toEqual([false, true]);
  });

  it("holds a copy back by callbackFaults.delayMs", async () => {
    emulator.settings.callbackFaults = { delayMs: 150 };
    const before = Date.now();
    await aliceSends("late");
    const [callback] = await receiver.waitFor(1);
    expect(callback!.receivedAt - before).toBeGreaterThanOrEqual(140);
  });

  it("signs with callbackAppSecret, so a test can make the bridge see a forged copy", async () => {
    emulator.settings.callbackAppSecret = "not-the-secret";
    await aliceSends("forged");
    const [callback] = await receiver.waitFor(1);
    expect(verify(callback!)).toEqual({ ok: false, reason: "checksum-mismatch" });
  });
});

describe("validateCallbackUrl", () => {
  it("POSTs the signed {} NIM's console sends and reports whether 200 came back", async () => {
    const record = await emulator.validateCallbackUrl();
    expect(record).toMatchObject({ kind: "validation", body: "{}", status: 200, delivered: true });
    const [callback] = await receiver.waitFor(1);
    expect(callback!.rawBody.toString("utf8")).toBe("{}");
    expect(callback!.headers["md5"]).toBe("99914b932bd37a50b983c5e7c90ae93b");
    expect(verify(callback!)).toMatchObject({ ok: true });
    expect(parseCallbackEvent(callback!.rawBody)).toEqual({ kind: "validation" });

    receiver.respond = () => ({ status: 401 });
    expect(await emulator.validateCallbackUrl(receiver.url)).toMatchObject({ status: 401, delivered: false });
  });

  it("reports a network failure instead of throwing", async () => {
    const record = await emulator.validateCallbackUrl("http://127.0.0.1:1/im/callback");
    expect(record.delivered).toBe(false);
    expect(record.error).toBeTruthy();
  });
});
