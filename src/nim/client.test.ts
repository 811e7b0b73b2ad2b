import { pino } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { createNimClient, type NimClientOptions, type NimLogger } from "./client.ts";
import { isAlreadyRegisteredError, NimError } from "./errors.ts";

const appKey = "client-test-key";
const appSecret = "client-test-secret-0123456789";

let emulator: RunningNimEmulator;
let fetchCalls: Array<{ url: string; headers: Record<string, string>; body: string }>;
let logLines: string[];

/** Every HTTP call the client makes, recorded so tests can count attempts and inspect headers. */
const countingFetch: typeof fetch = (input, init) => {
  fetchCalls.push({
    url: String(input),
    headers: Object.fromEntries(new Headers(init?.headers).entries()),
    body: String(init?.body ?? ""),
  });
  return fetch(input, init);
};

/** A real pino logger writing into `logLines`, to prove secrets never reach a log line. */
function capturingLogger(): NimLogger {
  return pino({ level: "debug" }, { write: (line: string) => logLines.push(line) });
}

function client(overrides: Partial<NimClientOptions> = {}) {
  return createNimClient({
    appKey,
    appSecret,
    apiBase: emulator.classicApiBase,
    timeoutMs: 1_000,
    retry: { maxAttempts: 5, deadlineMs: 10_000, baseDelayMs: 5, maxDelayMs: 20 },
    fetch: countingFetch,
    logger: capturingLogger(),
    ...overrides,
  });
}

async function caught(promise: Promise<unknown>): Promise<NimError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(NimError);
    return error as NimError;
  }
  throw new Error("expected the call to fail");
}

const sendPath = "msg/sendMsg.action";

beforeAll(async () => {
  emulator = await startNimEmulator({ appKey, appSecret });
});
afterAll(async () => {
  await emulator.close();
});
beforeEach(() => {
  fetchCalls = [];
  logLines = [];
});
afterEach(() => {
  emulator.state.reset();
});

async function accounts(...accids: string[]) {
  const nim = client();
  for (const accid of accids) await nim.createAccount({ accid });
  fetchCalls = [];
}

describe("request format", () => {
  it("POSTs a form body with NIM's four auth headers, CurTime in seconds", async () => {
    const now = () => 1_700_000_000_999;
    // The emulator's clock is real; widen its window so the fixed client clock is accepted.
    emulator.settings.curTimeWindow = { pastSeconds: 1e10, futureSeconds: 300 };
    try {
      await client({ now }).createAccount({ accid: "format_check", name: "张三 & co" });
    } finally {
      emulator.settings.curTimeWindow = { pastSeconds: 300, futureSeconds: 300 };
    }
    const [call] = fetchCalls;
    expect(call?.url).toBe(`${emulator.classicApiBase}/user/create.action`);
    expect(call?.headers["content-type"]).toBe("application/x-www-form-urlencoded;charset=utf-8");
    expect(call?.headers.appkey).toBe(appKey);
    expect(call?.headers.curtime).toBe("1700000000");
    expect(call?.headers.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(call?.headers.checksum).toMatch(/^[0-9a-f]{40}$/);
    expect(new URLSearchParams(call?.body).get("name")).toBe("张三 & co");
    expect(emulator.state.findAccount("format_check")?.name).toBe("张三 & co");
  });

  it("accepts an apiBase with a trailing slash", async () => {
    await client({ apiBase: `${emulator.classicApiBase}/` }).createAccount({ accid: "slash" });
    expect(fetchCalls[0]?.url).toBe(`${emulator.classicApiBase}/user/create.action`);
  });
});

describe("methods against the emulator", () => {
  it("createAccount returns NIM's lower-cased accid and its generated token", async () => {
    const account = await client().createAccount({ accid: "Site_User_1", name: "Ann" });
    expect(account).toEqual({ accid: "site_user_1", token: expect.stringMatching(/^[0-9a-f]{32}$/), name: "Ann" });
    expect(emulator.state.findAccount("site_user_1")?.token).toBe(account.token);
  });

  it("createAccount keeps a chosen token; a duplicate is a terminal 'already register'", async () => {
    const nim = client();
    expect((await nim.createAccount({ accid: "dup", token: "my-token-123" })).token).toBe("my-token-123");
    const error = await caught(nim.createAccount({ accid: "DUP" }));
    expect(error).toMatchObject({ kind: "api", code: 414, desc: "already register", retryable: false });
    expect(isAlreadyRegisteredError(error)).toBe(true);
  });

  it("updateToken sets the token", async () => {
    await accounts("upd");
    await client().updateToken({ accid: "upd", token: "fresh-token-456" });
    expect(emulator.state.findAccount("upd")?.token).toBe("fresh-token-456");
  });

  it("refreshToken returns a new server-made token", async () => {
    const nim = client();
    const created = await nim.createAccount({ accid: "ref" });
    const refreshed = await nim.refreshToken("REF");
    expect(refreshed.accid).toBe("ref");
    expect(refreshed.token).not.toBe(created.token);
    expect(emulator.state.findAccount("ref")?.token).toBe(refreshed.token);
  });

  it("getUserInfos splits long lists into calls of at most 200", async () => {
    await accounts("info_a", "info_b");
    const accids = ["info_a", ...Array.from({ length: 398 }, (_, index) => `missing_${index}`), "info_b"];
    const infos = await client().getUserInfos(accids);
    expect(infos.map((info) => info.accid)).toEqual(["info_a", "info_b"]);
    expect(fetchCalls).toHaveLength(2);
    expect(fetchCalls.map((call) => JSON.parse(new URLSearchParams(call.body).get("accids") ?? "").length)).toEqual([
      200, 200,
    ]);
    expect(await client().getUserInfos([])).toEqual([]);
  });

  it("sendMessage encodes an object body and option, and returns msgid and timetag", async () => {
    await accounts("bot", "user1");
    const result = await client().sendMessage({
      from: "bot",
      to: "user1",
      type: 100,
      body: { kind: "bot_stream", stream_id: "s1", seq: 0, delta: "你好", done: false },
      option: { roam: false, history: false, persistent: false, route: false },
      pushcontent: "push",
      ext: "e",
    });
    expect(result.msgid).toMatch(/^\d+$/);
    expect(result.timetag).toEqual(expect.any(Number));
    const [message] = emulator.state.messages;
    expect(message?.msgid).toBe(result.msgid);
    expect(JSON.parse(message?.body ?? "")).toMatchObject({ delta: "你好", seq: 0 });
    expect(message?.ope).toBe(0);
    expect(message?.option).toMatchObject({ roam: false, history: false, persistent: false, route: false, push: true });
    expect(message?.pushcontent).toBe("push");
  });

  it("sendMessage sends a team message with the asker's forced push and ext", async () => {
    await accounts("bot", "u_alice");
    const team = emulator.state.createTeam({ name: "room", owner: "u_alice", members: ["bot"] });
    const ext = '{"yxAitMsg":{"u_alice":{"text":"@Alice ","segments":[{"start":0,"end":5,"broken":false}]}}}';
    await client().sendMessage({
      from: "bot",
      ope: 1,
      to: team.tid,
      type: 0,
      body: { msg: "答案" },
      forcepushlist: '["u_alice"]',
      forcepushcontent: "顾问 回复了你",
      ext,
    });
    expect(emulator.state.messages[0]).toMatchObject({
      ope: 1,
      to: team.tid,
      ext,
      forcePushList: ["u_alice"],
      forcePushContent: "顾问 回复了你",
    });
  });

  it("sendMessage into a team the bot is not in fails with NIM's 804, not retried", async () => {
    await accounts("bot", "u_alice");
    const team = emulator.state.createTeam({ name: "room", owner: "u_alice", members: [] });
    const error = await caught(
      client().sendMessage({ from: "bot", ope: 1, to: team.tid, type: 0, body: { msg: "x" } }),
    );
    expect(error.code).toBe(804);
    expect(error.retryable).toBe(false);
    expect(fetchCalls).toHaveLength(1);
  });

  it("sendMessage passes a string body through unchanged", async () => {
    await accounts("bot", "user1");
    await client().sendMessage({ from: "bot", to: "user1", type: 0, body: '{"msg":"hello"}' });
    expect(emulator.state.messages[0]?.body).toBe('{"msg":"hello"}');
  });

  it("sendCustomNotification reaches sendAttachMsg", async () => {
    await accounts("bot", "user1");
    await client().sendCustomNotification({ from: "bot", to: "user1", attach: { delta: "x" }, save: 1 });
    expect(emulator.state.notifications[0]).toMatchObject({ attach: '{"delta":"x"}', save: 1, msgtype: 0 });
  });
});

describe("message ids beyond 2^53", () => {
  it("keeps every digit of NIM's msgid", async () => {
    const big = await startNimEmulator({ appKey, appSecret, firstMessageId: "9007199254740993" });
    try {
      const nim = client({ apiBase: big.classicApiBase });
      await nim.createAccount({ accid: "bot" });
      await nim.createAccount({ accid: "user1" });
      const first = await nim.sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "a" } });
      const second = await nim.sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "b" } });
      // JSON.parse would have turned both into 9007199254740992 or ...996.
      expect(first.msgid).toBe("9007199254740993");
      expect(second.msgid).toBe("9007199254740994");
    } finally {
      await big.close();
    }
  });
});

describe("errors and retries", () => {
  it("a wrong secret is a terminal 414 checksum after exactly one attempt", async () => {
    const error = await caught(client({ appSecret: "not-the-secret" }).createAccount({ accid: "x" }));
    expect(error).toMatchObject({ kind: "api", code: 414, desc: "checksum", retryable: false });
    expect(fetchCalls).toHaveLength(1);
    expect(emulator.state.requests).toHaveLength(1);
  });

  it("a stale clock is a terminal 414 CurTime is expired", async () => {
    const error = await caught(client({ now: () => Date.now() - 10 * 60_000 }).createAccount({ accid: "x" }));
    expect(error).toMatchObject({ code: 414, desc: "CurTime is expired", retryable: false });
    expect(fetchCalls).toHaveLength(1);
  });

  it("a parameter error (414) is not retried", async () => {
    await accounts("bot");
    const error = await caught(client().sendMessage({ from: "bot", to: "nobody", type: 0, body: { msg: "x" } }));
    expect(error).toMatchObject({ kind: "api", code: 414, retryable: false, endpoint: sendPath });
    expect(fetchCalls).toHaveLength(1);
  });

  it("frequency control (416) is retried, then succeeds", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "code", code: 416 });
    const result = await client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } });
    expect(result.msgid).toMatch(/^\d+$/);
    expect(fetchCalls).toHaveLength(2);
    expect(emulator.state.messages).toHaveLength(1);
  });

  it("500 twice, then success", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "code", code: 500, times: 2 });
    await client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } });
    expect(fetchCalls).toHaveLength(3);
    expect(emulator.state.messages).toHaveLength(1);
  });

  it("each attempt carries a fresh Nonce (NIM could treat a repeat as a replay)", async () => {
    await accounts("bot", "user1");
    emulator.settings.rejectReplayedNonce = true;
    try {
      emulator.faults.push({ path: sendPath, kind: "code", code: 500, times: 2 });
      await client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } });
      expect(new Set(fetchCalls.map((call) => call.headers.nonce)).size).toBe(3);
    } finally {
      emulator.settings.rejectReplayedNonce = false;
    }
  });

  it("HTTP 502 from a gateway is retried; HTTP 400 is not", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "http-status", status: 502 });
    await client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } });
    expect(fetchCalls).toHaveLength(2);

    fetchCalls = [];
    emulator.faults.push({ path: sendPath, kind: "http-status", status: 400 });
    const error = await caught(client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } }));
    expect(error).toMatchObject({ kind: "http", code: 400, retryable: false });
    expect(fetchCalls).toHaveLength(1);
  });

  it("a 2xx answer that is not NIM JSON is a terminal invalid-response that quotes no body", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "http-status", status: 200, body: "<html>token=abc</html>" });
    const error = await caught(client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } }));
    expect(error).toMatchObject({ kind: "invalid-response", retryable: false });
    expect(error.message).not.toContain("token=abc");
    expect(fetchCalls).toHaveLength(1);
  });

  it("a timeout (emulator holds the request past the client timeout) is retried", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "delay", ms: 1_000 });
    const startedAt = Date.now();
    const result = await client({ timeoutMs: 150 }).sendMessage({
      from: "bot",
      to: "user1",
      type: 0,
      body: { msg: "x" },
    });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(150);
    expect(result.msgid).toMatch(/^\d+$/);
    expect(fetchCalls).toHaveLength(2);
    expect(logLines.some((line) => line.includes('"kind":"timeout"'))).toBe(true);
  });

  it("a lost answer after NIM accepted the send duplicates the message (accepted by the contract)", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "delay", ms: 1_000, when: "after" });
    const result = await client({ timeoutMs: 150 }).sendMessage({
      from: "bot",
      to: "user1",
      type: 0,
      body: { msg: "x" },
    });
    expect(emulator.state.messages).toHaveLength(2);
    expect(result.msgid).toBe(emulator.state.messages[1]?.msgid);
  });

  it("a dropped connection is retried", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "drop" });
    await client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } });
    expect(fetchCalls).toHaveLength(2);
    expect(emulator.state.messages).toHaveLength(1);
  });

  it("a connection refused is a retryable network error", async () => {
    const closed = await startNimEmulator({ appKey, appSecret });
    await closed.close();
    const error = await caught(
      client({
        apiBase: closed.classicApiBase,
        retry: { maxAttempts: 2, deadlineMs: 5_000, baseDelayMs: 1 },
      }).refreshToken("x"),
    );
    expect(error).toMatchObject({ kind: "network", retryable: true });
    expect(error.desc).toMatch(/ECONNREFUSED/);
    expect(fetchCalls).toHaveLength(2);
  });

  it("gives up after maxAttempts with the last NIM error", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "code", code: 503, times: Number.POSITIVE_INFINITY });
    const error = await caught(
      client({ retry: { maxAttempts: 3, deadlineMs: 10_000, baseDelayMs: 1 } }).sendMessage({
        from: "bot",
        to: "user1",
        type: 0,
        body: { msg: "x" },
      }),
    );
    expect(error).toMatchObject({ kind: "api", code: 503, retryable: true });
    expect(fetchCalls).toHaveLength(3);
  });

  it("respects the overall deadline: no attempt or pause runs past it", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "delay", ms: 5_000, times: Number.POSITIVE_INFINITY });
    const nim = client({
      timeoutMs: 200,
      retry: { maxAttempts: 50, deadlineMs: 700, baseDelayMs: 10, maxDelayMs: 50 },
    });
    const startedAt = Date.now();
    const error = await caught(nim.sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } }));
    const elapsed = Date.now() - startedAt;
    expect(error.kind).toBe("timeout");
    expect(elapsed).toBeGreaterThanOrEqual(500);
    expect(elapsed).toBeLessThan(900);
    expect(fetchCalls.length).toBeGreaterThanOrEqual(3);
    expect(fetchCalls.length).toBeLessThanOrEqual(4);
  });

  it("a per-call deadline shorter than the policy's wins", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "delay", ms: 5_000, times: Number.POSITIVE_INFINITY });
    const startedAt = Date.now();
    const error = await caught(
      client({ timeoutMs: 1_000 }).sendMessage(
        { from: "bot", to: "user1", type: 0, body: { msg: "x" } },
        { deadlineMs: 250 },
      ),
    );
    expect(error.kind).toBe("timeout");
    expect(Date.now() - startedAt).toBeLessThan(600);
  });

  it("an abort from the caller ends the call with a non-retryable 'aborted'", async () => {
    await accounts("bot", "user1");
    emulator.faults.push({ path: sendPath, kind: "delay", ms: 5_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const error = await caught(
      client().sendMessage({ from: "bot", to: "user1", type: 0, body: { msg: "x" } }, { signal: controller.signal }),
    );
    expect(error).toMatchObject({ kind: "aborted", retryable: false });
    expect(fetchCalls).toHaveLength(1);
  });
});

describe("local validation", () => {
  it.each([
    ["body over 5000 characters", { body: { text: "x".repeat(5000) } }, /body is 5\d{3} characters/],
    ["pushcontent over 500", { pushcontent: "p".repeat(501) }, /pushcontent/],
    ["ext over 1024", { ext: "e".repeat(1025) }, /ext/],
    ["payload over 2048", { payload: "y".repeat(2049) }, /payload/],
    ["a bad ope", { ope: 2 as 0 }, /ope/],
  ])("rejects %s with zero HTTP calls", async (_label, overrides, pattern) => {
    const error = await caught(
      client().sendMessage({ from: "bot", to: "user1", type: 100, body: { a: 1 }, ...overrides }),
    );
    expect(error).toMatchObject({ kind: "invalid-request", retryable: false });
    expect(error.desc).toMatch(pattern);
    expect(fetchCalls).toHaveLength(0);
    expect(emulator.state.requests).toHaveLength(0);
  });

  it("counts characters, not bytes: 5000 Chinese characters fit", async () => {
    await accounts("bot", "user1");
    const body = JSON.stringify({ msg: "字".repeat(4990) });
    expect(body.length).toBe(5000);
    await client().sendMessage({ from: "bot", to: "user1", type: 0, body });
    expect(emulator.state.messages).toHaveLength(1);
  });

  it("rejects an oversized notification attach locally", async () => {
    const error = await caught(client().sendCustomNotification({ from: "bot", to: "u", attach: "a".repeat(4097) }));
    expect(error.kind).toBe("invalid-request");
    expect(fetchCalls).toHaveLength(0);
  });
});

describe("secrets", () => {
  it("never puts the AppSecret, a CheckSum or a token in an error or a log line", async () => {
    const errors: NimError[] = [];
    const nim = client({ timeoutMs: 150 });
    const account = await nim.createAccount({ accid: "secret_user", token: "token-value-that-must-not-leak" });
    await nim.createAccount({ accid: "bot" });

    errors.push(await caught(client({ appSecret: `${appSecret}-wrong` }).createAccount({ accid: "s1" })));
    errors.push(await caught(nim.createAccount({ accid: "secret_user", token: "token-value-that-must-not-leak" })));
    emulator.faults.push({ kind: "code", code: 500, desc: `echo ${appSecret} token-value-that-must-not-leak` });
    emulator.faults.push({ kind: "delay", ms: 1_000 });
    emulator.faults.push({ kind: "drop" });
    emulator.faults.push({ kind: "http-status", status: 503, body: appSecret });
    await nim.updateToken({ accid: "secret_user", token: "token-value-that-must-not-leak" });
    emulator.faults.push({ kind: "code", code: 414, desc: `bad token token-value-that-must-not-leak ${appSecret}` });
    errors.push(await caught(nim.updateToken({ accid: "secret_user", token: "token-value-that-must-not-leak" })));
    errors.push(await caught(nim.sendMessage({ from: "bot", to: "secret_user", type: 0, body: "x".repeat(6000) })));
    emulator.faults.push({ kind: "code", code: 503, times: Number.POSITIVE_INFINITY });
    errors.push(
      await caught(
        client({ retry: { maxAttempts: 2, deadlineMs: 1_000, baseDelayMs: 1 } }).refreshToken("secret_user"),
      ),
    );
    emulator.faults.length = 0;

    const checkSums = fetchCalls.map((call) => call.headers.checksum ?? "");
    expect(checkSums.length).toBeGreaterThan(5);
    expect(logLines.length).toBeGreaterThan(0);
    const forbidden = [appSecret, account.token, ...checkSums];
    const visible = [
      ...errors.flatMap((error) => [error.message, error.desc, String(error.stack), JSON.stringify(error)]),
      ...logLines,
    ].join("\n");
    for (const secret of forbidden) expect(visible).not.toContain(secret);
    expect(visible).toContain("[redacted]");
  });

  it("refuses to start without credentials", () => {
    expect(() => client({ appSecret: "" })).toThrow(/appSecret/);
    expect(() => client({ appKey: "" })).toThrow(/appKey/);
  });
});
