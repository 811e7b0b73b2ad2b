import { describe, expect, it } from "vitest";
import { fromEmulatorMessage, fromNimV9Message, fromNimV10Message } from "./adapters.ts";
import type { BotStreamBody } from "./bot-stream-body.ts";
import { StreamAssembler } from "./stream-assembler.ts";

const segment: BotStreamBody = {
  kind: "bot_stream",
  stream_id: "stream-1",
  reply_to: "900001",
  seq: 0,
  delta: "你好",
  done: false,
};
const final: BotStreamBody = {
  kind: "bot_stream",
  stream_id: "stream-1",
  reply_to: "900001",
  seq: 1,
  delta: "",
  done: true,
  status: "ok",
  text: "你好！",
};
const raw = JSON.stringify(segment);

/** Shapes no adapter may turn into a body, whatever SDK it is for. */
const garbage: unknown[] = [undefined, null, 0, "", "custom", [], true, () => {}];

describe("fromNimV9Message", () => {
  // Field set as the v9 Web SDK hands it to onmsg (trimmed to what matters plus typical extras).
  const message = {
    scene: "p2p",
    from: "bot",
    to: "alice",
    sessionId: "p2p-bot",
    flow: "in",
    type: "custom",
    content: raw,
    idClient: "c-1",
    idServer: "123",
    time: 1700000000000,
  };

  it("parses the content of a custom message", () => {
    expect(fromNimV9Message(message)).toEqual(segment);
  });

  it("accepts content already parsed into an object", () => {
    expect(fromNimV9Message({ ...message, content: final })).toEqual(final);
  });

  it.each([
    ["a text message", { ...message, type: "text", text: "hello", content: undefined }],
    ["a text message that looks like a body", { ...message, type: "text", text: raw }],
    ["a tip", { ...message, type: "tip", tip: "joined" }],
    ["another app's custom message", { ...message, content: JSON.stringify({ type: 3, data: { id: 1 } }) }],
    ["custom content that is not JSON", { ...message, content: "{oops" }],
    ["custom without content", { ...message, content: undefined }],
    ["a malformed bot body", { ...message, content: JSON.stringify({ ...segment, seq: -1 }) }],
  ])("gives undefined for %s", (_name, input) => {
    expect(fromNimV9Message(input)).toBeUndefined();
  });

  it.each(garbage)("gives undefined for %s", (input) => {
    expect(fromNimV9Message(input)).toBeUndefined();
  });
});

describe("fromNimV10Message", () => {
  // Field set of a V2NIMMessage as onReceiveMessages delivers it.
  const message = {
    messageClientId: "c-1",
    messageServerId: "123",
    senderId: "bot",
    receiverId: "alice",
    conversationId: "bot|1|alice",
    conversationType: 1,
    messageType: 100,
    text: "",
    attachment: { raw },
    createTime: 1700000000000,
  };

  it("parses attachment.raw of a custom message", () => {
    expect(fromNimV10Message(message)).toEqual(segment);
  });

  it("tolerates raw as an object, the attachment as a JSON string, and messageType as a string", () => {
    expect(fromNimV10Message({ ...message, attachment: { raw: final } })).toEqual(final);
    expect(fromNimV10Message({ ...message, attachment: JSON.stringify({ raw }) })).toEqual(segment);
    expect(fromNimV10Message({ ...message, attachment: raw })).toEqual(segment);
    expect(fromNimV10Message({ ...message, messageType: "100" })).toEqual(segment);
  });

  it.each([
    ["a text message", { ...message, messageType: 0, text: "hello", attachment: undefined }],
    ["a text message carrying a raw", { ...message, messageType: 0 }],
    ["an image message", { ...message, messageType: 1, attachment: { url: "https://example.com/a.png" } }],
    ["a custom message without attachment", { ...message, attachment: undefined }],
    ["a custom message without raw", { ...message, attachment: {} }],
    ["another app's custom message", { ...message, attachment: { raw: '{"type":"card"}' } }],
    ["a raw that is not JSON", { ...message, attachment: { raw: "{oops" } }],
    ["an attachment string that is not JSON", { ...message, attachment: "{oops" }],
  ])("gives undefined for %s", (_name, input) => {
    expect(fromNimV10Message(input)).toBeUndefined();
  });

  it.each(garbage)("gives undefined for %s", (input) => {
    expect(fromNimV10Message(input)).toBeUndefined();
  });
});

describe("fromEmulatorMessage", () => {
  const message = { type: 100, from: "bot", to: "alice", body: raw, msgid: "1200510468189" };

  it("parses the body of a custom message", () => {
    expect(fromEmulatorMessage(message)).toEqual(segment);
  });

  it("accepts the WebSocket frame as a string, the body as an object and type as a string", () => {
    expect(fromEmulatorMessage(JSON.stringify(message))).toEqual(segment);
    expect(fromEmulatorMessage({ ...message, body: final })).toEqual(final);
    expect(fromEmulatorMessage({ ...message, type: "100" })).toEqual(segment);
  });

  it.each([
    ["a text message", { ...message, type: 0, body: JSON.stringify({ msg: "hello" }) }],
    ["a text message that looks like a body", { ...message, type: 0 }],
    ["a custom body of another kind", { ...message, body: '{"kind":"other"}' }],
    ["a body that is not JSON", { ...message, body: "{oops" }],
    ["a frame that is not JSON", "{oops"],
    ["a frame of another event", { event: "presence", online: true }],
  ])("gives undefined for %s", (_name, input) => {
    expect(fromEmulatorMessage(input)).toBeUndefined();
  });

  it.each(garbage)("gives undefined for %s", (input) => {
    expect(fromEmulatorMessage(input)).toBeUndefined();
  });
});

describe("adapters never throw", () => {
  const hostile = new Proxy(
    {},
    {
      get() {
        throw new Error("boom");
      },
    },
  );

  it.each([
    ["v9", fromNimV9Message],
    ["v10", fromNimV10Message],
    ["emulator", fromEmulatorMessage],
  ])("%s gives undefined for an object whose properties throw", (_name, adapter) => {
    expect(adapter(hostile)).toBeUndefined();
    expect(adapter({ type: "custom", messageType: 100, content: hostile, attachment: hostile, body: hostile })).toBe(
      undefined,
    );
  });
});

describe("adapters feeding the assembler", () => {
  it("assembles a reply from v9 messages mixed with ordinary ones", () => {
    const assembler = new StreamAssembler();
    const inbox = [
      { type: "text", text: "hi bot" },
      { type: "custom", content: JSON.stringify(final) },
      { type: "custom", content: raw },
    ];
    for (const message of inbox) assembler.accept(fromNimV9Message(message));
    expect(assembler.replies()).toHaveLength(1);
    expect(assembler.get("stream-1")).toMatchObject({ text: "你好！", done: true, receivedSeqs: 2 });
  });
});
