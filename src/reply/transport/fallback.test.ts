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
