/**
 * NIM_STREAM_MODE=native end to end: the whole bridge (callback, inbox, pipeline, writer, the
 * native transport behind the fallback) against the emulator's v2 stream API. What NIM would
 * hold is read from the emulator's streams: each stream message with its chunks (index, finish,
 * text) and the newest extension a chunk carried.
 *
 * Covered: a normal reply, a reply longer than one stream message, a generator pause longer than
 * NIM's chunk gap (keep-alives), NIM refusing stream messages (fallback to custom segments), a
 * SIGKILL mid-stream, and a team reply (`bot|2|tid`).
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import type { NimEmulatorOptions } from "../src/emulator/index.ts";
import { startNimEmulator } from "../src/emulator/index.ts";
import type { EmulatorStream } from "../src/emulator/state.ts";
import { streamMessagePath } from "../src/emulator/v2-api.ts";
import { type FakeOpenAiScenario, startFakeOpenAi } from "../src/testing/fake-openai.ts";
import { APP_KEY, APP_SECRET, BOT, freePort, Stack, sleep } from "./harness.ts";

interface NativeExtension {
  kind: string;
  mode: string;
  stream_id: string;
  reply_to: string;
  part: number;
  status: string;
  done?: boolean;
  parts?: number;
}

interface NativeStackOptions {
  scenario: FakeOpenAiScenario;
  env?: Record<string, string>;
  emulator?: Partial<NimEmulatorOptions>;
  childProcess?: boolean;
}

/** The harness's stack with the bridge in native mode, its v2 client pointed at the emulator. */
async function startNativeStack(options: NativeStackOptions): Promise<Stack> {
  const emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET, ...options.emulator });
  const openai = await startFakeOpenAi({ scenario: options.scenario });
  const env = { NIM_STREAM_MODE: "native", NIM_OPEN_API_BASE: emulator.v2ApiBase, ...options.env };
  const stack = new Stack(
    emulator,
    openai,
    { env, ...(options.childProcess ? { childProcess: true } : {}) },
    await freePort(),
  );
  await stack.startBridge();
  return stack;
}

function extensionOf(stream: EmulatorStream): NativeExtension | undefined {
  if (stream.extension === undefined) return undefined;
  return JSON.parse(stream.extension) as NativeExtension;
}

/** The bot's stream messages whose extension names this reply, oldest first. */
function streamsOf(stack: Stack, replyTo: string): EmulatorStream[] {
  return [...stack.emulator.state.streams.values()]
    .filter((stream) => stream.from === BOT && extensionOf(stream)?.reply_to === replyTo)
    .sort((left, right) => (BigInt(left.messageServerId) < BigInt(right.messageServerId) ? -1 : 1));
}

/** Waits until a stream message of `replyTo` finished with the reply's last chunk (done in its extension). */
async function waitForNativeReply(stack: Stack, replyTo: string, timeoutMs = 15_000): Promise<EmulatorStream[]> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const streams = streamsOf(stack, replyTo);
    if (streams.some((stream) => stream.status === "complete" && extensionOf(stream)?.done === true)) return streams;
    await sleep(20);
  }
  throw new Error(
    `no finished native reply for ${replyTo} within ${timeoutMs} ms; streams: ${JSON.stringify(
      streamsOf(stack, replyTo).map((stream) => ({ status: stream.status, chunks: stream.chunks.length })),
    )}\n${stack.childOutput.slice(-2000)}`,
  );
}

/** Waits until the bridge marked the inbox row done (the reply is finished on its side too). */
async function waitForInboxDone(stack: Stack, inboxKey: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await stack.bridge!.repositories.inbox.get(inboxKey))?.status === "done") return;
    await sleep(20);
  }
  throw new Error(`inbox row ${inboxKey} not done within ${timeoutMs} ms`);
}

/** Indexes 0, 1, 2 … without gaps or repeats, and `finish: 1` only on the last chunk (when finished). */
function expectWellFormedStream(stream: EmulatorStream) {
  expect(stream.chunks.map((chunk) => chunk.index)).toEqual(stream.chunks.map((_, position) => position));
  const finishes = stream.chunks.filter((chunk) => chunk.finish === 1);
  if (stream.status === "complete") {
    expect(finishes).toHaveLength(1);
    expect(stream.chunks.at(-1)!.finish).toBe(1);
  } else {
    expect(finishes).toHaveLength(0);
  }
  expect(stream.text).toBe(stream.chunks.map((chunk) => chunk.text).join(""));
}

/** The bot's custom (type 100) messages: in native mode there must be none unless NIM refused. */
function customMessagesOfBot(stack: Stack) {
  return stack.emulator.state.messagesMatching({ from: BOT, type: 100 });
}

const ANSWER = "Native streams render as one bubble. 这是第二句话，用来测试。And a third sentence to end it.";

describe("native stream mode, end to end", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it("answers in one stream message: gapless indexes, one finish, the answer's text, status ok", async () => {
    stack = await startNativeStack({ scenario: { kind: "text", text: ANSWER, pieces: 8, delayMs: 30 } });
    const accid = await stack.register("native-normal");
    const replyTo = await stack.send(accid, "hi");
    const streams = await waitForNativeReply(stack, replyTo);
    await waitForInboxDone(stack, replyTo);
    expect(streams).toHaveLength(1);
    const stream = streams[0]!;
    expect(stream.conversationId).toBe(`${BOT}|1|${accid}`);
    expect(stream.to).toBe(accid);
    expectWellFormedStream(stream);
    expect(stream.chunks.length).toBeGreaterThanOrEqual(2);
    expect(stream.text).toBe(ANSWER);
    expect(extensionOf(stream)).toMatchObject({
      kind: "bot_stream",
      mode: "native",
      reply_to: replyTo,
      part: 1,
      status: "ok",
      done: true,
      parts: 1,
    });
    expect(extensionOf(stream)!.stream_id).toMatch(/\S/);
    // The merged message NIM stores for history and offline devices.
    const merged = stack.emulator.state.findMessage(stream.messageServerId);
    expect(merged?.stream?.status).toBe("complete");
    expect(JSON.parse(merged!.body)).toEqual({ msg: ANSWER });
    expect(customMessagesOfBot(stack)).toHaveLength(0);
  });

  it("continues a 7,000-character answer in a second stream message; both finish and join to the answer", async () => {
    const long = "这是一个很长的中文回答，用来测试原生流消息的五千字上限。".repeat(260).slice(0, 7000);
    stack = await startNativeStack({ scenario: { kind: "text", text: long, pieces: 60, delayMs: 5 } });
    const accid = await stack.register("native-long");
    const replyTo = await stack.send(accid, "写长文");
    const streams = await waitForNativeReply(stack, replyTo, 30_000);
    await waitForInboxDone(stack, replyTo);
    expect(streams).toHaveLength(2);
    for (const stream of streams) {
      expectWellFormedStream(stream);
      expect(stream.status).toBe("complete");
      expect(stream.text.length).toBeLessThanOrEqual(5000);
    }
    expect(streams.map((stream) => stream.text).join("")).toBe(long);
    expect(streams[0]!.text.length).toBe(5000);
    expect(extensionOf(streams[0]!)).toMatchObject({ reply_to: replyTo, part: 1, status: "streaming" });
    expect(extensionOf(streams[0]!)!.done).toBeUndefined();
    expect(extensionOf(streams[1]!)).toMatchObject({ reply_to: replyTo, part: 2, status: "ok", done: true, parts: 2 });
    expect(extensionOf(streams[1]!)!.stream_id).toBe(extensionOf(streams[0]!)!.stream_id);
    expect(customMessagesOfBot(stack)).toHaveLength(0);
  }, 40_000);

  it("keeps the stream message alive through a generator pause longer than NIM's chunk gap", async () => {
    const before = "Let me think about that for a moment. ";
    const after = "Here is the answer after a long pause.";
    stack = await startNativeStack({
      scenario: { kind: "pause", before, pauseMs: 7_000, after },
      emulator: { streamChunkTimeoutMs: 3_000 },
      env: { NIM_STREAM_KEEPALIVE_MS: "1000" },
    });
    const accid = await stack.register("native-pause");
    const replyTo = await stack.send(accid, "think hard");
    const streams = await waitForNativeReply(stack, replyTo, 20_000);
    await waitForInboxDone(stack, replyTo);
    expect(streams).toHaveLength(1);
    const stream = streams[0]!;
    expect(stream.status).toBe("complete");
    expect(stream.terminationReason).toBeUndefined();
    expectWellFormedStream(stream);
    expect(stream.text).toBe(before + after);
    // Keep-alives went out during the pause: empty chunks, none more than the gap after the one before.
    expect(stream.chunks.filter((chunk) => chunk.text === "").length).toBeGreaterThanOrEqual(2);
    for (let position = 1; position < stream.chunks.length; position += 1) {
      const gap = stream.chunks[position]!.receivedAt - stream.chunks[position - 1]!.receivedAt;
      expect(gap).toBeLessThan(3_000);
    }
    expect(extensionOf(stream)).toMatchObject({ status: "ok", done: true });
  }, 30_000);

  it("falls back to custom segments with one done when NIM refuses stream messages, and audits it", async () => {
    stack = await startNativeStack({
      scenario: { kind: "text", text: ANSWER, pieces: 8, delayMs: 20 },
      emulator: { streamMessagesEnabled: false },
    });
    const accid = await stack.register("native-refused");
    const replyTo = await stack.send(accid, "hi");
    const reply = await stack.waitForReply(replyTo);
    await waitForInboxDone(stack, replyTo);
    expect(reply.finals.filter((body) => body.done)).toHaveLength(1);
    expect(reply.status).toBe("ok");
    expect(reply.deltaText).toBe(ANSWER);
    expect(reply.finalText).toBe(ANSWER);
    expect(reply.segments.length).toBeGreaterThanOrEqual(1);
    const seqs = [...new Set(reply.messages.map((entry) => entry.body.seq))].sort((left, right) => left - right);
    expect(seqs).toEqual(seqs.map((_, position) => position));
    expect(reply.messages.every((entry) => entry.message.to === accid)).toBe(true);
    expect(stack.emulator.state.streams.size).toBe(0);
    const audit = await stack.bridge!.repositories.audit.list({ event: "reply.native_refused", subject: replyTo });
    expect(audit).toHaveLength(1);
  });

  it("finishes one logical reply after a SIGKILL mid-stream, never repeating an index", async () => {
    const text = Array.from({ length: 40 }, (_, index) => `片段${index}。`).join("");
    stack = await startNativeStack({
      childProcess: true,
      scenario: { kind: "text", text, pieces: 40, delayMs: 60 },
    });
    const accid = await stack.register("native-crash");
    const replyTo = await stack.send(accid, "tell me a long story");
    const deadline = Date.now() + 15_000;
    const chunksSoFar = () => streamsOf(stack!, replyTo).reduce((sum, stream) => sum + stream.chunks.length, 0);
    while (chunksSoFar() < 4 && Date.now() < deadline) await sleep(10);
    expect(chunksSoFar()).toBeGreaterThanOrEqual(4);
    expect(streamsOf(stack, replyTo).every((stream) => stream.status === "streaming")).toBe(true);
    await stack.killBridge();
    await stack.startBridge();
    const streams = await waitForNativeReply(stack, replyTo, 25_000);
    for (const stream of streams) expectWellFormedStream(stream);
    // One logical reply: one stream message ends it, with the whole answer (a replacement stream
    // message repeats what its abandoned predecessor held).
    const finished = streams.filter((stream) => extensionOf(stream)?.done === true);
    expect(finished).toHaveLength(1);
    expect(finished[0]!.status).toBe("complete");
    expect(finished[0]!.text).toBe(text);
    expect(extensionOf(finished[0]!)).toMatchObject({ status: "ok", reply_to: replyTo });
    const streamIds = new Set(streams.map((stream) => extensionOf(stream)!.stream_id));
    expect(streamIds.size).toBe(1);
    // Any other stream message is an abandoned one still open (NIM's gap ends it), never a second finish.
    for (const stream of streams) if (stream !== finished[0]) expect(stream.status).toBe("streaming");
    expect(customMessagesOfBot(stack)).toHaveLength(0);
  }, 60_000);

  it("after a SIGKILL with a chunk NIM applied but never answered, continues in a new stream message", async () => {
    const text = Array.from({ length: 40 }, (_, index) => `段落${index}。`).join("");
    stack = await startNativeStack({
      childProcess: true,
      scenario: { kind: "text", text, pieces: 40, delayMs: 60 },
      // Longer than the held answer below: the bridge is still waiting for it when it is killed.
      env: { NIM_REQUEST_TIMEOUT_MS: "5000" },
    });
    const accid = await stack.register("native-inflight");
    const replyTo = await stack.send(accid, "tell me another long story");
    const deadline = Date.now() + 15_000;
    const chunksSoFar = () => streamsOf(stack!, replyTo).reduce((sum, stream) => sum + stream.chunks.length, 0);
    while (chunksSoFar() < 4 && Date.now() < deadline) await sleep(10);
    expect(chunksSoFar()).toBeGreaterThanOrEqual(4);
    // The next chunk is applied at NIM but its answer is held: the bridge cannot know it arrived.
    stack.emulator.faults.push({ path: streamMessagePath, kind: "delay", ms: 3_000, when: "after" });
    const held = () => stack!.emulator.state.requests.some((request) => request.fault === "delay after");
    while (!held() && Date.now() < deadline) await sleep(5);
    expect(held()).toBe(true);
    await stack.killBridge();
    const [abandoned] = streamsOf(stack, replyTo);
    const abandonedText = abandoned!.text;
    await stack.startBridge();
    const streams = await waitForNativeReply(stack, replyTo, 25_000);
    for (const stream of streams) expectWellFormedStream(stream);
    expect(streams).toHaveLength(2);
    // The abandoned stream message keeps what it had (NIM's gap ends it later); nothing was added after the kill.
    expect(streams[0]).toBe(abandoned);
    expect(streams[0]!.status).toBe("streaming");
    expect(streams[0]!.text).toBe(abandonedText);
    expect(text.startsWith(abandonedText)).toBe(true);
    // The replacement repeats that text, so it holds the whole answer on its own, and ends the reply.
    expect(streams[1]!.status).toBe("complete");
    expect(streams[1]!.text).toBe(text);
    expect(streams[1]!.messageClientId).not.toBe(streams[0]!.messageClientId);
    expect(extensionOf(streams[1]!)).toMatchObject({ status: "ok", done: true, reply_to: replyTo });
    expect(extensionOf(streams[1]!)!.stream_id).toBe(extensionOf(streams[0]!)!.stream_id);
    expect(customMessagesOfBot(stack)).toHaveLength(0);
  }, 60_000);

  it("answers an @-mention in a team with a stream message to bot|2|tid", async () => {
    stack = await startNativeStack({ scenario: { kind: "text", text: ANSWER, pieces: 6, delayMs: 20 } });
    const accid = await stack.register("native-team");
    expect(stack.emulator.state.findAccount(BOT)).toBeDefined();
    const team = stack.emulator.state.createTeam({ name: "native team", owner: accid, members: [accid, BOT] });
    const mention = `@${BOT}`;
    const ext = JSON.stringify({
      yxAitMsg: { [BOT]: { text: `${mention} `, segments: [{ start: 0, end: mention.length - 1, broken: false }] } },
    });
    const msgidServer = newMessageIdServer();
    const response = await stack.postCallback(
      JSON.stringify(
        buildMessageCopy({
          from: accid,
          to: team.tid,
          convType: "TEAM",
          body: `${mention} what is native streaming?`,
          ext,
          msgidServer,
        }),
      ),
    );
    expect(response.status).toBe(200);
    const conversationId = `${BOT}|2|${team.tid}`;
    const deadline = Date.now() + 15_000;
    const teamStreams = () =>
      [...stack!.emulator.state.streams.values()].filter((stream) => stream.conversationId === conversationId);
    while (!teamStreams().some((stream) => stream.status === "complete") && Date.now() < deadline) await sleep(20);
    // The team's inbox row is keyed msgidServer#bot (one row per addressed bot).
    await waitForInboxDone(stack, `${msgidServer}#${BOT}`);
    const streams = teamStreams();
    expect(streams).toHaveLength(1);
    const stream = streams[0]!;
    expect(stream.status).toBe("complete");
    expect(stream.ope).toBe(1);
    expect(stream.to).toBe(team.tid);
    expectWellFormedStream(stream);
    expect(stream.text).toBe(ANSWER);
    const extension = extensionOf(stream)!;
    expect(extension).toMatchObject({ kind: "bot_stream", mode: "native", status: "ok", done: true });
    expect(extension.reply_to.startsWith(msgidServer)).toBe(true);
    // The asker is @-mentioned the UIKit way.
    expect(JSON.parse(stream.extension!)).toMatchObject({ yxAitMsg: { [accid]: {} } });
    // The model saw the question without the @.
    const asked = stack.openai.requests[0]?.body?.messages.at(-1)?.content;
    expect(asked).toBe("what is native streaming?");
    expect(customMessagesOfBot(stack)).toHaveLength(0);
  });
});
