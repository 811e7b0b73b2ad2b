/**
 * The v2 stream-message endpoint (nim-protocol §5.1) over real HTTP, with a gateway client as the
 * receiving user: chunk order, the 5000-character and chunk-gap terminations, the merge into one
 * stored message, and authentication.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type RunningNimEmulator, startNimEmulator, streamMessagePath, terminateIdleStreams } from "./index.ts";
import { type Frame, GatewayTestClient, signedPost } from "./test-clients.ts";

const appKey = "v2-test-key";
const appSecret = "v2-test-secret";
const bot = "advisor_bot";

let emulator: RunningNimEmulator;
const clients: GatewayTestClient[] = [];

beforeAll(async () => {
  emulator = await startNimEmulator({ appKey, appSecret });
});
afterAll(async () => {
  await emulator.close();
});
beforeEach(() => {
  emulator.state.addAccount({ accid: "alice", token: "alice-token", createdAt: Date.now() });
  emulator.state.addAccount({ accid: bot, token: "bot-token", createdAt: Date.now() });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  emulator.state.reset();
  emulator.settings.streamChunkTimeoutMs = 30_000;
  emulator.settings.streamTextLimit = 5000;
  emulator.settings.streamMessagesEnabled = true;
  emulator.settings.teamStreamFramesToAllMembers = false;
});

function streamUrl(conversationId = `${bot}|1|alice`, target = emulator) {
  return `${target.v2ApiBase}/im/v2/conversations/${encodeURIComponent(conversationId)}/messages/actions/stream_message`;
}

interface Chunk {
  text: string;
  index: number;
  finish?: 0 | 1;
  messageServerId?: string;
  messageClientId?: string;
}

async function postChunk(
  chunk: Chunk,
  options: { conversationId?: string; checkSum?: string; extra?: Record<string, unknown> } = {},
) {
  const message: Record<string, unknown> = {
    message_type: 0,
    attachment: { text: chunk.text, index: chunk.index, finish: chunk.finish ?? 0 },
  };
  if (chunk.messageClientId !== undefined) message.message_client_id = chunk.messageClientId;
  // The Java SDK types message_server_id as a Long: a bare JSON number.
  if (chunk.messageServerId !== undefined) message.message_server_id = Number(chunk.messageServerId);
  return signedPost(
    streamUrl(options.conversationId),
    { json: { message, ...options.extra } },
    { appKey, appSecret, checkSum: options.checkSum },
  );
}

function serverIdOf(result: { json: Record<string, unknown> | undefined }): string {
  const data = result.json?.data as { message_server_id: number } | undefined;
  return String(data?.message_server_id);
}

async function aliceOnline(): Promise<GatewayTestClient> {
  const alice = await GatewayTestClient.loggedIn(emulator.gatewayUrl, "alice", "alice-token");
  clients.push(alice);
  await alice.take((frame) => frame.type === "offline");
  return alice;
}

const isStream = (frame: Frame) => frame.type === "stream";
const isMessage = (frame: Frame) => frame.type === "message";

describe("stream_message", () => {
  it("accepts chunks in order, pushes accumulated text live and delivers the merged message on finish", async () => {
    const alice = await aliceOnline();
    const first = await postChunk({ text: "Hel", index: 0, messageClientId: "stream-client-1" });
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({
      code: 200,
      msg: "success",
      data: {
        message_client_id: "stream-client-1",
        sender_id: bot,
        conversation_type: 1,
        receiver_id: "alice",
        message_type: 0,
        attachment: { text: "Hel", index: 0, finish: 0 },
      },
    });
    // A Java Long: written as a bare JSON number, not a string.
    expect(first.text).toMatch(/"message_server_id":\d+/);
    const serverId = serverIdOf(first);
    const createTime = (first.json?.data as { create_time: number } | undefined)?.create_time;
    expect(typeof createTime).toBe("number");

    expect((await alice.take(isStream)).message).toEqual({
      message_server_id: serverId,
      message_client_id: "stream-client-1",
      from: bot,
      to: "alice",
      text: "Hel",
      delta: "Hel",
      index: 0,
      finish: 0,
      create_time: createTime,
    });

    const second = await postChunk({ text: "lo ", index: 1, messageServerId: serverId });
    expect(second.json).toMatchObject({ code: 200, data: { attachment: { text: "lo ", index: 1, finish: 0 } } });
    expect(serverIdOf(second)).toBe(serverId);
    expect((await alice.take(isStream)).message).toMatchObject({ text: "Hello ", delta: "lo ", index: 1 });

    const last = await postChunk({ text: "world", index: 2, finish: 1, messageServerId: serverId });
    expect(last.json).toMatchObject({ code: 200, data: { attachment: { text: "world", index: 2, finish: 1 } } });
    const merged = await alice.take(isMessage);
    expect(merged.message).toMatchObject({
      msgid: serverId,
      msgidClient: "stream-client-1",
      from: bot,
      to: "alice",
      type: 0,
      body: JSON.stringify({ msg: "Hello world" }),
      stream: { status: "complete" },
      option: { persistent: true },
    });
    // The final chunk is not pushed as a stream frame: the merged message replaces the bubble.
    expect(await alice.collect(isStream, 50)).toEqual([]);
    expect(emulator.state.streams.get(serverId)).toMatchObject({
      status: "complete",
      text: "Hello world",
      nextIndex: 3,
    });

    const after = await postChunk({ text: "!", index: 3, messageServerId: serverId });
    expect(after.json).toMatchObject({ code: 189319, msg: "stream message already finished" });
    expect(emulator.state.requests.map((request) => request.path)).toEqual(Array(4).fill(streamMessagePath));
  });

  it("accepts the conversation id with a raw '|' as the Java SDK sends it", async () => {
    const url = `${emulator.v2ApiBase}/im/v2/conversations/${bot}|1|alice/messages/actions/stream_message`;
    const nonce = "raw-pipe-nonce";
    const curTime = String(Math.floor(Date.now() / 1000));
    const { apiCheckSum } = await import("../nim/checksum.ts");
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "Content-Type": "application/json;charset=utf-8",
        AppKey: appKey,
        Nonce: nonce,
        CurTime: curTime,
        CheckSum: apiCheckSum(appSecret, nonce, curTime),
      },
      body: JSON.stringify({ message: { message_type: 0, attachment: { text: "x", index: 0, finish: 1 } } }),
    });
    expect(await response.json()).toMatchObject({ code: 200, data: { receiver_id: "alice" } });
  });

  it("refuses an out-of-order index without ending the stream", async () => {
    const first = await postChunk({ text: "a", index: 0 });
    const serverId = serverIdOf(first);
    const skipped = await postChunk({ text: "c", index: 2, messageServerId: serverId });
    expect(skipped.json).toMatchObject({ code: 414, msg: "chunk index out of order: expected 1, got 2" });
    const repeated = await postChunk({ text: "a", index: 0, messageServerId: serverId });
    expect(repeated.json?.code).toBe(414);
    const missingId = await postChunk({ text: "b", index: 1 });
    expect(missingId.json).toMatchObject({ code: 414, msg: "message_server_id is required after the first chunk" });

    expect((await postChunk({ text: "b", index: 1, finish: 1, messageServerId: serverId })).json?.code).toBe(200);
    expect(emulator.state.streams.get(serverId)?.text).toBe("ab");
  });

  it("terminates a stream whose text passes 5000 characters and merges what it had", async () => {
    const alice = await aliceOnline();
    const first = await postChunk({ text: "a".repeat(3000), index: 0 });
    const serverId = serverIdOf(first);
    await alice.take(isStream);

    const overflow = await postChunk({ text: "b".repeat(2001), index: 1, messageServerId: serverId });
    expect(overflow.json).toMatchObject({ code: 189320, msg: "stream message too long: terminated" });
    const merged = await alice.take(isMessage);
    expect(merged.message).toMatchObject({
      msgid: serverId,
      body: JSON.stringify({ msg: "a".repeat(3000) }),
      stream: { status: "terminated", reason: "too-long" },
    });

    const later = await postChunk({ text: "b", index: 1, messageServerId: serverId });
    expect(later.json).toMatchObject({ code: 189320, msg: "stream message already terminated (too-long)" });
  });

  it("accepts exactly 5000 characters in total", async () => {
    const serverId = serverIdOf(await postChunk({ text: "a".repeat(4000), index: 0 }));
    const last = await postChunk({ text: "b".repeat(1000), index: 1, finish: 1, messageServerId: serverId });
    expect(last.json?.code).toBe(200);
  });

  it("terminates a stream after the chunk gap (streamChunkTimeoutMs) and refuses later chunks", async () => {
    emulator.settings.streamChunkTimeoutMs = 100;
    const alice = await aliceOnline();
    const serverId = serverIdOf(await postChunk({ text: "partial", index: 0 }));
    await alice.take(isStream);

    // The timer ends the stream without any further request, and the merged message is delivered.
    const merged = await alice.take(isMessage, 2_000);
    expect(merged.message).toMatchObject({
      msgid: serverId,
      body: JSON.stringify({ msg: "partial" }),
      stream: { status: "terminated", reason: "timeout" },
    });
    const late = await postChunk({ text: " more", index: 1, messageServerId: serverId });
    expect(late.json).toMatchObject({ code: 189320, msg: "stream message already terminated (timeout)" });
    expect(emulator.state.messagesMatching({ from: bot })).toHaveLength(1);
  });

  it("queues only the merged message for a user who is offline", async () => {
    const serverId = serverIdOf(await postChunk({ text: "one ", index: 0 }));
    await postChunk({ text: "two", index: 1, finish: 1, messageServerId: serverId });
    const alice = await GatewayTestClient.connect(emulator.gatewayUrl);
    clients.push(alice);
    await alice.login("alice", "alice-token");
    const offline = await alice.take((frame) => frame.type === "offline");
    expect(offline.messages).toEqual([
      expect.objectContaining({ msgid: serverId, body: JSON.stringify({ msg: "one two" }) }),
    ]);
  });

  it("answers 414 to a bad CheckSum and to an unknown AppKey, and processes nothing", async () => {
    const badChecksum = await postChunk({ text: "x", index: 0 }, { checkSum: "0".repeat(40) });
    expect(badChecksum.status).toBe(200);
    expect(badChecksum.json).toEqual({ code: 414, msg: "checksum" });
    const badKey = await signedPost(
      streamUrl(),
      { json: { message: { attachment: { text: "x", index: 0 } } } },
      { appKey: "other", appSecret },
    );
    expect(badKey.json).toEqual({ code: 414, msg: "appkey" });
    expect(emulator.state.streams.size).toBe(0);
  });

  it("refuses malformed requests with 414", async () => {
    expect((await postChunk({ text: "x", index: 0 }, { conversationId: `${bot}|2|team1` })).json).toEqual({
      code: 108404,
      msg: "team not exists",
    });
    expect((await postChunk({ text: "x", index: 0 }, { conversationId: `${bot}|1|ghost` })).json).toEqual({
      code: 102404,
      msg: "receiver not exists",
    });
    expect((await postChunk({ text: "x", index: 0 }, { conversationId: `${bot}|3|team1` })).json?.code).toBe(414);
    const noAttachment = await signedPost(
      streamUrl(),
      { json: { message: { message_type: 0 } } },
      { appKey, appSecret },
    );
    expect(noAttachment.json?.code).toBe(414);
    const notJson = await signedPost(streamUrl(), { jsonText: "{not json" }, { appKey, appSecret });
    expect(notJson.json?.code).toBe(414);
  });

  it("applies queued faults to the stream path (an answer lost after the chunk was accepted)", async () => {
    const serverId = serverIdOf(await postChunk({ text: "a", index: 0 }));
    emulator.faults.push({ path: streamMessagePath, kind: "code", code: 500, when: "after" });
    expect((await postChunk({ text: "b", index: 1, messageServerId: serverId })).json).toEqual({
      code: 500,
      msg: "server error",
    });
    // The chunk was applied: a blind retry of index 1 is now out of order.
    expect((await postChunk({ text: "b", index: 1, messageServerId: serverId })).json?.code).toBe(414);
    expect(emulator.state.streams.get(serverId)?.text).toBe("ab");
  });
});

describe("NIM's switches, teams and the injected clock", () => {
  it("answers 403 'stream message not enabled' while the app lacks the feature, creating nothing", async () => {
    emulator.settings.streamMessagesEnabled = false;
    const refused = await postChunk({ text: "x", index: 0 });
    expect(refused.json).toEqual({ code: 403, msg: "stream message not enabled" });
    expect(emulator.state.streams.size).toBe(0);
  });

  it("streams into a team: frames to the sender's sessions only, the merged message to every member", async () => {
    emulator.state.addAccount({ accid: "bob", token: "bob-token", createdAt: Date.now() });
    emulator.state.addTeam({ tid: "6001", owner: "alice", members: ["bob", bot] });
    const alice = await aliceOnline();
    const botSession = await GatewayTestClient.loggedIn(emulator.gatewayUrl, bot, "bot-token");
    clients.push(botSession);
    const conversationId = `${bot}|2|6001`;
    const first = await postChunk({ text: "team ", index: 0 }, { conversationId });
    expect(first.json).toMatchObject({ code: 200, data: { conversation_type: 2, receiver_id: "6001" } });
    const serverId = serverIdOf(first);
    expect((await botSession.take(isStream)).message).toMatchObject({ scope: "team", to: "6001", text: "team " });
    await postChunk({ text: "answer", index: 1, finish: 1, messageServerId: serverId }, { conversationId });
    const merged = await alice.take(isMessage);
    expect(merged.message).toMatchObject({ msgid: serverId, ope: 1, to: "6001", body: '{"msg":"team answer"}' });
    // Alice (a member, not the sender) never saw a live frame: NIM's default for teams.
    expect(alice.frames.filter(isStream)).toEqual([]);

    emulator.settings.teamStreamFramesToAllMembers = true;
    await postChunk({ text: "live", index: 0 }, { conversationId });
    expect((await alice.take(isStream)).message).toMatchObject({ scope: "team", text: "live" });
  });

  it("refuses a team sender who is not a member with 109404", async () => {
    emulator.state.addTeam({ tid: "6002", owner: "alice", members: [] });
    const refused = await postChunk({ text: "x", index: 0 }, { conversationId: `${bot}|2|6002` });
    expect(refused.json).toEqual({ code: 109404, msg: "sender not in team" });
  });

  it("keeps extension, citations and the quoted message, and puts them on the merged message", async () => {
    const extension = JSON.stringify({ kind: "bot_stream", stream_id: "s1" });
    const citations = [{ name: "docs", title: "Guide", url: "https://example.com/guide" }];
    const first = await postChunk(
      { text: "a", index: 0 },
      { extra: { extension, thread_config: { thread_reply: { message_server_id: 42, sender_id: "alice" } } } },
    );
    const serverId = serverIdOf(first);
    expect(emulator.state.streams.get(serverId)?.threadReply).toMatchObject({ sender_id: "alice" });
    const finalExtension = JSON.stringify({ kind: "bot_stream", stream_id: "s1", status: "ok" });
    await postChunk(
      { text: "b", index: 1, finish: 1, messageServerId: serverId },
      { extra: { extension: finalExtension, rag_info_list: citations } },
    );
    expect(emulator.state.messages[0]).toMatchObject({
      ext: finalExtension,
      stream: { status: "complete", ragInfoList: citations },
    });
  });
});

describe("the gap rule under an injected clock", () => {
  it("terminates by the emulator's clock, on the next chunk or by terminateIdleStreams", async () => {
    // Starts at the real time (CurTime is checked against this clock) and then only moves by hand.
    let now = Date.now();
    const clocked = await startNimEmulator({
      appKey,
      appSecret,
      now: () => now,
      curTimeWindow: { pastSeconds: 3_600, futureSeconds: 300 },
    });
    try {
      clocked.state.addAccount({ accid: "alice", token: "t", createdAt: now });
      clocked.state.addAccount({ accid: bot, token: "t", createdAt: now });
      const post = (jsonText: string) => signedPost(streamUrl(undefined, clocked), { jsonText }, { appKey, appSecret });
      const first = await post('{"message":{"attachment":{"text":"a","index":0,"finish":0}}}');
      const id = serverIdOf(first);
      now += 29_000;
      const within = await post(`{"message":{"message_server_id":${id},"attachment":{"text":"b","index":1}}}`);
      expect(within.json?.code).toBe(200);
      now += 30_001;
      const late = await post(`{"message":{"message_server_id":${id},"attachment":{"text":"c","index":2}}}`);
      expect(late.json).toMatchObject({ code: 189320 });
      expect(clocked.state.messages[0]).toMatchObject({ body: '{"msg":"ab"}', stream: { reason: "timeout" } });

      const second = await post('{"message":{"attachment":{"text":"x","index":0,"finish":0}}}');
      expect(second.json?.code).toBe(200);
      expect(terminateIdleStreams(clocked.state)).toBe(0);
      now += 30_001;
      expect(terminateIdleStreams(clocked.state)).toBe(1);
      expect(clocked.state.messages).toHaveLength(2);
    } finally {
      await clocked.close();
    }
  });
});

describe("64-bit message_server_id", () => {
  it("reads a message_server_id beyond 2^53 exactly from the raw JSON", async () => {
    const big = await startNimEmulator({ appKey, appSecret, firstMessageId: "9007199254740993" });
    try {
      big.state.addAccount({ accid: "alice", token: "t", createdAt: Date.now() });
      big.state.addAccount({ accid: bot, token: "t", createdAt: Date.now() });
      const first = await signedPost(
        streamUrl(undefined, big),
        { json: { message: { attachment: { text: "a", index: 0 } } } },
        { appKey, appSecret },
      );
      expect(first.text).toContain('"message_server_id":9007199254740993');
      const jsonText = `{"message":{"message_type":0,"message_server_id":9007199254740993,"attachment":{"text":"b","index":1,"finish":1}}}`;
      const second = await signedPost(streamUrl(undefined, big), { jsonText }, { appKey, appSecret });
      expect(second.json?.code).toBe(200);
      expect(big.state.messages[0]).toMatchObject({ msgid: "9007199254740993", body: JSON.stringify({ msg: "ab" }) });
    } finally {
      await big.close();
    }
  });
});
