import { describe, expect, it } from "vitest";
import type { NimSendMessageRequest } from "../../nim/types.ts";
import { createCustomTransport } from "./custom.ts";
import { createFallbackTransport } from "./fallback.ts";
import type { OutboundMessage, ReplyAddress, ReplyTransport, TransportState } from "./types.ts";

const address: ReplyAddress = {
  botAccid: "advisor_bot",
  scope: "p2p",
  to: "u_alice",
  askerAccid: "u_alice",
  replyTo: "42",
  streamId: "s-1",
};

class Refused extends Error {}

/** A primary with its own encoding that NIM refuses outright. */
const refusingPrimary: ReplyTransport = {
  mode: "native",
  maxDeltaCharacters: () => 1000,
  encodeSegment: (_address, input) => [
    { seq: input.seq, kind: "segment", delta: input.delta, done: false, body: `native:${input.delta}` },
  ],
  encodeFinal: (_address, input) => [
    { seq: input.firstSeq, kind: "final", delta: "", done: true, body: "native:end", status: input.status },
  ],
  deliver: async () => {
    throw new Refused("stream messages are not enabled for this app");
  },
};

function memoryState(): TransportState & { values: Record<string, string> } {
  const values: Record<string, string> = {};
  return {
    values,
    get: (key) => values[key],
    set: async (patch) => {
      Object.assign(values, patch);
    },
  };
}

describe("fallback transport", () => {
  it("delivers committed primary messages as custom segments after NIM refuses, and stays switched", async () => {
    const sent: NimSendMessageRequest[] = [];
    const custom = createCustomTransport({
      nim: {
        sendMessage: async (request: NimSendMessageRequest) => {
          sent.push(request);
          return { msgid: String(sent.length), timetag: 1 };
        },
      } as never,
    });
    const switched: string[] = [];
    const transport = createFallbackTransport({
      primary: refusingPrimary,
      fallback: custom,
      isRefusal: (error) => error instanceof Refused,
      logger: { warn: () => {} },
      onFallback: (target) => switched.push(target.replyTo),
    });
    const state = memoryState();
    const context = (committedText: string) => ({ state, signal: new AbortController().signal, committedText });
    const messages: OutboundMessage[] = [
      ...transport.encodeSegment(address, { seq: 0, delta: "Hel", committedText: "" }),
      ...transport.encodeSegment(address, { seq: 1, delta: "lo", committedText: "Hel" }),
      ...transport.encodeFinal(address, { firstSeq: 2, text: "Hello", status: "ok" }),
    ];
    for (const message of messages) await transport.deliver(address, message, context("Hello"));
    expect(switched).toEqual(["42"]);
    expect(state.values).toEqual({ fallback: "custom" });
    const bodies = sent.map((request) => JSON.parse(request.body as string) as Record<string, unknown>);
    expect(bodies.map((body) => [body.seq, body.delta, body.done])).toEqual([
      [0, "Hel", false],
      [1, "lo", false],
      [2, "", true],
    ]);
    expect(bodies[2]).toMatchObject({ status: "ok", text: "Hello" });
  });

  it("offers the primary's keep-alives, and none when the primary has none", () => {
    const keepAlive: OutboundMessage = { seq: 3, kind: "segment", delta: "", done: false, body: "native:keep-alive" };
    const asked: Array<[number, number]> = [];
    const primary: ReplyTransport = {
      ...refusingPrimary,
      keepAliveCheckMs: 250,
      keepAliveDue: (_previous, lastSentAt, now) => {
        asked.push([lastSentAt, now]);
        return now - lastSentAt >= 1_000;
      },
      encodeKeepAlive: (_address, input) => ({ ...keepAlive, seq: input.seq }),
    };
    const transport = createFallbackTransport({
      primary,
      fallback: refusingPrimary,
      isRefusal: () => true,
      logger: { warn: () => {} },
    });
    expect(transport.keepAliveCheckMs).toBe(250);
    expect(transport.keepAliveDue?.(undefined, 0, 999)).toBe(false);
    expect(transport.keepAliveDue?.(undefined, 0, 1_000)).toBe(true);
    expect(asked).toEqual([
      [0, 999],
      [0, 1_000],
    ]);
    expect(transport.encodeKeepAlive?.(address, { seq: 7 })).toEqual({ ...keepAlive, seq: 7 });

    const plain = createFallbackTransport({
      primary: refusingPrimary,
      fallback: refusingPrimary,
      isRefusal: () => true,
      logger: { warn: () => {} },
    });
    expect(plain.keepAliveDue).toBeUndefined();
    expect(plain.encodeKeepAlive).toBeUndefined();
    expect(plain.keepAliveCheckMs).toBeUndefined();
  });

  it("after a switch, delivers a committed keep-alive as an empty custom segment (seqs stay gapless)", async () => {
    const sent: NimSendMessageRequest[] = [];
    const custom = createCustomTransport({
      nim: {
        sendMessage: async (request: NimSendMessageRequest) => {
          sent.push(request);
          return { msgid: String(sent.length), timetag: 1 };
        },
      } as never,
    });
    const transport = createFallbackTransport({
      primary: refusingPrimary,
      fallback: custom,
      isRefusal: (error) => error instanceof Refused,
      logger: { warn: () => {} },
    });
    const state = memoryState();
    const context = { state, signal: new AbortController().signal, committedText: "Hi" };
    const [segment] = transport.encodeSegment(address, { seq: 0, delta: "Hi", committedText: "" });
    await transport.deliver(address, segment!, context);
    const keepAlive: OutboundMessage = { seq: 1, kind: "segment", delta: "", done: false, body: "native:keep-alive" };
    await transport.deliver(address, keepAlive, context);
    const bodies = sent.map((request) => JSON.parse(request.body as string) as Record<string, unknown>);
    expect(bodies.map((body) => [body.seq, body.delta, body.done])).toEqual([
      [0, "Hi", false],
      [1, "", false],
    ]);
  });

  it("lets the primary prepare its pre-send state until the reply switched, then nobody", () => {
    const preparing: ReplyTransport = {
      ...refusingPrimary,
      prepareDelivery: (_address, message) => ({
        seq: message.seq,
        state: { "primary.inflight": String(message.seq) },
      }),
    };
    const custom = createCustomTransport({ nim: {} as never });
    const options = { fallback: custom, isRefusal: () => true, logger: { warn: () => {} } };
    const state = memoryState();
    const [message] = refusingPrimary.encodeSegment(address, { seq: 3, delta: "x", committedText: "" });
    const transport = createFallbackTransport({ ...options, primary: preparing });
    expect(transport.prepareDelivery?.(address, message!, state)).toEqual({
      seq: 3,
      state: { "primary.inflight": "3" },
    });
    state.values.fallback = "custom";
    expect(transport.prepareDelivery?.(address, message!, state)).toBeUndefined();
    expect(createFallbackTransport({ ...options, primary: refusingPrimary }).prepareDelivery).toBeUndefined();
  });

  it("passes other errors through untouched", async () => {
    const transport = createFallbackTransport({
      primary: refusingPrimary,
      fallback: refusingPrimary,
      isRefusal: () => false,
      logger: { warn: () => {} },
    });
    const [message] = transport.encodeSegment(address, { seq: 0, delta: "x", committedText: "" });
    await expect(
      transport.deliver(address, message!, {
        state: memoryState(),
        signal: new AbortController().signal,
        committedText: "x",
      }),
    ).rejects.toThrow(Refused);
  });
});
