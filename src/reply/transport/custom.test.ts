import { describe, expect, it } from "vitest";
import type { NimSendMessageRequest } from "../../nim/types.ts";
import { FINAL_OPTION, SEGMENT_OPTION } from "../messages.ts";
import { createCustomTransport } from "./custom.ts";
import type { ReplyAddress } from "./types.ts";

const p2p: ReplyAddress = {
  botAccid: "advisor_bot",
  scope: "p2p",
  to: "u_alice",
  askerAccid: "u_alice",
  replyTo: "42",
  streamId: "s-1",
};
const team: ReplyAddress = { ...p2p, scope: "team", to: "9001" };

function recordingTransport() {
  const sent: NimSendMessageRequest[] = [];
  const transport = createCustomTransport({
    nim: {
      sendMessage: async (request: NimSendMessageRequest) => {
        sent.push(request);
        return { msgid: String(sent.length), timetag: 1 };
      },
    } as never,
  });
  return { sent, transport };
}

const context = {
  state: { get: () => undefined, set: async () => {} },
  signal: new AbortController().signal,
  committedText: "Hello",
};

describe("custom-segment transport", () => {
  it("commits the NIM options with each message and sends exactly what was committed", async () => {
    const { sent, transport } = recordingTransport();
    const [segment] = transport.encodeSegment(p2p, { seq: 0, delta: "Hello", committedText: "" });
    const [final] = transport.encodeFinal(p2p, { firstSeq: 1, text: "Hello", status: "ok" });
    expect(JSON.parse(segment!.options!)).toEqual({ option: { ...SEGMENT_OPTION } });
    expect(JSON.parse(final!.options!)).toEqual({ option: { ...FINAL_OPTION }, pushcontent: "Hello" });
    expect(final).toMatchObject({ kind: "final", done: true, delta: "" });
    await transport.deliver(p2p, segment!, context);
    await transport.deliver(p2p, final!, context);
    expect(sent.map((request) => [request.ope, request.to, request.type, request.body])).toEqual([
      [0, "u_alice", 100, segment!.body],
      [0, "u_alice", 100, final!.body],
    ]);
    expect(sent[1]).toMatchObject({ option: FINAL_OPTION, pushcontent: "Hello" });
  });

  it("sends team replies into the team and mentions the asker on the final", async () => {
    const { sent, transport } = recordingTransport();
    const [final] = transport.encodeFinal(team, { firstSeq: 0, text: "Hi", status: "ok" });
    await transport.deliver(team, final!, context);
    expect(sent[0]).toMatchObject({ ope: 1, to: "9001", forcepushlist: '["u_alice"]' });
  });

  it("splits a long final into parts, only the last one done", () => {
    const { transport } = recordingTransport();
    const parts = transport.encodeFinal(p2p, { firstSeq: 3, text: "长".repeat(7_000), status: "stopped" });
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.map((part) => part.seq)).toEqual(parts.map((_, index) => 3 + index));
    expect(parts.filter((part) => part.done)).toHaveLength(1);
    expect(parts.at(-1)?.done).toBe(true);
    expect(parts.every((part) => part.body.length <= 5000)).toBe(true);
  });
});
