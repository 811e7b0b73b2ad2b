/**
 * msg/recall.action: the bridge's NIM client (the exact form it sends) against the emulator's
 * classic API (NIM's checks), with the emulator's clock injected for the recall time limit.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createNimClient } from "../nim/client.ts";
import { NimError } from "../nim/errors.ts";
import { type RunningNimEmulator, startNimEmulator } from "./index.ts";
import { CallbackReceiver, signedPost } from "./test-clients.ts";

const APP_KEY = "recall-key";
const APP_SECRET = "recall-secret";

describe("msg/recall.action", () => {
  let emulator: RunningNimEmulator;
  let clock: number;
  const forms: URLSearchParams[] = [];

  function client() {
    return createNimClient({
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      apiBase: emulator.classicApiBase,
      timeoutMs: 2_000,
      retry: { maxAttempts: 1, deadlineMs: 5_000 },
      now: () => clock,
      fetch: async (url, init) => {
        forms.push(new URLSearchParams(String(init?.body)));
        return fetch(url, init);
      },
    });
  }

  beforeEach(async () => {
    clock = 1_800_000_000_000;
    forms.length = 0;
    emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET, now: () => clock });
    for (const accid of ["u_alice", "u_bob"]) emulator.state.addAccount({ accid, token: "t", createdAt: clock });
  });

  afterEach(async () => {
    await emulator.close();
  });

  async function sent(from = "u_alice", to = "u_bob") {
    return client().sendMessage({ from, to, type: 0, body: { msg: "hello" } });
  }

  it("sends the official SDKs' parameters and withdraws the message", async () => {
    const { msgid, timetag } = await sent();
    await client().recallMessage({
      msgidServer: msgid,
      timetag,
      conversation: "person",
      from: "u_alice",
      to: "u_bob",
      description: "withdrawn",
      ignoreTimeLimit: true,
    });
    expect(Object.fromEntries(forms.at(-1)!)).toEqual({
      deleteMsgid: msgid,
      timetag: String(timetag),
      type: "7",
      from: "u_alice",
      to: "u_bob",
      msg: "withdrawn",
      ignoreTime: "1",
    });
    expect(emulator.state.findMessage(msgid)!.recalled).toEqual({ at: clock, description: "withdrawn" });
  });

  it("copies the recall to the callback URL as eventType 7, signed like a message copy", async () => {
    const receiver = await CallbackReceiver.start();
    try {
      const { msgid, timetag } = await sent();
      emulator.settings.callbackUrl = receiver.url;
      await client().recallMessage({
        msgidServer: msgid,
        timetag,
        conversation: "person",
        from: "u_alice",
        to: "u_bob",
        attach: '{"why":"moderation"}',
      });
      const [copy] = await receiver.waitFor(1);
      expect(JSON.parse(copy!.rawBody.toString())).toEqual({
        eventType: "7",
        from: "u_alice",
        to: "u_bob",
        msgId: msgid,
        clientId: emulator.state.findMessage(msgid)!.msgidClient,
        deleteTime: String(clock),
        sendTime: String(timetag),
        fromClientType: "REST",
        selfMsg: "true",
        attach: '{"why":"moderation"}',
      });
      expect(copy!.headers.checksum).toMatch(/^[0-9a-f]{40}$/);
    } finally {
      await receiver.close();
    }
  });

  it("writes type 8 for a team (the emulator has no teams, so NIM's answer is 'not found')", async () => {
    const recall = client().recallMessage({
      msgidServer: "123",
      timetag: clock,
      conversation: "team",
      from: "u_alice",
      to: "4455",
    });
    await expect(recall).rejects.toMatchObject({ kind: "api", code: 414, desc: "msg not exist" });
    expect(forms.at(-1)!.get("type")).toBe("8");
  });

  it("refuses a wrong timetag, a second recall and, without ignoreTime, an old message", async () => {
    const { msgid, timetag } = await sent();
    const base = { msgidServer: msgid, timetag, conversation: "person" as const, from: "u_alice", to: "u_bob" };
    await expect(client().recallMessage({ ...base, timetag: timetag + 1 })).rejects.toMatchObject({ code: 414 });
    await expect(client().recallMessage({ ...base, from: "u_bob", to: "u_alice" })).rejects.toMatchObject({
      desc: "msg not exist",
    });

    clock += emulator.settings.recallTimeLimitMs + 1;
    await expect(client().recallMessage(base)).rejects.toMatchObject({ desc: "msg recall time expired" });
    await client().recallMessage({ ...base, ignoreTimeLimit: true });
    await expect(client().recallMessage({ ...base, ignoreTimeLimit: true })).rejects.toMatchObject({
      desc: "msg already recalled",
    });
  });

  it("checks parameters locally before any request, and NIM checks them too", async () => {
    const base = { msgidServer: "1", timetag: clock, conversation: "person" as const, from: "a", to: "b" };
    for (const bad of [{ msgidServer: "12ab" }, { timetag: 0 }, { description: "x".repeat(129) }]) {
      const error = await client()
        .recallMessage({ ...base, ...bad })
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(NimError);
      expect(error).toMatchObject({ kind: "invalid-request" });
    }
    expect(forms).toHaveLength(0);
    clock = Date.now(); // signedPost signs with the real clock
    const answer = await signedPost(
      `${emulator.classicApiBase}/msg/recall.action`,
      { form: { deleteMsgid: "1", timetag: String(clock), type: "9", from: "a", to: "b" } },
      { appKey: APP_KEY, appSecret: APP_SECRET },
    );
    expect(answer.json).toEqual({ desc: "type illegal", code: 414 });
  });
});
