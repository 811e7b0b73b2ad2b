/**
 * The v2 client over real HTTP against the emulator: signing, the `{"code","msg","data"}`
 * envelope, 64-bit ids, and the retry rule (416 and 502 retried; timeouts and other codes final).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type RunningNimEmulator, startNimEmulator, streamMessagePath } from "../emulator/index.ts";
import { isStreamMessageRefusal, isStreamMessageRefusalCode, NimError } from "./errors.ts";
import { createNimV2Client, type NimV2ClientOptions, parseV2Envelope, quoteLargeIntegers } from "./v2-client.ts";

const appKey = "v2-client-key";
const appSecret = "v2-client-secret";
let emulator: RunningNimEmulator;
let calls: number;

const countingFetch: typeof fetch = (input, init) => {
  calls += 1;
  return fetch(input, init);
};

function client(overrides: Partial<NimV2ClientOptions> = {}) {
  return createNimV2Client({
    appKey,
    appSecret,
    openApiBase: `${emulator.v2ApiBase}/`,
    timeoutMs: 1_000,
    retry: { maxAttempts: 3, deadlineMs: 5_000, baseDelayMs: 1, maxDelayMs: 5 },
    frequencyControlBackoffMs: 5,
    fetch: countingFetch,
    ...overrides,
  });
}

const first = (text: string) =>
  JSON.stringify({ message: { message_type: 0, message_client_id: "c-1", attachment: { text, index: 0, finish: 0 } } });

beforeAll(async () => {
  emulator = await startNimEmulator({ appKey, appSecret, firstMessageId: "9223372036854775000" });
});
afterAll(async () => {
  await emulator.close();
});
beforeEach(() => {
  calls = 0;
  emulator.state.addAccount({ accid: "bot", token: "t", createdAt: Date.now() });
  emulator.state.addAccount({ accid: "alice", token: "t", createdAt: Date.now() });
});
afterEach(() => {
  emulator.state.reset();
  emulator.settings.streamMessagesEnabled = true;
});

async function caught(promise: Promise<unknown>): Promise<NimError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(NimError);
  return error as NimError;
}

describe("createNimV2Client", () => {
  it("sends a signed chunk and reads a message_server_id near 2^63 exactly", async () => {
    const result = await client().sendStreamMessageChunk("bot|1|alice", first("Hi"));
    expect(result).toMatchObject({ messageServerId: "9223372036854775000", messageClientId: "c-1" });
    expect(typeof result.createTime).toBe("number");
    const next = `{"message":{"message_type":0,"message_server_id":9223372036854775000,"attachment":{"text":"!","index":1,"finish":1}}}`;
    expect((await client().sendStreamMessageChunk("bot|1|alice", next)).messageServerId).toBe("9223372036854775000");
    expect(emulator.state.messages[0]).toMatchObject({ msgid: "9223372036854775000", body: '{"msg":"Hi!"}' });
  });

  it("retries frequency control (416) and a gateway's 502, and nothing else", async () => {
    emulator.faults.push({ path: streamMessagePath, kind: "code", code: 416 });
    emulator.faults.push({ path: streamMessagePath, kind: "http-status", status: 502 });
    await client().sendStreamMessageChunk("bot|1|alice", first("a"));
    expect(calls).toBe(3);

    for (const fault of [
      { kind: "code", code: 500 },
      { kind: "http-status", status: 503 },
      { kind: "delay", ms: 1_000, when: "after" },
    ] as const) {
      calls = 0;
      emulator.faults.push({ path: streamMessagePath, ...fault });
      const error = await caught(client({ timeoutMs: 200 }).sendStreamMessageChunk("bot|1|alice", first("b")));
      expect(error.retryable).toBe(false);
      expect(calls).toBe(1);
    }
  });

  it("maps six-digit codes into NimError and a disabled feature into the typed refusal", async () => {
    const missing = await caught(client().sendStreamMessageChunk("bot|1|ghost", first("x")));
    expect(missing).toMatchObject({ kind: "api", code: 102404, desc: "receiver not exists", retryable: false });
    expect(isStreamMessageRefusal(missing)).toBe(false);

    emulator.settings.streamMessagesEnabled = false;
    const refused = await caught(client().sendStreamMessageChunk("bot|1|alice", first("x")));
    expect(isStreamMessageRefusal(refused)).toBe(true);
    expect(refused).toMatchObject({ code: 403, retryable: false });
    expect(isStreamMessageRefusalCode(107403)).toBe(true);
    expect(isStreamMessageRefusalCode(108404)).toBe(false);
  });

  it("never puts the AppSecret into an error", async () => {
    emulator.faults.push({ path: streamMessagePath, kind: "code", code: 414, desc: `bad ${appSecret}` });
    const error = await caught(client().sendStreamMessageChunk("bot|1|alice", first("x")));
    expect(`${error.message} ${error.desc}`).not.toContain(appSecret);
  });
});

describe("short message_server_ids", () => {
  it("reads a 13-digit id NIM sends as a plain JSON number", async () => {
    const small = await startNimEmulator({ appKey, appSecret });
    try {
      small.state.addAccount({ accid: "bot", token: "t", createdAt: Date.now() });
      small.state.addAccount({ accid: "alice", token: "t", createdAt: Date.now() });
      const nim = createNimV2Client({
        appKey,
        appSecret,
        openApiBase: small.v2ApiBase,
        timeoutMs: 1_000,
        retry: { maxAttempts: 1, deadlineMs: 5_000 },
      });
      expect((await nim.sendStreamMessageChunk("bot|1|alice", first("x"))).messageServerId).toBe("1200000000000");
    } finally {
      await small.close();
    }
  });
});

describe("parseV2Envelope", () => {
  it("keeps 16+ digit integers as strings, even inside nested data, and leaves strings alone", () => {
    expect(quoteLargeIntegers('{"a":12345678901234567,"b":"x:12345678901234567","c":[1.5,-2]}')).toBe(
      '{"a":"12345678901234567","b":"x:12345678901234567","c":[1.5,-2]}',
    );
    expect(parseV2Envelope('{"code":200,"msg":"ok","data":{"message_server_id":9007199254740993}}')).toEqual({
      code: 200,
      msg: "ok",
      data: { message_server_id: "9007199254740993" },
    });
    expect(parseV2Envelope("<html>")).toBeUndefined();
    expect(parseV2Envelope('{"msg":"no code"}')).toBeUndefined();
  });
});
