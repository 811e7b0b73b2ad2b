import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { apiCheckSum, createNonce } from "../nim/checksum.ts";
import { createNimEmulatorApp, createSeededRandom, type RunningNimEmulator, startNimEmulator } from "./index.ts";

const appKey = "emulator-test-key";
const appSecret = "emulator-test-secret";

interface SignedPostOptions {
  appKey?: string;
  appSecret?: string;
  curTime?: string;
  nonce?: string;
  checkSum?: string;
  contentType?: string;
  body?: string;
  signal?: AbortSignal;
}

/** A hand-signed request, so the emulator is tested independently of the bridge's client. */
async function signedPost(
  emulator: RunningNimEmulator,
  path: string,
  fields: Record<string, string>,
  options: SignedPostOptions = {},
) {
  const nonce = options.nonce ?? createNonce();
  const curTime = options.curTime ?? String(Math.floor(Date.now() / 1000));
  const response = await fetch(`${emulator.classicApiBase}/${path}`, {
    method: "POST",
    headers: {
      "Content-Type": options.contentType ?? "application/x-www-form-urlencoded;charset=utf-8",
      AppKey: options.appKey ?? appKey,
      Nonce: nonce,
      CurTime: curTime,
      CheckSum: options.checkSum ?? apiCheckSum(options.appSecret ?? appSecret, nonce, curTime),
    },
    body: options.body ?? new URLSearchParams(fields).toString(),
    signal: options.signal,
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json };
}

let emulator: RunningNimEmulator;

beforeAll(async () => {
  emulator = await startNimEmulator({ appKey, appSecret });
});
afterAll(async () => {
  await emulator.close();
});
afterEach(() => {
  emulator.state.reset();
  emulator.settings.randomFaults = undefined;
  emulator.settings.frequencyLimits = { userPerSecond: 10_000, messagePerSecond: 10_000 };
  emulator.settings.curTimeWindow = { pastSeconds: 300, futureSeconds: 300 };
  emulator.settings.rejectReplayedNonce = false;
});

async function createAccount(accid: string, extra: Record<string, string> = {}) {
  const result = await signedPost(emulator, "user/create.action", { accid, ...extra });
  expect(result.json?.code).toBe(200);
  return result.json?.info as { accid: string; token: string; name?: string };
}

describe("authentication", () => {
  it("accepts a correctly signed request", async () => {
    const result = await signedPost(emulator, "user/create.action", { accid: "signed_ok" });
    expect(result.status).toBe(200);
    expect(result.json?.code).toBe(200);
  });

  it("rejects an unknown AppKey with 414 appkey", async () => {
    const result = await signedPost(emulator, "user/create.action", { accid: "a1" }, { appKey: "other" });
    expect(result.status).toBe(200);
    expect(result.json).toEqual({ code: 414, desc: "appkey" });
    expect(emulator.state.accounts.size).toBe(0);
  });

  it("rejects a CheckSum made with the wrong secret with 414 checksum", async () => {
    const result = await signedPost(emulator, "user/create.action", { accid: "a1" }, { appSecret: "wrong" });
    expect(result.json).toEqual({ code: 414, desc: "checksum" });
  });

  it("rejects an upper-case CheckSum (NIM's is lowercase hex)", async () => {
    const nonce = createNonce();
    const curTime = String(Math.floor(Date.now() / 1000));
    const checkSum = apiCheckSum(appSecret, nonce, curTime).toUpperCase();
    const result = await signedPost(emulator, "user/create.action", { accid: "a1" }, { nonce, curTime, checkSum });
    expect(result.json).toEqual({ code: 414, desc: "checksum" });
  });

  it("rejects a missing or over-long Nonce", async () => {
    const result = await signedPost(emulator, "user/create.action", { accid: "a1" }, { nonce: "n".repeat(129) });
    expect(result.json).toEqual({ code: 414, desc: "checksum" });
  });

  it("rejects a CurTime older than 5 minutes", async () => {
    const stale = String(Math.floor(Date.now() / 1000) - 301);
    const result = await signedPost(emulator, "user/create.action", { accid: "a1" }, { curTime: stale });
    expect(result.json).toEqual({ code: 414, desc: "CurTime is expired" });
  });

  it("accepts a CurTime 4 minutes old", async () => {
    const old = String(Math.floor(Date.now() / 1000) - 240);
    const result = await signedPost(emulator, "user/create.action", { accid: "a1" }, { curTime: old });
    expect(result.json?.code).toBe(200);
  });

  it("rejects CurTime in milliseconds (a common client bug)", async () => {
    const result = await signedPost(emulator, "user/create.action", { accid: "a1" }, { curTime: String(Date.now()) });
    expect(result.json).toEqual({ code: 414, desc: "CurTime is expired" });
  });

  it("makes the future window configurable (unconfirmed at NIM)", async () => {
    const ahead = String(Math.floor(Date.now() / 1000) + 120);
    expect((await signedPost(emulator, "user/create.action", { accid: "a1" }, { curTime: ahead })).json?.code).toBe(
      200,
    );
    emulator.settings.curTimeWindow.futureSeconds = 10;
    const result = await signedPost(emulator, "user/create.action", { accid: "a2" }, { curTime: ahead });
    expect(result.json).toEqual({ code: 414, desc: "CurTime is expired" });
  });

  it("answers 431 to a replayed Nonce only when asked to", async () => {
    const nonce = createNonce();
    const curTime = String(Math.floor(Date.now() / 1000));
    expect((await signedPost(emulator, "user/create.action", { accid: "r1" }, { nonce, curTime })).json?.code).toBe(
      200,
    );
    expect((await signedPost(emulator, "user/create.action", { accid: "r2" }, { nonce, curTime })).json?.code).toBe(
      200,
    );
    emulator.settings.rejectReplayedNonce = true;
    expect((await signedPost(emulator, "user/create.action", { accid: "r3" }, { nonce, curTime })).json?.code).toBe(
      200,
    );
    const replay = await signedPost(emulator, "user/create.action", { accid: "r4" }, { nonce, curTime });
    expect(replay.json).toEqual({ code: 431, desc: "HTTP request repeated" });
  });

  it("answers a non-form body with NIM's 414, not Fastify's error shape", async () => {
    const result = await signedPost(
      emulator,
      "user/create.action",
      {},
      { contentType: "application/json", body: JSON.stringify({ accid: "json_user" }) },
    );
    expect(result.status).toBe(200);
    expect(result.json?.code).toBe(414);
    expect(emulator.state.accounts.size).toBe(0);
  });
});

describe("user/create.action", () => {
  it("stores the accid lower-cased and returns it with a generated 32-hex token", async () => {
    const info = await createAccount("Alice_01", { name: "Alice" });
    expect(info).toEqual({ accid: "alice_01", token: expect.stringMatching(/^[0-9a-f]{32}$/), name: "Alice" });
    expect(emulator.state.findAccount("ALICE_01")?.token).toBe(info.token);
  });

  it("keeps a token the caller chose", async () => {
    const info = await createAccount("bob", { token: "chosen-token" });
    expect(info.token).toBe("chosen-token");
  });

  it("answers a duplicate (in any case) with 414 already register", async () => {
    await createAccount("carol");
    const again = await signedPost(emulator, "user/create.action", { accid: "CAROL" });
    expect(again.json).toEqual({ code: 414, desc: "already register" });
    expect(again.text).toContain('"desc":"already register"');
  });

  it.each([
    ["a space", "bad accid"],
    ["a symbol", "bad!accid"],
    ["Chinese", "用户"],
    ["33 characters", "a".repeat(33)],
    ["nothing", ""],
  ])("rejects an accid with %s", async (_label, accid) => {
    const result = await signedPost(emulator, "user/create.action", { accid });
    expect(result.json?.code).toBe(414);
    expect(emulator.state.accounts.size).toBe(0);
  });

  it("accepts 32 characters of every allowed kind", async () => {
    const info = await createAccount("Az09_@.-".repeat(4));
    expect(info.accid).toBe("az09_@.-".repeat(4));
  });

  it("enforces the name, token and gender limits", async () => {
    expect((await signedPost(emulator, "user/create.action", { accid: "n1", name: "x".repeat(65) })).json?.code).toBe(
      414,
    );
    expect((await signedPost(emulator, "user/create.action", { accid: "n2", token: "t".repeat(129) })).json?.code).toBe(
      414,
    );
    expect((await signedPost(emulator, "user/create.action", { accid: "n3", gender: "3" })).json?.code).toBe(414);
    expect((await signedPost(emulator, "user/create.action", { accid: "n4", token: "t".repeat(128) })).json?.code).toBe(
      200,
    );
  });
});

describe("user/update.action and user/refreshToken.action", () => {
  it("sets a new token", async () => {
    await createAccount("dave");
    const result = await signedPost(emulator, "user/update.action", { accid: "DAVE", token: "new-token" });
    expect(result.json).toEqual({ code: 200 });
    expect(emulator.state.findAccount("dave")?.token).toBe("new-token");
  });

  it("answers 414 accid not exist for an unknown account", async () => {
    const update = await signedPost(emulator, "user/update.action", { accid: "nobody", token: "x" });
    expect(update.json).toEqual({ code: 414, desc: "accid not exist" });
    const refresh = await signedPost(emulator, "user/refreshToken.action", { accid: "nobody" });
    expect(refresh.json).toEqual({ code: 414, desc: "accid not exist" });
  });

  it("refreshToken generates a new token and answers info {accid, token}", async () => {
    const info = await createAccount("erin");
    const result = await signedPost(emulator, "user/refreshToken.action", { accid: "Erin" });
    const refreshed = result.json?.info as { accid: string; token: string };
    expect(Object.keys(refreshed).sort()).toEqual(["accid", "token"]);
    expect(refreshed.accid).toBe("erin");
    expect(refreshed.token).toMatch(/^[0-9a-f]{32}$/);
    expect(refreshed.token).not.toBe(info.token);
  });
});

describe("user/getUinfos.action", () => {
  it("returns known accounts without their tokens and omits unknown ones", async () => {
    await createAccount("frank", { name: "Frank", ex: '{"vip":true}' });
    const result = await signedPost(emulator, "user/getUinfos.action", {
      accids: JSON.stringify(["FRANK", "ghost"]),
    });
    expect(result.json).toEqual({ code: 200, uinfos: [{ accid: "frank", name: "Frank", ex: '{"vip":true}' }] });
  });

  it("rejects a malformed list and more than 200 accids", async () => {
    expect((await signedPost(emulator, "user/getUinfos.action", { accids: "frank" })).json?.code).toBe(414);
    expect((await signedPost(emulator, "user/getUinfos.action", { accids: "[1,2]" })).json?.code).toBe(414);
    const tooMany = JSON.stringify(Array.from({ length: 201 }, (_, index) => `u${index}`));
    expect((await signedPost(emulator, "user/getUinfos.action", { accids: tooMany })).json?.code).toBe(414);
  });
});

describe("msg/sendMsg.action", () => {
  const send = (fields: Record<string, string>) =>
    signedPost(emulator, "msg/sendMsg.action", { from: "bot", ope: "0", to: "user1", type: "100", ...fields });

  it("records the message with NIM's option defaults and answers a numeric msgid", async () => {
    await createAccount("bot");
    await createAccount("user1");
    const result = await send({
      body: '{"kind":"bot_stream","seq":0}',
      option: '{"roam":false,"history":false}',
      pushContent: "camelCase push",
      ext: "extension",
    });
    expect(result.text).toMatch(/"msgid":\d+,/);
    expect(result.json).toEqual({
      code: 200,
      data: { msgid: expect.any(Number), timetag: expect.any(Number), antispam: false },
    });
    const [message] = emulator.state.messages;
    expect(message).toMatchObject({
      from: "bot",
      to: "user1",
      ope: 0,
      type: 100,
      body: '{"kind":"bot_stream","seq":0}',
      pushcontent: "camelCase push",
      ext: "extension",
      option: {
        roam: false,
        history: false,
        sendersync: true,
        push: true,
        route: true,
        badge: true,
        needPushNick: true,
        persistent: true,
        sessionUpdate: true,
      },
    });
    expect(result.text).toContain(`"msgid":${message?.msgid}`);
  });

  it("hands out msgids beyond 2^53 without losing digits", async () => {
    const bigEmulator = await startNimEmulator({ appKey, appSecret, firstMessageId: "9007199254740993" });
    try {
      for (const accid of ["bot", "user1"]) {
        await signedPost(bigEmulator, "user/create.action", { accid });
      }
      const first = await signedPost(bigEmulator, "msg/sendMsg.action", {
        from: "bot",
        ope: "0",
        to: "user1",
        type: "0",
        body: '{"msg":"hi"}',
      });
      const second = await signedPost(bigEmulator, "msg/sendMsg.action", {
        from: "bot",
        ope: "0",
        to: "user1",
        type: "0",
        body: '{"msg":"again"}',
      });
      expect(first.text).toContain('"msgid":9007199254740993,');
      expect(second.text).toContain('"msgid":9007199254740994,');
      expect(bigEmulator.state.messages.map((message) => message.msgid)).toEqual([
        "9007199254740993",
        "9007199254740994",
      ]);
    } finally {
      await bigEmulator.close();
    }
  });

  it("rejects bad parameters with 414 and records nothing", async () => {
    await createAccount("bot");
    await createAccount("user1");
    const cases: Array<Record<string, string>> = [
      { ope: "2", body: "{}" },
      { type: "7", body: "{}" },
      { body: "not json" },
      { body: JSON.stringify({ text: "x".repeat(5000) }) },
      { type: "0", body: '{"text":"no msg field"}' },
      { body: "{}", option: "{broken" },
      { body: "{}", pushcontent: "p".repeat(501) },
      { body: "{}", ext: "e".repeat(1025) },
      { body: "{}", payload: "not json" },
      { body: "" },
    ];
    for (const fields of cases) {
      const result = await send(fields);
      expect(result.json?.code, JSON.stringify(fields).slice(0, 80)).toBe(414);
    }
    expect(emulator.state.messages).toEqual([]);
  });

  it("accepts a body of exactly 5000 characters", async () => {
    await createAccount("bot");
    await createAccount("user1");
    const body = JSON.stringify({ text: "x".repeat(4989) });
    expect(body.length).toBe(5000);
    expect((await send({ body })).json?.code).toBe(200);
  });

  it("requires registered sender and receiver", async () => {
    await createAccount("bot");
    expect((await send({ body: "{}" })).json).toEqual({ code: 414, desc: "to accid not exists" });
    expect((await send({ from: "ghost", to: "bot", body: "{}" })).json).toEqual({
      code: 414,
      desc: "from accid not exists",
    });
  });

  it("lets tests await deliveries, including ones already made", async () => {
    await createAccount("bot");
    await createAccount("user1");
    await send({ body: '{"n":1}' });
    const waiting = emulator.state.waitForMessages({ to: "USER1", count: 3 });
    await send({ body: '{"n":2}' });
    await send({ body: '{"n":3}' });
    const messages = await waiting;
    expect(messages.map((message) => message.body)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    await expect(emulator.state.waitForMessages({ to: "user1", count: 4, timeoutMs: 50 })).rejects.toThrow(
      /expected 4 message\(s\) to user1, got 3/,
    );
  });
});

describe("msg/sendAttachMsg.action", () => {
  it("records a custom notification separately, with its own option defaults", async () => {
    await createAccount("bot");
    await createAccount("user1");
    const result = await signedPost(emulator, "msg/sendAttachMsg.action", {
      from: "bot",
      msgtype: "0",
      to: "user1",
      attach: '{"delta":"hi"}',
    });
    expect(result.json).toEqual({ code: 200 });
    expect(emulator.state.messages).toEqual([]);
    expect(emulator.state.notifications[0]).toMatchObject({
      from: "bot",
      to: "user1",
      msgtype: 0,
      attach: '{"delta":"hi"}',
      save: 2,
      option: { badge: true, needPushNick: false, route: true },
    });
  });

  it("rejects a bad msgtype, save or an attach over 4096 characters", async () => {
    await createAccount("bot");
    await createAccount("user1");
    const base = { from: "bot", msgtype: "0", to: "user1", attach: "{}" };
    const cases: Array<Record<string, string>> = [{ msgtype: "2" }, { save: "3" }, { attach: "a".repeat(4097) }];
    for (const fields of cases) {
      expect((await signedPost(emulator, "msg/sendAttachMsg.action", { ...base, ...fields })).json?.code).toBe(414);
    }
  });
});

describe("frequency control", () => {
  it("answers 416 once a group's bucket is empty, per group", async () => {
    const fixed = await startNimEmulator({
      appKey,
      appSecret,
      // A frozen clock: no refill, so the count is exact.
      now: () => 1_700_000_000_000,
      curTimeWindow: { pastSeconds: 1e12, futureSeconds: 1e12 },
      frequencyLimits: { userPerSecond: 2, messagePerSecond: 100 },
    });
    try {
      const codes = [];
      for (const accid of ["f1", "f2", "f3"]) {
        codes.push((await signedPost(fixed, "user/create.action", { accid })).json);
      }
      expect(codes.map((json) => json?.code)).toEqual([200, 200, 416]);
      expect(codes[2]).toEqual({ code: 416, desc: "frequency control" });
      // The message group has its own bucket.
      const send = await signedPost(fixed, "msg/sendMsg.action", {
        from: "f1",
        ope: "0",
        to: "f2",
        type: "100",
        body: "{}",
      });
      expect(send.json?.code).toBe(200);
    } finally {
      await fixed.close();
    }
  });
});

describe("fault injection", () => {
  async function prepare() {
    await createAccount("bot");
    await createAccount("user1");
  }
  const sendText = (signal?: AbortSignal) =>
    signedPost(
      emulator,
      "msg/sendMsg.action",
      { from: "bot", ope: "0", to: "user1", type: "0", body: '{"msg":"hi"}' },
      { signal },
    );

  it("a code fault before processing records nothing and is used up after `times`", async () => {
    await prepare();
    emulator.faults.push({ path: "msg/sendMsg.action", kind: "code", code: 500, times: 2 });
    expect((await sendText()).json).toEqual({ code: 500, desc: "server error" });
    expect((await sendText()).json?.code).toBe(500);
    expect(emulator.state.messages).toHaveLength(0);
    expect((await sendText()).json?.code).toBe(200);
    expect(emulator.state.messages).toHaveLength(1);
    expect(emulator.faults).toEqual([]);
  });

  it("a code fault after processing records the message but answers the error", async () => {
    await prepare();
    emulator.faults.push({ path: "msg/sendMsg.action", kind: "code", code: 503, when: "after" });
    expect((await sendText()).json).toEqual({ code: 503, desc: "server busy" });
    expect(emulator.state.messages).toHaveLength(1);
  });

  it("a fault for another path does not fire", async () => {
    await prepare();
    emulator.faults.push({ path: "user/create.action", kind: "code", code: 500 });
    expect((await sendText()).json?.code).toBe(200);
    expect(emulator.faults).toHaveLength(1);
  });

  it("an http-status fault answers a non-JSON gateway page", async () => {
    await prepare();
    emulator.faults.push({ kind: "http-status", status: 502, headers: { "retry-after": "1" } });
    const result = await sendText();
    expect(result.status).toBe(502);
    expect(result.json).toBeUndefined();
    expect(emulator.state.requests.at(-1)).toMatchObject({ httpStatus: 502, fault: "http-status before" });
  });

  it("a drop fault destroys the connection (before: nothing recorded; after: recorded)", async () => {
    await prepare();
    emulator.faults.push({ kind: "drop" });
    await expect(sendText()).rejects.toThrow();
    expect(emulator.state.messages).toHaveLength(0);
    emulator.faults.push({ kind: "drop", when: "after" });
    await expect(sendText()).rejects.toThrow();
    expect(emulator.state.messages).toHaveLength(1);
  });

  it("a delay before processing loses the request when the client gives up", async () => {
    await prepare();
    emulator.faults.push({ kind: "delay", ms: 300 });
    await expect(sendText(AbortSignal.timeout(50))).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(emulator.state.messages).toHaveLength(0);
  });

  it("a delay after processing delivers the message although the client gave up", async () => {
    await prepare();
    emulator.faults.push({ kind: "delay", ms: 1_000, when: "after" });
    await expect(sendText(AbortSignal.timeout(250))).rejects.toThrow();
    await emulator.state.waitForMessages({ count: 1, timeoutMs: 1_000 });
    expect(emulator.state.requests.at(-1)).toMatchObject({ fault: "delay after" });
  });

  it("a delay the client waits out is only latency", async () => {
    await prepare();
    emulator.faults.push({ kind: "delay", ms: 50 });
    expect((await sendText()).json?.code).toBe(200);
    expect(emulator.state.messages).toHaveLength(1);
  });

  it("random faults follow the rate and are reproducible with a seed", async () => {
    await prepare();
    const run = async (seed: number) => {
      emulator.settings.randomFaults = {
        rate: 0.5,
        kinds: [{ kind: "code", code: 500 }],
        paths: ["msg/sendMsg.action"],
        random: createSeededRandom(seed),
      };
      const codes = [];
      for (let index = 0; index < 20; index += 1) codes.push((await sendText()).json?.code);
      return codes;
    };
    const first = await run(42);
    const second = await run(42);
    expect(second).toEqual(first);
    expect(first).toContain(500);
    expect(first).toContain(200);
    emulator.settings.randomFaults = { rate: 0, kinds: [{ kind: "drop" }] };
    expect((await sendText()).json?.code).toBe(200);
  });

  it("close() does not wait for a request held by a long delay", async () => {
    const closing = await startNimEmulator({ appKey, appSecret });
    closing.faults.push({ kind: "delay", ms: 60_000 });
    const pending = signedPost(closing, "user/create.action", { accid: "held" }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const startedAt = Date.now();
    await closing.close();
    expect(Date.now() - startedAt).toBeLessThan(2_000);
    expect(await pending).toBeInstanceOf(Error);
    expect(closing.state.accounts.size).toBe(0);
  });
});

describe("createNimEmulatorApp", () => {
  it("serves in-process requests through app.inject", async () => {
    const { app, state } = createNimEmulatorApp({ appKey, appSecret });
    const nonce = createNonce();
    const curTime = String(Math.floor(Date.now() / 1000));
    const response = await app.inject({
      method: "POST",
      url: "/nimserver/user/create.action",
      headers: {
        "content-type": "application/x-www-form-urlencoded;charset=utf-8",
        appkey: appKey,
        nonce,
        curtime: curTime,
        checksum: apiCheckSum(appSecret, nonce, curTime),
      },
      payload: "accid=Inject_User",
    });
    expect(response.json()).toMatchObject({ code: 200, info: { accid: "inject_user" } });
    expect(state.findAccount("inject_user")).toBeDefined();
    await app.close();
  });
});
