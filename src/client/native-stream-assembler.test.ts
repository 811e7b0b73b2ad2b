/**
 * NativeStreamAssembler and the SDK wiring: unit cases on V2NIMMessage-shaped objects, then the
 * whole path over real sockets: the native transport streams into the emulator, whose gateway
 * pushes stream frames and the merged message to a logged-in client, which assembles the reply.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { type Frame, GatewayTestClient } from "../emulator/test-clients.ts";
import { createNimV2Client } from "../nim/v2-client.ts";
import { NativeStreamTransport } from "../reply/transport/native.ts";
import type { OutboundMessage, ReplyAddress, TransportState } from "../reply/transport/types.ts";
import { fromNimV9Message, fromNimV10Message } from "./adapters.ts";
import { type NimV9MessageBatchFixture, v9CustomMessage } from "./fixtures/nim-v9-message.ts";
import { NativeStreamAssembler, NIM_STREAM_STATUS } from "./native-stream-assembler.ts";
import type { ReplyState } from "./stream-assembler.ts";
import { StreamAssembler } from "./stream-assembler.ts";
import { connectNimV10, fromEmulatorStreamFrame, NimApiVersionError, nimV9Handlers } from "./wiring.ts";

const bot = "advisor_bot";

function extension(fields: Record<string, unknown>) {
  return JSON.stringify({ kind: "bot_stream", mode: "native", stream_id: "s1", reply_to: "42", ...fields });
}

function streamMessage(clientId: string, text: string, status: number | undefined, ext: string, sender = bot) {
  return {
    messageClientId: clientId,
    messageServerId: "1",
    senderId: sender,
    messageType: 0,
    text,
    serverExtension: ext,
    ...(status === undefined ? {} : { streamConfig: { status } }),
  };
}

describe("NativeStreamAssembler", () => {
  it("streams the text so far, then ends with the status from im-bridge's last chunk", () => {
    const replies = new NativeStreamAssembler({ botAccounts: [bot], now: () => 5 });
    const seen: ReplyState[] = [];
    replies.onChange((reply) => seen.push(reply));
    replies.accept(streamMessage("c1", "", NIM_STREAM_STATUS.placeholder, extension({ part: 1, status: "streaming" })));
    replies.accept(streamMessage("c1", "Hel", NIM_STREAM_STATUS.update, extension({ part: 1, status: "streaming" })));
    // A late, shorter frame changes nothing.
    replies.accept(streamMessage("c1", "H", NIM_STREAM_STATUS.update, extension({ part: 1, status: "streaming" })));
    const final = extension({ part: 1, status: "blocked", done: true, parts: 1 });
    replies.accept(streamMessage("c1", "Hello", NIM_STREAM_STATUS.complete, final));
    expect(seen.map((reply) => [reply.text, reply.status, reply.done])).toEqual([
      ["Hel", "streaming", false],
      ["Hello", "blocked", true],
    ]);
    expect(seen.at(-1)).toMatchObject({ streamId: "s1", replyTo: "42", updatedAt: 5 });
    // Done is final.
    replies.accept(streamMessage("c1", "changed", NIM_STREAM_STATUS.update, final));
    expect(replies.get("s1")?.text).toBe("Hello");
  });

  it("joins a reply over two stream messages in part order, even when part 2 arrives first", () => {
    const replies = new NativeStreamAssembler();
    replies.accept(streamMessage("c2", "world", undefined, extension({ part: 2, status: "ok", done: true, parts: 2 })));
    expect(replies.get("s1")).toMatchObject({ done: false });
    replies.accept(streamMessage("c1", "Hello ", undefined, extension({ part: 1, status: "streaming" })));
    expect(replies.get("s1")).toMatchObject({ text: "Hello world", status: "ok", done: true });
  });

  it("after a bridge restart shows the continuation, not the stream message NIM ended", () => {
    const replies = new NativeStreamAssembler();
    replies.accept(streamMessage("old", "one two ", NIM_STREAM_STATUS.update, extension({ part: 1 })));
    replies.accept(streamMessage("new", "two ", NIM_STREAM_STATUS.update, extension({ part: 1 })));
    // NIM's gap rule ends the abandoned one later; the live continuation still wins.
    replies.accept(streamMessage("old", "one two ", NIM_STREAM_STATUS.exception, extension({ part: 1 })));
    expect(replies.get("s1")).toMatchObject({ text: "two ", done: false });
    replies.accept(
      streamMessage(
        "new",
        "two three",
        NIM_STREAM_STATUS.complete,
        extension({ part: 1, status: "ok", done: true, parts: 1 }),
      ),
    );
    expect(replies.get("s1")).toMatchObject({ text: "two three", status: "ok", done: true });
  });

  it("ends a reply NIM terminated without im-bridge's last chunk as an error, open to a continuation", () => {
    const replies = new NativeStreamAssembler();
    replies.accept(streamMessage("c1", "partial", NIM_STREAM_STATUS.exception, extension({ part: 1 })));
    expect(replies.get("s1")).toMatchObject({ text: "partial", status: "error", done: true });
    replies.accept(
      streamMessage(
        "c2",
        "partial, continued",
        NIM_STREAM_STATUS.complete,
        extension({ part: 1, done: true, status: "ok", parts: 1 }),
      ),
    );
    expect(replies.get("s1")).toMatchObject({ text: "partial, continued", status: "ok", done: true });
  });

  it("drops stream messages from senders outside botAccounts, and ignores other messages", () => {
    const replies = new NativeStreamAssembler({ botAccounts: ["ADVISOR_BOT"] });
    expect(replies.accept(streamMessage("c1", "fake", undefined, extension({ part: 1 }), "mallory"))).toBeUndefined();
    expect(replies.accept({ messageType: 0, text: "plain", senderId: bot, messageClientId: "x" })).toBeUndefined();
    expect(replies.accept(null)).toBeUndefined();
    expect(replies.accept(streamMessage("c1", "real", undefined, extension({ part: 1 })))).toBeDefined();
  });

  it("shows another NIM bot's stream message (no im-bridge extension) as a reply of its own", () => {
    const replies = new NativeStreamAssembler();
    const state = replies.accept({
      ...streamMessage("ai-1", "AI says", NIM_STREAM_STATUS.complete, ""),
      serverExtension: undefined,
    });
    expect(state).toMatchObject({ streamId: "nim:ai-1", text: "AI says", status: "ok", done: true });
  });
});

describe("custom adapters: senders and attachment.raw", () => {
  const body = { kind: "bot_stream", stream_id: "s1", reply_to: "1", seq: 0, delta: "Hi", done: false };

  it("drops bot_stream bodies from anyone but the bot accounts (v10, v9)", () => {
    const v10 = { messageType: 100, senderId: "mallory", attachment: { raw: JSON.stringify(body) } };
    expect(fromNimV10Message(v10)).toEqual(body);
    expect(fromNimV10Message(v10, { botAccounts: [bot] })).toBeUndefined();
    expect(fromNimV10Message({ ...v10, senderId: "Advisor_Bot" }, { botAccounts: [bot] })).toEqual(body);
    expect(
      fromNimV9Message(v9CustomMessage(JSON.stringify(body), { from: "mallory" }), { botAccounts: [bot] }),
    ).toBeUndefined();
    expect(fromNimV9Message(v9CustomMessage(JSON.stringify(body)), { botAccounts: [bot] })).toEqual(body);
  });

  it("reads attachment.raw first, whatever an app's own attachment parser put beside it", () => {
    const parsed = {
      messageType: 100,
      senderId: bot,
      attachment: { raw: JSON.stringify(body), kind: "app-card", id: 7 },
    };
    expect(fromNimV10Message(parsed)).toEqual(body);
  });
});

describe("wiring", () => {
  it("connectNimV10 routes custom and native replies and unsubscribes", () => {
    const listeners = new Map<string, (messages: unknown[]) => void>();
    const service = {
      on: (event: string, listener: (messages: unknown[]) => void) => listeners.set(event, listener),
      off: (event: string) => listeners.delete(event),
    };
    const custom = new StreamAssembler();
    const native = new NativeStreamAssembler();
    const others: unknown[] = [];
    const stop = connectNimV10(
      { options: { apiVersion: "v2" }, V2NIMMessageService: service },
      { custom, native, botAccounts: [bot], onOtherMessage: (message) => others.push(message) },
    );
    const body = { kind: "bot_stream", stream_id: "c", reply_to: "1", seq: 0, delta: "Hi", done: false };
    listeners.get("onReceiveMessages")?.([
      { messageType: 100, senderId: bot, attachment: { raw: JSON.stringify(body) } },
      streamMessage("n1", "", NIM_STREAM_STATUS.placeholder, extension({ part: 1 })),
      { messageType: 0, senderId: "alice", text: "hello" },
    ]);
    listeners.get("onReceiveMessagesModified")?.([
      streamMessage("n1", "Native", NIM_STREAM_STATUS.update, extension({ part: 1 })),
    ]);
    expect(custom.get("c")?.text).toBe("Hi");
    expect(native.get("s1")?.text).toBe("Native");
    expect(others).toEqual([{ messageType: 0, senderId: "alice", text: "hello" }]);
    stop();
    expect(listeners.size).toBe(0);
  });

  it("connectNimV10 names the fix when the instance is in v1 mode", () => {
    const service = { on: () => undefined, off: () => undefined };
    expect(() => connectNimV10({ options: { apiVersion: "v1" }, V2NIMMessageService: service }, {})).toThrow(
      NimApiVersionError,
    );
    expect(() => connectNimV10({ V2NIMMessageService: service }, {})).toThrow(/apiVersion: "v2".*v1 \(the default\)/);
  });

  it("nimV9Handlers takes online, offline and roaming messages", () => {
    const assembler = new StreamAssembler();
    const handlers = nimV9Handlers({ assembler, botAccounts: [bot] });
    const segment = (seq: number, delta: string) =>
      v9CustomMessage(JSON.stringify({ kind: "bot_stream", stream_id: "v9", reply_to: "1", seq, delta, done: false }));
    const batch = (msgs: ReturnType<typeof segment>[]): NimV9MessageBatchFixture => ({
      sessionId: "p2p-advisor_bot",
      scene: "p2p",
      to: bot,
      msgs,
    });
    handlers.onofflinemsgs(batch([segment(0, "a")]));
    handlers.onroamingmsgs(batch([segment(1, "b")]));
    handlers.onmsg(segment(2, "c"));
    expect(assembler.get("v9")?.text).toBe("abc");
  });
});

describe("native replies through the emulator's gateway", () => {
  let emulator: RunningNimEmulator;
  beforeAll(async () => {
    emulator = await startNimEmulator({ appKey: "k", appSecret: "s", firstMessageId: "9007199254740993" });
  });
  afterAll(async () => {
    await emulator.close();
  });

  it("assembles the live frames and the merged messages of a two-part reply into the bridge's text", async () => {
    emulator.state.addAccount({ accid: "alice", token: "alice-token", createdAt: Date.now() });
    emulator.state.addAccount({ accid: bot, token: "t", createdAt: Date.now() });
    const alice = await GatewayTestClient.loggedIn(emulator.gatewayUrl, "alice", "alice-token");
    const replies = new NativeStreamAssembler({ botAccounts: [bot] });
    const streamed: string[] = [];
    replies.onChange((reply) => streamed.push(reply.text));
    alice.socket.on("message", (data) => {
      const message = fromEmulatorStreamFrame(data.toString());
      if (message) replies.accept(message);
    });

    const transport = new NativeStreamTransport({
      nim: createNimV2Client({
        appKey: "k",
        appSecret: "s",
        openApiBase: emulator.v2ApiBase,
        timeoutMs: 2_000,
        retry: { maxAttempts: 1, deadlineMs: 5_000 },
      }),
    });
    const address: ReplyAddress = {
      botAccid: bot,
      scope: "p2p",
      to: "alice",
      askerAccid: "alice",
      replyTo: "7",
      streamId: "gw-1",
    };
    const values = new Map<string, string>();
    const state: TransportState = {
      get: (key) => values.get(key),
      set: async (entries) => {
        for (const [key, value] of Object.entries(entries)) values.set(key, value);
      },
    };
    const deltas = ["第一部分".repeat(1000), "second ".repeat(300)];
    const messages: OutboundMessage[] = [];
    let committed = "";
    for (const delta of deltas) {
      messages.push(
        ...transport.encodeSegment(address, {
          seq: messages.length,
          delta,
          committedText: committed,
          previous: messages.at(-1),
        }),
      );
      committed += delta;
    }
    messages.push(
      ...transport.encodeFinal(address, {
        firstSeq: messages.length,
        text: committed,
        status: "ok",
        previous: messages.at(-1),
      }),
    );
    const signal = new AbortController().signal;
    for (const message of messages) await transport.deliver(address, message, { state, signal, committedText: "" });

    const isMerged = (frame: Frame) => frame.type === "message";
    await alice.take(isMerged);
    await alice.take(isMerged);
    await expect.poll(() => replies.get("gw-1")?.done).toBe(true);
    expect(replies.get("gw-1")).toMatchObject({ text: committed, status: "ok", replyTo: "7" });
    expect(streamed.length).toBeGreaterThan(1);
    await alice.close();
  });
});
