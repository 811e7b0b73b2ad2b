/**
 * The native transport: its encoding as pure functions, and its delivery over real HTTP to the
 * emulator's v2 stream-message endpoint through the real v2 client. A small driver stands in for
 * the pipeline: it commits what the transport encodes, then delivers one message at a time in seq
 * order with a persistent TransportState, as the seam's contract says.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type RunningNimEmulator,
  startNimEmulator,
  streamMessagePath,
  terminateIdleStreams,
} from "../../emulator/index.ts";
import { isStreamMessageRefusal, NimError } from "../../nim/errors.ts";
import { createNimV2Client } from "../../nim/v2-client.ts";
import {
  conversationIdOf,
  KEEP_ALIVE_INTERVAL_MS,
  keepAliveDue,
  messageClientIdOf,
  NATIVE_STREAM_TEXT_LIMIT,
  NativeStreamTransport,
  parseChunkBody,
} from "./native.ts";
import type { OutboundMessage, ReplyAddress, TransportState } from "./types.ts";

const appKey = "native-test-key";
const appSecret = "native-test-secret";
const bot = "advisor_bot";

const address: ReplyAddress = {
  botAccid: bot,
  scope: "p2p",
  to: "alice",
  askerAccid: "alice",
  replyTo: "9007199254740995",
  replyToClientId: "c0ffee00-0000-4000-8000-000000000001",
  replyToTimestamp: 1_764_000_000_000,
  streamId: "reply-1",
};

/** A TransportState kept in a Map, like the outbox's durable key/value rows. */
class MemoryState implements TransportState {
  readonly values = new Map<string, string>();
  writes = 0;
  get(key: string) {
    return this.values.get(key);
  }
  async set(values: Record<string, string>) {
    this.writes += 1;
    for (const [key, value] of Object.entries(values)) this.values.set(key, value);
  }
}

const offlineTransport = new NativeStreamTransport({
  nim: {
    sendStreamMessageChunk: () => Promise.reject(new Error("encoding tests make no call")),
  },
});

/** What the pipeline would commit for deltas followed by a final, seq by seq. */
function encodeReply(deltas: string[], status: "ok" | "error" = "ok", transport = offlineTransport) {
  const messages: OutboundMessage[] = [];
  let committedText = "";
  for (const delta of deltas) {
    const encoded = transport.encodeSegment(address, {
      seq: messages.length,
      delta,
      committedText,
      previous: messages.at(-1),
    });
    messages.push(...encoded);
    committedText += delta;
  }
  messages.push(
    ...transport.encodeFinal(address, {
      firstSeq: messages.length,
      text: committedText,
      status,
      previous: messages.at(-1),
    }),
  );
  return messages;
}

function chunksOf(messages: OutboundMessage[]) {
  return messages.map((message) => parseChunkBody(message.body)!);
}

describe("encoding", () => {
  it("keeps one stream message with gapless indexes and one finish, the last", () => {
    const messages = encodeReply(["Hel", "lo ", "world"]);
    expect(messages.map((message) => message.seq)).toEqual([0, 1, 2, 3]);
    expect(chunksOf(messages).map(({ message, index, finish }) => [message, index, finish])).toEqual([
      [0, 0, 0],
      [0, 1, 0],
      [0, 2, 0],
      [0, 3, 1],
    ]);
    expect(messages.map((message) => message.delta).join("")).toBe("Hello world");
    expect(messages.at(-1)).toMatchObject({ kind: "final", done: true, delta: "" });
    expect(chunksOf(messages).at(-1)).toMatchObject({ status: "ok", done: true, parts: 1 });
    expect(messages.filter((message) => message.done)).toHaveLength(1);
  });

  it("continues a reply of 7,000 characters in a second stream message, each with one finish", () => {
    const deltas = Array.from({ length: 14 }, (_, index) => String.fromCharCode(97 + index).repeat(500));
    const messages = encodeReply(deltas);
    const chunks = chunksOf(messages);
    const byMessage = new Map<number, typeof chunks>();
    for (const chunk of chunks) byMessage.set(chunk.message, [...(byMessage.get(chunk.message) ?? []), chunk]);
    expect([...byMessage.keys()]).toEqual([0, 1]);
    for (const [, streamChunks] of byMessage) {
      expect(streamChunks.map((chunk) => chunk.index)).toEqual(streamChunks.map((_, index) => index));
      expect(streamChunks.filter((chunk) => chunk.finish === 1)).toEqual([streamChunks.at(-1)]);
    }
    const texts = [...byMessage.values()].map((streamChunks) => streamChunks.map((chunk) => chunk.text).join(""));
    expect(texts.map((text) => text.length)).toEqual([NATIVE_STREAM_TEXT_LIMIT, 2000]);
    expect(texts.join("")).toBe(deltas.join(""));
    expect(chunks.at(-1)).toMatchObject({ parts: 2, done: true });
  });

  it("splits a delta that crosses the limit between grapheme clusters, never inside an emoji", () => {
    const first = "x".repeat(NATIVE_STREAM_TEXT_LIMIT - 1);
    const messages = offlineTransport.encodeSegment(address, { seq: 0, delta: `${first}👍🏽tail`, committedText: "" });
    const chunks = chunksOf(messages);
    // 👍🏽 is four code units: it does not fit the last one, so it opens the next stream message.
    expect(chunks.map(({ message, index, finish, text }) => [message, index, finish, text])).toEqual([
      [0, 0, 1, first],
      [1, 0, 0, "👍🏽tail"],
    ]);
    expect(messages.map((message) => message.kind)).toEqual(["segment", "segment"]);
  });

  it("leaves an exactly full stream message open, so the final adds only an empty finish", () => {
    const messages = encodeReply(["y".repeat(NATIVE_STREAM_TEXT_LIMIT)]);
    expect(chunksOf(messages).map(({ message, index, finish, text }) => [message, index, finish, text.length])).toEqual(
      [
        [0, 0, 0, 5000],
        [0, 1, 1, 0],
      ],
    );
  });

  it("sends the part of the final text the chunks did not carry (an apology after an error)", () => {
    const segment = offlineTransport.encodeSegment(address, { seq: 0, delta: "Partial", committedText: "" });
    const final = offlineTransport.encodeFinal(address, {
      firstSeq: 1,
      text: "Partial [抱歉 / sorry]",
      status: "error",
      previous: segment[0],
    });
    expect(chunksOf(final)).toEqual([expect.objectContaining({ index: 1, finish: 1, text: " [抱歉 / sorry]" })]);
    expect(final[0]).toMatchObject({ delta: " [抱歉 / sorry]", done: true });
  });

  it("encodes nothing for an empty delta, and a keep-alive only while a stream message is open", () => {
    expect(offlineTransport.encodeSegment(address, { seq: 0, delta: "", committedText: "" })).toEqual([]);
    expect(offlineTransport.encodeKeepAlive(address, { seq: 0 })).toBeUndefined();
    const [segment] = offlineTransport.encodeSegment(address, { seq: 0, delta: "Hi", committedText: "" });
    const keepAlive = offlineTransport.encodeKeepAlive(address, { seq: 1, previous: segment });
    expect(keepAlive).toMatchObject({ seq: 1, kind: "segment", delta: "", done: false });
    expect(parseChunkBody(keepAlive!.body)).toMatchObject({ message: 0, index: 1, finish: 0, text: "" });

    expect(keepAliveDue(segment, 1_000, 1_000 + KEEP_ALIVE_INTERVAL_MS - 1)).toBe(false);
    expect(keepAliveDue(segment, 1_000, 1_000 + KEEP_ALIVE_INTERVAL_MS)).toBe(true);
    expect(KEEP_ALIVE_INTERVAL_MS).toBeLessThan(30_000);
    const final = offlineTransport.encodeFinal(address, { firstSeq: 1, text: "Hi", status: "ok", previous: segment });
    expect(keepAliveDue(final[0], 0, 60_000)).toBe(false);
    expect(keepAliveDue(undefined, 0, 60_000)).toBe(false);
  });

  it("asks to be checked often enough that interval plus check stays under NIM's 30 s gap", () => {
    const withInterval = (keepAliveIntervalMs: number) =>
      new NativeStreamTransport({
        nim: { sendStreamMessageChunk: () => Promise.reject(new Error("no call")) },
        keepAliveIntervalMs,
      }).keepAliveCheckMs;
    expect(offlineTransport.keepAliveCheckMs).toBe(5_000);
    expect(withInterval(1_000)).toBe(500);
    expect(withInterval(29_000)).toBe(500);
    expect(withInterval(100)).toBe(50);
    for (const interval of [100, 1_000, 10_000, 20_000, 25_000, 29_000]) {
      expect(interval + withInterval(interval)).toBeLessThan(30_000);
      expect(withInterval(interval)).toBeLessThanOrEqual(interval);
    }
  });

  it("derives conversation ids and a deterministic, UUID-shaped client id", () => {
    expect(conversationIdOf(address)).toBe(`${bot}|1|alice`);
    expect(conversationIdOf({ ...address, scope: "team", to: "6001" })).toBe(`${bot}|2|6001`);
    expect(messageClientIdOf("reply-1", 0)).toBe(messageClientIdOf("reply-1", 0));
    expect(messageClientIdOf("reply-1", 0)).not.toBe(messageClientIdOf("reply-1", 1));
    expect(messageClientIdOf("reply-1", 0)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("bounds citations and keeps only http(s) links", () => {
    const sources = [
      { title: "Guide", url: "https://example.com/guide", time: 1_700_000_000_000 },
      { title: "x".repeat(2_000), url: "javascript:alert(1)", icon: "data:image/png;base64,AAAA" },
      ...Array.from({ length: 30 }, (_, index) => ({ name: `source ${index}` })),
    ];
    const [final] = offlineTransport.encodeFinal(address, { firstSeq: 0, text: "ok", status: "ok", sources });
    const chunk = parseChunkBody(final!.body)!;
    expect(chunk.sources).toHaveLength(20);
    expect(chunk.sources?.[0]).toEqual(sources[0]);
    expect(chunk.sources?.[1]).toEqual({ title: "x".repeat(500) });
  });
});

describe("delivery to the emulator over HTTP", () => {
  let emulator: RunningNimEmulator;
  let now = Date.now();
  let requestBodies: Array<Record<string, unknown>>;
  let requestTexts: string[];

  /** Records every request body the client sends; the emulator answers it for real. */
  const recordingFetch: typeof fetch = (input, init) => {
    requestTexts.push(String(init?.body));
    requestBodies.push(JSON.parse(String(init?.body)) as Record<string, unknown>);
    return fetch(input, init);
  };

  function transport(timeoutMs = 2_000) {
    const nim = createNimV2Client({
      appKey,
      appSecret,
      openApiBase: emulator.v2ApiBase,
      timeoutMs,
      retry: { maxAttempts: 3, deadlineMs: 10_000, baseDelayMs: 1, maxDelayMs: 5 },
      frequencyControlBackoffMs: 5,
      fetch: recordingFetch,
    });
    return new NativeStreamTransport({ nim });
  }

  async function deliverAll(messages: OutboundMessage[], state: MemoryState, sender = transport()) {
    const signal = new AbortController().signal;
    const results = [];
    for (const message of messages) {
      results.push(await sender.deliver(address, message, { state, signal, committedText: "" }));
    }
    return results;
  }

  beforeAll(async () => {
    emulator = await startNimEmulator({
      appKey,
      appSecret,
      // Ids beyond 2^53: a rounded id would point at another stream message.
      firstMessageId: "9007199254740993",
      now: () => now,
      curTimeWindow: { pastSeconds: 3_600, futureSeconds: 3_600 },
    });
  });
  afterAll(async () => {
    await emulator.close();
  });
  beforeEach(() => {
    now = Date.now();
    requestBodies = [];
    requestTexts = [];
    emulator.state.addAccount({ accid: "alice", token: "alice-token", createdAt: now });
    emulator.state.addAccount({ accid: bot, token: "bot-token", createdAt: now });
  });
  afterEach(() => {
    emulator.state.reset();
    emulator.settings.streamMessagesEnabled = true;
  });

  it("streams a reply as one stream message with the status, reply_to and quote visible", async () => {
    const state = new MemoryState();
    const messages = encodeReply(["Hel", "lo ", "world"]);
    const results = await deliverAll(messages, state);
    const [merged] = emulator.state.messagesMatching({ from: bot });
    expect(emulator.state.messagesMatching({ from: bot })).toHaveLength(1);
    expect(merged).toMatchObject({
      msgid: "9007199254740993",
      msgidClient: messageClientIdOf("reply-1", 0),
      to: "alice",
      body: JSON.stringify({ msg: "Hello world" }),
      stream: { status: "complete" },
    });
    expect(results.map((result) => result.nimMessageId)).toEqual(Array(4).fill("9007199254740993"));
    expect(JSON.parse(merged!.ext!)).toEqual({
      kind: "bot_stream",
      mode: "native",
      stream_id: "reply-1",
      reply_to: "9007199254740995",
      part: 1,
      status: "ok",
      done: true,
      parts: 1,
    });
    const stream = emulator.state.streams.get("9007199254740993")!;
    expect(stream.chunks.map((chunk) => [chunk.index, chunk.finish])).toEqual([
      [0, 0],
      [1, 0],
      [2, 0],
      [3, 1],
    ]);
    expect(stream.threadReply).toMatchObject({
      sender_id: "alice",
      receiver_id: bot,
      create_time: address.replyToTimestamp,
      message_client_id: address.replyToClientId,
    });
    // The quoted id beyond 2^53 goes out as a bare number with every digit.
    expect(requestTexts[0]).toContain('"message_server_id":9007199254740995,');
    expect(requestTexts[1]).toContain('"message_server_id":9007199254740993,');
    // Only chunk 0 names the client id; the others carry the server id NIM returned.
    expect(requestBodies.map((body) => Object.keys(body.message as object))).toEqual([
      ["message_type", "message_client_id", "attachment"],
      ["message_type", "message_server_id", "attachment"],
      ["message_type", "message_server_id", "attachment"],
      ["message_type", "message_server_id", "attachment"],
    ]);
  });

  it("with each chunk's in-flight marker stored ahead (with its commit), sends the same chunks and writes only the server id", async () => {
    const sender = transport();
    const state = new MemoryState();
    const signal = new AbortController().signal;
    const writesDuringDelivery: number[] = [];
    for (const message of encodeReply(["Hel", "lo ", "world"])) {
      const prepared = sender.prepareDelivery(address, message, state);
      expect(prepared).toMatchObject({ seq: message.seq, state: { "native.inflight": String(message.seq) } });
      await state.set(prepared!.state); // what the pipeline stores in the chunk's commit
      const before = state.writes;
      await sender.deliver(address, message, { state, signal, committedText: "", prepared: prepared! });
      writesDuringDelivery.push(state.writes - before);
    }
    // Only chunk 0's answer is stored by delivery itself (the stream message's server id).
    expect(writesDuringDelivery).toEqual([1, 0, 0, 0]);
    // Not taken for resends although each chunk's own marker was stored before it went.
    expect(emulator.state.streams.size).toBe(1);
    const [stream] = [...emulator.state.streams.values()];
    expect(stream).toMatchObject({ text: "Hello world", status: "complete" });
    expect(stream!.chunks.map((chunk) => chunk.index)).toEqual([0, 1, 2, 3]);
  });

  it("a preparation made after a refused chunk plans the replacement, as delivery alone would", async () => {
    const sender = transport();
    const state = new MemoryState();
    const signal = new AbortController().signal;
    const [first] = sender.encodeSegment(address, { seq: 0, delta: "Partial ", committedText: "" });
    await sender.deliver(address, first!, { state, signal, committedText: "Partial " });
    const [second] = sender.encodeSegment(address, {
      seq: 1,
      delta: "more",
      committedText: "Partial ",
      previous: first,
    });
    emulator.faults.push({ path: streamMessagePath, kind: "code", code: 500 });
    await expect(
      sender.deliver(address, second!, { state, signal, committedText: "Partial more" }),
    ).rejects.toMatchObject({
      code: 500,
    });
    const [final] = sender.encodeFinal(address, {
      firstSeq: 2,
      text: "Partial more",
      status: "error",
      previous: second,
    });
    const prepared = sender.prepareDelivery(address, final!, state)!;
    expect(prepared.state["native.remaps"]).toBe("1");
    await state.set(prepared.state);
    await sender.deliver(address, final!, { state, signal, committedText: "Partial more", prepared });
    const replacement = [...emulator.state.streams.values()].at(-1)!;
    expect(replacement).toMatchObject({ text: "Partial more", status: "complete" });
    expect(replacement.messageClientId).toBe(messageClientIdOf("reply-1", 1));
  });

  it("delivers 7,000 characters as two stream messages that together carry the whole reply", async () => {
    const deltas = Array.from({ length: 14 }, (_, index) => `${index}`.padEnd(500, "字"));
    await deliverAll(encodeReply(deltas), new MemoryState());
    const merged = emulator.state.messagesMatching({ from: bot });
    expect(merged).toHaveLength(2);
    const texts = merged.map((message) => (JSON.parse(message.body) as { msg: string }).msg);
    expect(texts.map((text) => text.length)).toEqual([5000, 2000]);
    expect(texts.join("")).toBe(deltas.join(""));
    expect(merged.map((message) => message.stream?.status)).toEqual(["complete", "complete"]);
    expect(merged.map((message) => JSON.parse(message.ext!).part)).toEqual([1, 2]);
    expect(JSON.parse(merged[1]!.ext!)).toMatchObject({ status: "ok", done: true, parts: 2 });
  });

  it("keeps a stream alive through a 35 s generator pause with keep-alives, which NIM would end without", async () => {
    const sender = transport();
    const state = new MemoryState();
    const signal = new AbortController().signal;
    const context = { state, signal, committedText: "" };
    const [first] = sender.encodeSegment(address, { seq: 0, delta: "Thinking", committedText: "" });
    await sender.deliver(address, first!, context);
    let lastSentAt = now;
    let previous = first!;
    // The pipeline's idle loop, by the emulator's clock: 35 s of silence in 5 s steps.
    for (let waited = 0; waited < 35_000; waited += 5_000) {
      now += 5_000;
      terminateIdleStreams(emulator.state);
      if (sender.keepAliveDue(previous, lastSentAt, now)) {
        const keepAlive = sender.encodeKeepAlive(address, { seq: previous.seq + 1, previous })!;
        await sender.deliver(address, keepAlive, context);
        previous = keepAlive;
        lastSentAt = now;
      }
    }
    const final = sender.encodeFinal(address, { firstSeq: previous.seq + 1, text: "Thinking", status: "ok", previous });
    await sender.deliver(address, final[0]!, context);
    expect(emulator.state.messagesMatching({ from: bot })).toEqual([
      expect.objectContaining({ body: JSON.stringify({ msg: "Thinking" }), stream: { status: "complete" } }),
    ]);

    // Without keep-alives the same pause ends the stream message, and its next chunk is refused.
    const bare = new MemoryState();
    const [lonely] = sender.encodeSegment(
      { ...address, streamId: "reply-2" },
      { seq: 0, delta: "Alone", committedText: "" },
    );
    await sender.deliver({ ...address, streamId: "reply-2" }, lonely!, { ...context, state: bare });
    now += 35_000;
    const late = sender.encodeFinal(address, { firstSeq: 1, text: "Alone", status: "ok", previous: lonely });
    const error = await sender
      .deliver({ ...address, streamId: "reply-2" }, late[0]!, { ...context, state: bare })
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ kind: "api", code: 189320, retryable: false });
  });

  it("throws the typed refusal when NIM has stream messages switched off, so the pipeline can fall back", async () => {
    emulator.settings.streamMessagesEnabled = false;
    const state = new MemoryState();
    const [first] = encodeReply(["Hi"]);
    const error = await transport()
      .deliver(address, first!, { state, signal: new AbortController().signal, committedText: "" })
      .catch((caught: unknown) => caught);
    expect(isStreamMessageRefusal(error)).toBe(true);
    expect(error).toBeInstanceOf(NimError);
    expect(error).toMatchObject({ code: 403, desc: "stream message not enabled", retryable: false });
    expect(emulator.state.streams.size).toBe(0);
  });

  it("after a crash with a chunk in flight, replaces the stream message and never repeats an index", async () => {
    const messages = encodeReply(["one ", "two ", "three"]);
    const state = new MemoryState();
    const signal = new AbortController().signal;
    await transport().deliver(address, messages[0]!, { state, signal, committedText: "" });
    // Chunk 1 reaches NIM but its answer is lost (held past the client's timeout): then the process dies.
    emulator.faults.push({ path: streamMessagePath, kind: "delay", ms: 1_000, when: "after" });
    const lost = await transport(200)
      .deliver(address, messages[1]!, { state, signal, committedText: "" })
      .catch((caught: unknown) => caught);
    expect(lost).toMatchObject({ kind: "timeout", retryable: false });

    // The restart: a new transport, the same durable state, the committed-but-unconfirmed message
    // resent with its identical body, then the rest.
    const restarted = transport();
    let committedText = "one ";
    for (const message of messages.slice(1)) {
      committedText += message.delta;
      await restarted.deliver(address, message, { state, signal, committedText });
    }

    const streams = [...emulator.state.streams.values()];
    expect(streams).toHaveLength(2);
    // No refusal ever: no index was repeated or skipped at NIM.
    expect(emulator.state.requests.every((request) => request.code === 200 || request.code === undefined)).toBe(true);
    expect(streams[0]).toMatchObject({ text: "one two ", status: "streaming" });
    // The replacement repeats what its stream message already had, so it is complete on its own.
    expect(streams[1]).toMatchObject({
      text: "one two three",
      status: "complete",
      messageClientId: messageClientIdOf("reply-1", 1),
    });
    expect(streams[1]!.chunks.map((chunk) => [chunk.index, chunk.text])).toEqual([
      [0, "one two "],
      [1, "three"],
      [2, ""],
    ]);
    // NIM's gap rule closes the abandoned one with what it got; nothing is lost.
    now += 31_000;
    expect(terminateIdleStreams(emulator.state)).toBe(1);
    expect(emulator.state.messagesMatching({ from: bot }).map((message) => message.body)).toEqual([
      JSON.stringify({ msg: "one two three" }),
      JSON.stringify({ msg: "one two " }),
    ]);
  });

  it("after a chunk NIM refused, the error final goes into a replacement that holds the whole text", async () => {
    const sender = transport();
    const state = new MemoryState();
    const signal = new AbortController().signal;
    const segments = [...sender.encodeSegment(address, { seq: 0, delta: "Partial ", committedText: "" })];
    segments.push(
      ...sender.encodeSegment(address, { seq: 1, delta: "more", committedText: "Partial ", previous: segments[0] }),
    );
    await sender.deliver(address, segments[0]!, { state, signal, committedText: "Partial " });
    emulator.faults.push({ path: streamMessagePath, kind: "code", code: 500 });
    await expect(
      sender.deliver(address, segments[1]!, { state, signal, committedText: "Partial more" }),
    ).rejects.toMatchObject({
      code: 500,
    });
    const final = sender.encodeFinal(address, {
      firstSeq: 2,
      text: "Partial more",
      status: "error",
      previous: segments[1],
    });
    await sender.deliver(address, final[0]!, { state, signal, committedText: "Partial more" });
    const replacement = [...emulator.state.streams.values()].at(-1)!;
    expect(replacement).toMatchObject({ text: "Partial more", status: "complete" });
    expect(JSON.parse(emulator.state.messages.at(-1)!.ext!)).toMatchObject({ status: "error", done: true });
  });

  it("a resent chunk 0 whose answer was lost opens a stream message with a new client id", async () => {
    const messages = encodeReply(["alpha"]);
    const state = new MemoryState();
    const signal = new AbortController().signal;
    emulator.faults.push({ path: streamMessagePath, kind: "delay", ms: 1_000, when: "after" });
    await transport(200)
      .deliver(address, messages[0]!, { state, signal, committedText: "" })
      .catch(() => undefined);
    for (const message of messages) await transport().deliver(address, message, { state, signal, committedText: "" });
    const clientIds = [...emulator.state.streams.values()].map((stream) => stream.messageClientId);
    expect(clientIds).toEqual([messageClientIdOf("reply-1", 0), messageClientIdOf("reply-1", 1)]);
    expect(emulator.state.messagesMatching({ from: bot })).toEqual([
      expect.objectContaining({ body: JSON.stringify({ msg: "alpha" }), stream: { status: "complete" } }),
    ]);
  });

  it("streams into a team conversation (bot|2|tid) and mentions the asker", async () => {
    emulator.state.addAccount({ accid: "bob", token: "bob-token", createdAt: now });
    emulator.state.addTeam({ tid: "6001", owner: "bob", members: ["alice", bot] });
    const teamAddress: ReplyAddress = { ...address, scope: "team", to: "6001" };
    const sender = transport();
    const state = new MemoryState();
    const signal = new AbortController().signal;
    const messages = [...sender.encodeSegment(teamAddress, { seq: 0, delta: "Team answer", committedText: "" })];
    messages.push(
      ...sender.encodeFinal(teamAddress, { firstSeq: 1, text: "Team answer", status: "ok", previous: messages[0] }),
    );
    for (const message of messages) await sender.deliver(teamAddress, message, { state, signal, committedText: "" });
    const [merged] = emulator.state.messagesMatching({ from: bot });
    expect(merged).toMatchObject({ ope: 1, to: "6001", body: JSON.stringify({ msg: "Team answer" }) });
    expect(JSON.parse(merged!.ext!)).toMatchObject({ status: "ok", yxAitMsg: { alice: {} } });
    expect(requestBodies[0]).toMatchObject({
      push_config: { push_forcepush_enable: true, push_forcepush_ids: ["alice"] },
      thread_config: { thread_reply: { sender_id: "alice", receiver_id: "6001" } },
    });
  });

  it("sends citations as rag_info_list on the last chunk", async () => {
    const sender = transport();
    const state = new MemoryState();
    const signal = new AbortController().signal;
    const sources = [{ title: "Guide", url: "https://example.com/guide" }];
    const final = sender.encodeFinal(address, { firstSeq: 0, text: "See the guide.", status: "ok", sources });
    await sender.deliver(address, final[0]!, { state, signal, committedText: "" });
    expect(requestBodies[0]?.rag_info_list).toEqual(sources);
    expect(emulator.state.messages[0]?.stream?.ragInfoList).toEqual(sources);
  });

  it("starts no NIM call once the reply's signal fired", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stopped"));
    const [first] = encodeReply(["Hi"]);
    await expect(
      transport().deliver(address, first!, { state: new MemoryState(), signal: controller.signal, committedText: "" }),
    ).rejects.toThrow("stopped");
    expect(requestBodies).toHaveLength(0);
  });
});
