import { afterEach, describe, expect, it, vi } from "vitest";
import type { BotStreamBody, FinalStatus } from "./bot-stream-body.ts";
import { createStreamAssembler, type ReplyState, StreamAssembler } from "./stream-assembler.ts";

const REPLY =
  "你好！这是一个流式回复。It mixes Chinese, English and emoji 😀👍 so that slicing bugs would show. 最后一句。";

interface StreamShape {
  streamId?: string;
  replyTo?: string;
  /** Length of each delta. */
  segmentLength?: number;
  /** Length of each final part; undefined for a single final. */
  partLength?: number;
  status?: FinalStatus;
}

/** Builds the bodies im-bridge sends for `text`, in send order (segments, then final part(s)). */
function buildStream(text: string, shape: StreamShape = {}): BotStreamBody[] {
  const streamId = shape.streamId ?? "stream-1";
  const replyTo = shape.replyTo ?? "900001";
  const segmentLength = shape.segmentLength ?? 7;
  const status = shape.status ?? "ok";
  const bodies: BotStreamBody[] = [];
  let seq = 0;
  for (let start = 0; start < text.length; start += segmentLength) {
    const delta = text.slice(start, start + segmentLength);
    bodies.push({ kind: "bot_stream", stream_id: streamId, reply_to: replyTo, seq, delta, done: false });
    seq += 1;
  }
  if (shape.partLength === undefined) {
    bodies.push({
      kind: "bot_stream",
      stream_id: streamId,
      reply_to: replyTo,
      seq,
      delta: "",
      done: true,
      status,
      text,
    });
    return bodies;
  }
  const slices: string[] = [];
  for (let start = 0; start < text.length; start += shape.partLength) {
    slices.push(text.slice(start, start + shape.partLength));
  }
  slices.forEach((slice, index) => {
    bodies.push({
      kind: "bot_stream",
      stream_id: streamId,
      reply_to: replyTo,
      seq: seq + index,
      delta: "",
      done: index === slices.length - 1,
      status,
      text: slice,
      part: index + 1,
      parts: slices.length,
    });
  });
  return bodies;
}

function isFinal(body: BotStreamBody): boolean {
  return body.done || body.part !== undefined;
}

/** mulberry32: a tiny seeded PRNG, so a failing permutation can be replayed from its seed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<Item>(items: readonly Item[], random: () => number): Item[] {
  const result = [...items];
  for (let index = result.length - 1; index > 0; index -= 1) {
    const other = Math.floor(random() * (index + 1));
    [result[index], result[other]] = [result[other]!, result[index]!];
  }
  return result;
}

/** Feeds `bodies` and returns the states handed to listeners, in order. */
function feed(assembler: StreamAssembler, bodies: readonly unknown[]): ReplyState[] {
  const changes: ReplyState[] = [];
  const unsubscribe = assembler.onChange((reply) => changes.push(reply));
  for (const body of bodies) assembler.accept(body);
  unsubscribe();
  return changes;
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("StreamAssembler, in order", () => {
  it("shows the growing text, then the final text and status", () => {
    let time = 1000;
    const assembler = new StreamAssembler({ now: () => time });
    const bodies = buildStream(REPLY);
    const segments = bodies.filter((body) => !isFinal(body));
    let expected = "";
    for (const segment of segments) {
      time += 200;
      expected += segment.delta;
      const state = assembler.accept(segment);
      expect(state).toEqual({
        streamId: "stream-1",
        replyTo: "900001",
        text: expected,
        status: "streaming",
        done: false,
        receivedSeqs: segment.seq + 1,
        updatedAt: time,
      });
    }
    time += 200;
    const final = assembler.accept(bodies.at(-1));
    expect(final).toEqual({
      streamId: "stream-1",
      replyTo: "900001",
      text: REPLY,
      status: "ok",
      done: true,
      receivedSeqs: bodies.length,
      updatedAt: time,
    });
    expect(assembler.get("stream-1")).toBe(final);
    expect(assembler.replies()).toEqual([final]);
  });

  it("accepts the body as the JSON string NIM delivers", () => {
    const assembler = createStreamAssembler();
    for (const body of buildStream("short answer")) assembler.accept(JSON.stringify(body));
    expect(assembler.get("stream-1")).toMatchObject({ text: "short answer", done: true, status: "ok" });
  });

  it("returns frozen states that are replaced, not mutated", () => {
    const assembler = new StreamAssembler();
    const [first, second] = buildStream("abcdefghijklmn");
    const before = assembler.accept(first);
    const after = assembler.accept(second);
    expect(Object.isFrozen(before)).toBe(true);
    expect(before?.text).toBe("abcdefg");
    expect(after?.text).toBe("abcdefghijklmn");
  });
});

describe("StreamAssembler, duplicates", () => {
  it("drops a repeated (stream_id, seq) without notifying", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream(REPLY);
    const listener = vi.fn();
    assembler.onChange(listener);
    const first = assembler.accept(bodies[0]);
    const repeated = assembler.accept({ ...bodies[0] });
    expect(repeated).toBe(first);
    expect(listener).toHaveBeenCalledTimes(1);
    expect(first?.receivedSeqs).toBe(1);
  });

  it("keeps the first version when a retried seq carries different content", () => {
    const assembler = new StreamAssembler();
    const [first] = buildStream(REPLY);
    assembler.accept(first);
    assembler.accept({ ...first, delta: "something else" });
    expect(assembler.get("stream-1")?.text).toBe(first?.delta);
  });

  it("never doubles text when every message arrives twice", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream(REPLY);
    const changes = feed(
      assembler,
      bodies.flatMap((body) => [body, { ...body }]),
    );
    expect(changes).toHaveLength(bodies.length);
    expect(assembler.get("stream-1")).toMatchObject({ text: REPLY, done: true, receivedSeqs: bodies.length });
  });
});

describe("StreamAssembler, gaps", () => {
  it("holds the text at a missing segment, buffers what follows and resumes when it fills", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream("aaaaaaabbbbbbbcccccccddddddd");
    const [zero, one, two, three] = bodies;
    assembler.accept(zero);
    assembler.accept(one);
    const waiting = assembler.accept(three);
    expect(waiting).toMatchObject({ text: "aaaaaaabbbbbbb", waitingForSeq: 2, done: false, receivedSeqs: 3 });
    const resumed = assembler.accept(two);
    expect(resumed?.text).toBe("aaaaaaabbbbbbbcccccccddddddd");
    expect(resumed?.waitingForSeq).toBeUndefined();
  });

  it("waits for seq 0 when the first message to arrive is a later one", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream(REPLY);
    expect(assembler.accept(bodies[3])).toMatchObject({ text: "", waitingForSeq: 0, status: "streaming" });
  });

  it("lets the final reconcile a segment that never arrives", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream(REPLY);
    const lost = 4;
    const changes = feed(
      assembler,
      bodies.filter((body) => body.seq !== lost),
    );
    const beforeFinal = changes.at(-2);
    expect(beforeFinal?.text).toBe(
      bodies
        .slice(0, lost)
        .map((body) => body.delta)
        .join(""),
    );
    expect(beforeFinal?.waitingForSeq).toBe(lost);
    expect(changes.at(-1)).toMatchObject({ text: REPLY, done: true, status: "ok" });
    expect(changes.at(-1)?.waitingForSeq).toBeUndefined();
  });

  it("reports a missing final part as the gap", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream(REPLY, { partLength: 20 });
    const finals = bodies.filter(isFinal);
    feed(
      assembler,
      bodies.filter((body) => body !== finals[1]),
    );
    expect(assembler.get("stream-1")).toMatchObject({
      done: false,
      status: "streaming",
      waitingForSeq: finals[1]?.seq,
    });
    expect(assembler.accept(finals[1])).toMatchObject({ done: true, text: REPLY });
  });
});

describe("StreamAssembler, finals", () => {
  it("ends with the final text when the final arrives before the segments", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream(REPLY);
    const final = bodies.at(-1)!;
    expect(assembler.accept(final)).toMatchObject({ text: REPLY, done: true, status: "ok" });
    const changes = feed(assembler, bodies.slice(0, -1));
    // Late segments move the counters only: text and status stay final.
    for (const change of changes) expect(change).toMatchObject({ text: REPLY, done: true, status: "ok" });
    expect(assembler.get("stream-1")?.receivedSeqs).toBe(bodies.length);
  });

  it("takes the final text as authoritative over the deltas", () => {
    const assembler = new StreamAssembler();
    assembler.accept({ kind: "bot_stream", stream_id: "s", reply_to: "r", seq: 0, delta: "draft", done: false });
    const state = assembler.accept({
      kind: "bot_stream",
      stream_id: "s",
      reply_to: "r",
      seq: 1,
      delta: "",
      done: true,
      status: "ok",
      text: "corrected",
    });
    expect(state?.text).toBe("corrected");
  });

  it("serves an offline user who only receives the stored final", () => {
    const assembler = new StreamAssembler();
    const final = buildStream(REPLY).at(-1);
    expect(assembler.accept(final)).toEqual({
      streamId: "stream-1",
      replyTo: "900001",
      text: REPLY,
      status: "ok",
      done: true,
      receivedSeqs: 1,
      updatedAt: expect.any(Number),
    });
  });

  it("serves an offline user who only receives the parts of a long final", () => {
    const assembler = new StreamAssembler();
    const finals = buildStream(REPLY, { partLength: 11 }).filter(isFinal);
    expect(finals.length).toBeGreaterThan(3);
    const changes = feed(assembler, finals);
    for (const change of changes.slice(0, -1)) expect(change).toMatchObject({ done: false, status: "streaming" });
    expect(changes.at(-1)).toMatchObject({ text: REPLY, done: true, status: "ok" });
  });

  it("joins shuffled and duplicated final parts in part order, done only when all are in", () => {
    const bodies = buildStream(REPLY, { partLength: 9 });
    const finals = bodies.filter(isFinal);
    for (let seed = 1; seed <= 50; seed += 1) {
      const random = seededRandom(seed);
      const assembler = new StreamAssembler();
      const delivered = shuffle([...finals, ...finals.filter(() => random() < 0.5)], random);
      const seen = new Set<number>();
      for (const body of delivered) {
        seen.add(body.seq);
        const state = assembler.accept(body);
        expect(state?.done, `seed ${seed}`).toBe(seen.size === finals.length);
      }
      expect(assembler.get("stream-1")?.text, `seed ${seed}`).toBe(REPLY);
    }
  });

  it("does not end on the done:true part while an earlier part is missing", () => {
    const assembler = new StreamAssembler();
    const finals = buildStream(REPLY, { partLength: 30 }).filter(isFinal);
    expect(assembler.accept(finals.at(-1))).toMatchObject({ done: false, status: "streaming", text: "" });
  });

  it.each(["error", "blocked", "limited"] as const)("reports status %s from the final", (status) => {
    const assembler = new StreamAssembler();
    feed(assembler, buildStream("Sorry, something went wrong.", { status }));
    expect(assembler.get("stream-1")).toMatchObject({ status, done: true, text: "Sorry, something went wrong." });
  });

  it("takes the status of a multi-part final", () => {
    const assembler = new StreamAssembler();
    feed(assembler, buildStream(REPLY, { partLength: 25, status: "limited" }));
    expect(assembler.get("stream-1")).toMatchObject({ status: "limited", done: true, text: REPLY });
  });

  it("keeps an empty final text (a reply that failed before any text)", () => {
    const assembler = new StreamAssembler();
    const state = assembler.accept({
      kind: "bot_stream",
      stream_id: "s",
      reply_to: "r",
      seq: 0,
      delta: "",
      done: true,
      status: "error",
      text: "",
    });
    expect(state).toMatchObject({ text: "", status: "error", done: true });
  });

  it("ends an unknown status as error and a missing status as ok", () => {
    const assembler = new StreamAssembler();
    const base = { kind: "bot_stream", reply_to: "r", seq: 0, delta: "", done: true, text: "t" };
    expect(assembler.accept({ ...base, stream_id: "new-status", status: "cancelled" })?.status).toBe("error");
    expect(assembler.accept({ ...base, stream_id: "no-status" })?.status).toBe("ok");
  });

  it("completes a done message without text from the deltas once they are all in", () => {
    const assembler = new StreamAssembler();
    const base = { kind: "bot_stream", stream_id: "s", reply_to: "r" };
    assembler.accept({ ...base, seq: 2, delta: "!", done: true, status: "ok" });
    assembler.accept({ ...base, seq: 0, delta: "Hello", done: false });
    expect(assembler.get("s")).toMatchObject({ done: false, text: "Hello", waitingForSeq: 1 });
    expect(assembler.accept({ ...base, seq: 1, delta: " world", done: false })).toMatchObject({
      done: true,
      status: "ok",
      text: "Hello world!",
    });
  });
});

describe("StreamAssembler, shuffled delivery", () => {
  const shapes: Array<[string, StreamShape]> = [
    ["single final", {}],
    ["multi-part final", { partLength: 13 }],
    ["one-character segments", { segmentLength: 1, partLength: 40 }],
  ];

  it.each(shapes)("always converges to the reply (%s), with and without duplicates", (_name, shape) => {
    const bodies = buildStream(REPLY, shape);
    const finalSeqs = new Set(bodies.filter(isFinal).map((body) => body.seq));
    for (let seed = 1; seed <= 300; seed += 1) {
      const random = seededRandom(seed);
      const withRepeats = seed % 2 === 0 ? [...bodies, ...bodies.filter(() => random() < 0.3)] : bodies;
      const delivered = shuffle(withRepeats, random);
      const assembler = new StreamAssembler();
      const receivedFinals = new Set<number>();
      let wasDone = false;
      for (const body of delivered) {
        if (finalSeqs.has(body.seq)) receivedFinals.add(body.seq);
        const state = assembler.accept(body);
        // Whatever the order, only a prefix of the reply is ever shown, and done comes exactly
        // when the last final message arrives, never earlier and never undone.
        expect(REPLY.startsWith(state?.text ?? "x"), `seed ${seed}`).toBe(true);
        expect(state?.done, `seed ${seed}`).toBe(receivedFinals.size === finalSeqs.size);
        expect(state?.status === "streaming", `seed ${seed}`).toBe(!state?.done);
        if (wasDone) expect(state?.text, `seed ${seed}`).toBe(REPLY);
        wasDone = state?.done ?? false;
      }
      expect(assembler.get("stream-1"), `seed ${seed}`).toMatchObject({
        text: REPLY,
        done: true,
        status: "ok",
        receivedSeqs: bodies.length,
      });
    }
  });

  it("shows every delta that is contiguous from seq 0 when the final is lost so far", () => {
    const bodies = buildStream(REPLY).filter((body) => !isFinal(body));
    for (let seed = 1; seed <= 100; seed += 1) {
      const assembler = new StreamAssembler();
      for (const body of shuffle(bodies, seededRandom(seed))) assembler.accept(body);
      expect(assembler.get("stream-1"), `seed ${seed}`).toMatchObject({ text: REPLY, done: false });
      expect(assembler.get("stream-1")?.waitingForSeq).toBeUndefined();
    }
  });
});

describe("StreamAssembler, several replies", () => {
  it("keeps two interleaved streams apart", () => {
    const assembler = new StreamAssembler();
    const first = buildStream("The first answer, rather long.", { streamId: "a", replyTo: "1", segmentLength: 4 });
    const second = buildStream("第二个回答。", { streamId: "b", replyTo: "2", segmentLength: 2 });
    const interleaved: BotStreamBody[] = [];
    for (let index = 0; index < Math.max(first.length, second.length); index += 1) {
      if (second[index]) interleaved.push(second[index]!);
      if (first[index]) interleaved.push(first[index]!);
    }
    const changes = feed(assembler, interleaved);
    expect(new Set(changes.map((change) => change.streamId))).toEqual(new Set(["a", "b"]));
    expect(assembler.get("a")).toMatchObject({ replyTo: "1", text: "The first answer, rather long.", done: true });
    expect(assembler.get("b")).toMatchObject({ replyTo: "2", text: "第二个回答。", done: true });
    // In order of first arrival: b sent first.
    expect(assembler.replies().map((reply) => reply.streamId)).toEqual(["b", "a"]);
  });

  it("returns the same replies() snapshot until something changes", () => {
    const assembler = new StreamAssembler();
    const [zero, one] = buildStream(REPLY);
    assembler.accept(zero);
    const snapshot = assembler.replies();
    expect(assembler.replies()).toBe(snapshot);
    assembler.accept(zero);
    expect(assembler.replies()).toBe(snapshot);
    assembler.accept(one);
    expect(assembler.replies()).not.toBe(snapshot);
    expect(Object.isFrozen(assembler.replies())).toBe(true);
  });

  it("forgets replies on delete and clear", () => {
    const assembler = new StreamAssembler();
    feed(assembler, [...buildStream("x", { streamId: "a" }), ...buildStream("y", { streamId: "b" })]);
    expect(assembler.delete("a")).toBe(true);
    expect(assembler.get("a")).toBeUndefined();
    expect(assembler.replies().map((reply) => reply.streamId)).toEqual(["b"]);
    assembler.clear();
    expect(assembler.replies()).toEqual([]);
  });

  it("takes reply_to from a later message when the first one lacked it", () => {
    const assembler = new StreamAssembler();
    const [zero, one] = buildStream(REPLY);
    assembler.accept({ ...zero, reply_to: undefined });
    expect(assembler.get("stream-1")?.replyTo).toBe("");
    expect(assembler.accept(one)?.replyTo).toBe("900001");
  });
});

describe("StreamAssembler, listeners", () => {
  it("stops calling a listener after it unsubscribes", () => {
    const assembler = new StreamAssembler();
    const [zero, one] = buildStream(REPLY);
    const listener = vi.fn();
    const unsubscribe = assembler.onChange(listener);
    const state = assembler.accept(zero);
    unsubscribe();
    assembler.accept(one);
    expect(listener).toHaveBeenCalledTimes(1);
    expect(listener).toHaveBeenCalledWith(state);
  });

  it("isolates a throwing listener and reports its error asynchronously", () => {
    const reported: unknown[] = [];
    vi.stubGlobal("queueMicrotask", (callback: () => void) => {
      try {
        callback();
      } catch (error) {
        reported.push(error);
      }
    });
    const assembler = new StreamAssembler();
    const failure = new Error("render failed");
    const other = vi.fn();
    assembler.onChange(() => {
      throw failure;
    });
    assembler.onChange(other);
    const [zero] = buildStream(REPLY);
    expect(() => assembler.accept(zero)).not.toThrow();
    expect(other).toHaveBeenCalledTimes(1);
    expect(reported).toEqual([failure]);
    expect(assembler.get("stream-1")?.text).toBe(zero?.delta);
  });
});

describe("StreamAssembler, malformed input", () => {
  const valid = { kind: "bot_stream", stream_id: "s", reply_to: "r", seq: 0, delta: "d", done: false };
  const malformed: Array<[string, unknown]> = [
    ["undefined", undefined],
    ["null", null],
    ["a number", 42],
    ["an array", [valid]],
    ["a string that is not JSON", "{not json"],
    ["a JSON string of another kind", JSON.stringify({ ...valid, kind: "other" })],
    ["another app's custom body", { type: "sticker", id: 3 }],
    ["no kind", { ...valid, kind: undefined }],
    ["an empty stream_id", { ...valid, stream_id: "" }],
    ["a numeric stream_id", { ...valid, stream_id: 7 }],
    ["no seq", { ...valid, seq: undefined }],
    ["a negative seq", { ...valid, seq: -1 }],
    ["a fractional seq", { ...valid, seq: 1.5 }],
    ["a string seq", { ...valid, seq: "0" }],
    ["an unsafe seq", { ...valid, seq: Number.MAX_SAFE_INTEGER + 1 }],
    ["a numeric delta", { ...valid, delta: 5 }],
    ["a string done", { ...valid, done: "true" }],
    ["a numeric reply_to", { ...valid, reply_to: 12 }],
    ["a numeric text", { ...valid, done: true, text: 12 }],
    ["part without parts", { ...valid, done: true, text: "t", part: 1 }],
    ["parts without part", { ...valid, done: true, text: "t", parts: 2 }],
    ["part 0", { ...valid, done: true, text: "t", part: 0, parts: 2 }],
    ["part beyond parts", { ...valid, done: true, text: "t", part: 3, parts: 2 }],
    ["too many parts", { ...valid, done: true, text: "t", part: 1, parts: 1_000_000 }],
    ["a part without text", { ...valid, done: true, part: 1, parts: 1 }],
  ];

  it.each(malformed)("ignores %s", (_name, body) => {
    const assembler = new StreamAssembler();
    const listener = vi.fn();
    assembler.onChange(listener);
    expect(() => assembler.accept(body)).not.toThrow();
    expect(assembler.accept(body)).toBeUndefined();
    expect(listener).not.toHaveBeenCalled();
    expect(assembler.replies()).toEqual([]);
  });

  it("ignores a body whose getter throws", () => {
    const hostile = {
      kind: "bot_stream",
      get stream_id(): string {
        throw new Error("boom");
      },
    };
    expect(new StreamAssembler().accept(hostile)).toBeUndefined();
  });

  it("ignores messages that contradict the reply so far", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream(REPLY, { partLength: 30 });
    const finals = bodies.filter(isFinal);
    assembler.accept(finals[0]);
    // Another part count, the same part at another seq, a second done message, a single final.
    expect(assembler.accept({ ...finals[1]!, parts: 9 })).toBeUndefined();
    expect(assembler.accept({ ...finals[0]!, seq: 9999 })).toBeUndefined();
    expect(
      assembler.accept({ ...bodies[0]!, seq: 500, done: true, text: "other", part: undefined, parts: undefined }),
    ).toBeUndefined();
    feed(assembler, bodies);
    expect(assembler.get("stream-1")).toMatchObject({ text: REPLY, done: true });
    expect(assembler.accept({ ...finals.at(-1)!, seq: 10_000, part: finals.length, text: "again" })).toBeUndefined();
    expect(assembler.get("stream-1")?.text).toBe(REPLY);
  });

  it("ignores a second single final", () => {
    const assembler = new StreamAssembler();
    const bodies = buildStream("first");
    feed(assembler, bodies);
    const second = { ...bodies.at(-1)!, seq: 77, text: "second" };
    expect(assembler.accept(second)).toBeUndefined();
    expect(assembler.get("stream-1")?.text).toBe("first");
  });
});
