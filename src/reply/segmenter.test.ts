import { describe, expect, it } from "vitest";
import { ManualClock, settlePromises } from "./manual-clock.ts";
import { Segmenter, type SegmenterOptions } from "./segmenter.ts";
import { encodedTextLength, graphemeClusters } from "./text-units.ts";

interface EmitRecord {
  delta: string;
  startedAt: number;
}

interface Deferred {
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * A segmenter on a ManualClock whose emits are recorded. In "auto" mode every emit completes after
 * `latencyMs` of clock time (0 = on the next microtask); in "manual" mode the test settles each
 * emit through `pending`.
 */
function harness(options: Partial<SegmenterOptions> & { mode?: "auto" | "manual"; latencyMs?: number } = {}): {
  clock: ManualClock;
  segmenter: Segmenter;
  emits: EmitRecord[];
  pending: Deferred[];
  deltas: () => string[];
} {
  const clock = new ManualClock();
  const emits: EmitRecord[] = [];
  const pending: Deferred[] = [];
  const { mode = "auto", latencyMs = 0, ...rest } = options;
  const segmenter = new Segmenter({
    pacingMs: 200,
    clock,
    maxDeltaCharacters: 4900,
    emit: (delta) => {
      emits.push({ delta, startedAt: clock.now() });
      return new Promise<void>((resolve, reject) => {
        if (mode === "manual") pending.push({ resolve, reject });
        else if (latencyMs > 0) clock.setTimeout(resolve, latencyMs);
        else resolve();
      });
    },
    ...rest,
  });
  return { clock, segmenter, emits, pending, deltas: () => emits.map((emit) => emit.delta) };
}

/** Every cut between deltas is a grapheme-cluster boundary of the whole text. */
function expectCutsAtClusterBoundaries(deltas: string[]): void {
  const text = deltas.join("");
  const boundaries = new Set<number>([text.length]);
  for (const { index } of graphemeClusters(text)) boundaries.add(index);
  let offset = 0;
  for (const delta of deltas) {
    offset += delta.length;
    expect(boundaries.has(offset), `cut at ${offset} of ${JSON.stringify(text)} inside a cluster`).toBe(true);
  }
}

/** Small deterministic PRNG (mulberry32) so failures reproduce. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("Segmenter", () => {
  describe("first segment", () => {
    it("is emitted synchronously as soon as the first text arrives", () => {
      const { segmenter, deltas, clock } = harness();
      clock.advance(5000); // however long the generator took to start
      segmenter.push("Hello");
      expect(deltas()).toEqual(["Hello"]);
    });

    it("goes out at once also for a single Chinese character", () => {
      const { segmenter, deltas } = harness();
      segmenter.push("你");
      expect(deltas()).toEqual(["你"]);
    });

    it("waits for text that is only a possibly incomplete cluster", () => {
      const { segmenter, deltas } = harness();
      segmenter.push("😀"); // may still get a skin tone or a ZWJ
      expect(deltas()).toEqual([]);
      segmenter.push(" hi");
      expect(deltas()).toEqual(["😀 hi"]);
    });
  });

  describe("pacing", () => {
    it("coalesces what arrives within the interval into one delta at the end of the interval", async () => {
      const { segmenter, deltas, emits, clock } = harness();
      segmenter.push("a");
      await clock.advanceAsync(50);
      segmenter.push("b");
      await clock.advanceAsync(50);
      segmenter.push("c");
      await clock.advanceAsync(99);
      expect(deltas()).toEqual(["a"]);
      await clock.advanceAsync(1);
      expect(deltas()).toEqual(["a", "bc"]);
      expect(emits.map((emit) => emit.startedAt)).toEqual([0, 200]);
    });

    it("emits at once when text arrives after a quiet spell longer than the interval", async () => {
      const { segmenter, emits, clock } = harness();
      segmenter.push("a");
      await clock.advanceAsync(1000);
      segmenter.push("b");
      expect(emits).toEqual([
        { delta: "a", startedAt: 0 },
        { delta: "b", startedAt: 1000 },
      ]);
    });

    it("streams 300 tokens over 6 s in at most 1 + 6000/200 emits, in order and complete", async () => {
      const { segmenter, emits, deltas, clock } = harness({ latencyMs: 30 });
      let input = "";
      for (let token = 0; token < 300; token += 1) {
        const text = token % 3 === 0 ? `词${token} ` : `token${token}, `;
        input += text;
        segmenter.push(text);
        await clock.advanceAsync(20);
      }
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(deltas().join("")).toBe(input);
      expect(emits.length).toBeLessThanOrEqual(1 + 6000 / 200);
      expect(emits.length).toBeGreaterThanOrEqual(6000 / 200 - 1);
      for (let index = 1; index < emits.length; index += 1) {
        expect(emits[index]!.startedAt - emits[index - 1]!.startedAt).toBeGreaterThanOrEqual(200);
      }
      expect(deltas().every((delta) => delta.length > 0)).toBe(true);
    });

    it("measures the interval from the start of the previous emit", async () => {
      const { segmenter, emits, clock } = harness({ latencyMs: 150 });
      segmenter.push("a");
      await clock.advanceAsync(160); // emit 1 done at 150
      segmenter.push("b");
      await clock.advanceAsync(39);
      expect(emits).toHaveLength(1);
      await clock.advanceAsync(1);
      expect(emits.map((emit) => emit.startedAt)).toEqual([0, 200]);
    });

    it("with pacing 0 emits as soon as the previous emit finished, without timers", async () => {
      const { segmenter, deltas, pending, clock } = harness({ pacingMs: 0, mode: "manual" });
      segmenter.push("a");
      segmenter.push("b");
      segmenter.push("c");
      expect(deltas()).toEqual(["a"]);
      pending[0]!.resolve();
      await settlePromises();
      expect(deltas()).toEqual(["a", "bc"]);
      expect(clock.pendingTimerCount).toBe(0);
      pending[1]!.resolve();
      await settlePromises();
      segmenter.push("d");
      expect(deltas()).toEqual(["a", "bc", "d"]);
      const ended = segmenter.end();
      pending[2]!.resolve();
      await ended;
    });

    it("tells when the next emit may start", async () => {
      const { segmenter, clock } = harness();
      expect(segmenter.nextEmitAllowedAt).toBeUndefined();
      await clock.advanceAsync(1000);
      segmenter.push("a");
      expect(segmenter.nextEmitAllowedAt).toBe(1200);
    });
  });

  describe("one emit in flight", () => {
    it("holds the next emit until the in-flight one completes, then sends at once if the interval passed", async () => {
      const { segmenter, deltas, emits, pending, clock } = harness({ mode: "manual" });
      segmenter.push("a");
      segmenter.push("b");
      await clock.advanceAsync(500);
      segmenter.push("c");
      await clock.advanceAsync(500);
      expect(deltas()).toEqual(["a"]);
      pending[0]!.resolve();
      await settlePromises();
      expect(emits).toEqual([
        { delta: "a", startedAt: 0 },
        { delta: "bc", startedAt: 1000 },
      ]);
    });

    it("waits for the rest of the interval when the in-flight emit completes early", async () => {
      const { segmenter, emits, pending, clock } = harness({ mode: "manual" });
      segmenter.push("a");
      segmenter.push("b");
      await clock.advanceAsync(50);
      pending[0]!.resolve();
      await clock.advanceAsync(100);
      expect(emits).toHaveLength(1);
      await clock.advanceAsync(50);
      expect(emits).toEqual([
        { delta: "a", startedAt: 0 },
        { delta: "b", startedAt: 200 },
      ]);
    });

    it("never starts an emit while another is in flight", async () => {
      let inFlight = 0;
      let maximum = 0;
      const clock = new ManualClock();
      const segmenter = new Segmenter({
        pacingMs: 0,
        clock,
        maxDeltaCharacters: 10,
        emit: async () => {
          inFlight += 1;
          maximum = Math.max(maximum, inFlight);
          await new Promise<void>((resolve) => clock.setTimeout(resolve, 7));
          inFlight -= 1;
        },
      });
      segmenter.push("x".repeat(100));
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(maximum).toBe(1);
    });
  });

  describe("budget", () => {
    it("splits a long Chinese buffer into paced deltas within the budget", async () => {
      const { segmenter, emits, deltas, clock } = harness({ maxDeltaCharacters: 10 });
      const text = "这是一个用来测试分段的很长的中文回答，共有三十五个字符呢。真的很长啊！";
      segmenter.push(text);
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(deltas().join("")).toBe(text);
      for (const delta of deltas()) expect(encodedTextLength(delta)).toBeLessThanOrEqual(10);
      expect(deltas()).toHaveLength(Math.ceil(text.length / 10));
      expect(emits.map((emit) => emit.startedAt)).toEqual([0, 200, 400, 600]);
    });

    it("counts escapes (newlines, quotes, backslashes, control characters) in the budget", async () => {
      const { segmenter, deltas, clock } = harness({ maxDeltaCharacters: 9, pacingMs: 0 });
      const text = 'He said "hi"\nC:\\path\\\u0001end\n'.repeat(5);
      segmenter.push(text);
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(deltas().join("")).toBe(text);
      for (const delta of deltas()) {
        expect(JSON.stringify(delta).length - 2).toBeLessThanOrEqual(9);
        expect(delta.length).toBeGreaterThan(0);
      }
    });

    it("asks a budget function before each delta", async () => {
      const budgets = [6, 8, 100];
      const asked: number[] = [];
      const { segmenter, deltas, clock } = harness({
        pacingMs: 0,
        maxDeltaCharacters: () => {
          const budget = budgets[Math.min(asked.length, budgets.length - 1)]!;
          asked.push(budget);
          return budget;
        },
      });
      segmenter.push("abcdefghijklmnopqrstuvwxyz.");
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(deltas()).toEqual(["abcdef", "ghijklmn", "opqrstuvwxyz."]);
    });

    it("does not split emoji sequences when cutting to the budget", async () => {
      const { segmenter, deltas, clock } = harness({ maxDeltaCharacters: 12, pacingMs: 0 });
      const text = "ab👨‍👩‍👧‍👦🇨🇳🇺🇸cd👍🏽e\r\nf".repeat(3);
      segmenter.push(text);
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(deltas().join("")).toBe(text);
      expectCutsAtClusterBoundaries(deltas());
      for (const delta of deltas()) expect(encodedTextLength(delta)).toBeLessThanOrEqual(12);
    });

    it("fails (surfacing from end) when a budget function returns an unusable budget", async () => {
      const { segmenter, deltas } = harness({ maxDeltaCharacters: () => 2 });
      segmenter.push("abc");
      expect(deltas()).toEqual([]);
      await expect(segmenter.end()).rejects.toThrow(RangeError);
    });

    it("validates its options", () => {
      const clock = new ManualClock();
      const emit = async () => {};
      expect(() => new Segmenter({ pacingMs: -1, clock, maxDeltaCharacters: 100, emit })).toThrow(RangeError);
      expect(() => new Segmenter({ pacingMs: Number.NaN, clock, maxDeltaCharacters: 100, emit })).toThrow(RangeError);
      expect(() => new Segmenter({ pacingMs: 200, clock, maxDeltaCharacters: 5, emit })).toThrow(RangeError);
    });
  });

  describe("grapheme clusters across pushes", () => {
    async function stream(pieces: string[], pacingMs = 0): Promise<string[]> {
      const { segmenter, deltas, clock } = harness({ pacingMs });
      for (const piece of pieces) {
        segmenter.push(piece);
        await clock.advanceAsync(pacingMs + 1);
      }
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(deltas().join("")).toBe(pieces.join(""));
      expectCutsAtClusterBoundaries(deltas());
      return deltas();
    }

    it("keeps a ZWJ family together when it arrives piece by piece", async () => {
      expect(await stream(["Hi 👨", "\u200d👩", "\u200d👧", "\u200d👦", " ok"])).toEqual(["Hi ", "👨‍👩‍👧‍👦 ok"]);
    });

    it("keeps flags together when regional indicators arrive separately", async () => {
      expect(await stream(["Go ", "🇨", "🇳", "🇺", "🇸", "!"])).toEqual(["Go ", "🇨🇳", "🇺🇸!"]);
    });

    it("keeps a surrogate pair split across pushes together", async () => {
      expect(await stream(["a\ud83d", "\ude00b"])).toEqual(["a", "😀b"]);
    });

    it("keeps skin tones, variation selectors, keycaps and CR LF with their base", async () => {
      expect(await stream(["👍", "🏽 ", "❤", "\ufe0f", "\u200d🔥 ", "1", "\ufe0f\u20e3", " a\r", "\nb"])).toEqual([
        "👍🏽 ",
        "❤️‍🔥 ",
        "1️⃣ a",
        "\r\nb",
      ]);
    });

    it("emits a held-back cluster at end()", async () => {
      const { segmenter, deltas, clock } = harness();
      segmenter.push("done 👍");
      expect(deltas()).toEqual(["done "]);
      const ended = segmenter.end();
      await clock.advanceAsync(200);
      await ended;
      expect(deltas()).toEqual(["done ", "👍"]);
    });

    it("emits a lone high surrogate left at end() rather than losing it", async () => {
      const { segmenter, deltas, clock } = harness();
      segmenter.push("x\ud83d");
      const ended = segmenter.end();
      await clock.runAllAsync();
      await ended;
      expect(deltas().join("")).toBe("x\ud83d");
    });

    it("never splits a cluster for random chunkings and timings (property)", async () => {
      const fragments = [
        "a",
        "你好",
        "。",
        " ",
        "\n",
        "😀",
        "👍🏽",
        "👨‍👩‍👧",
        "🇨🇳",
        "🇯🇵",
        "1️⃣",
        "é",
        "क्षि",
        "\r\n",
        '"',
      ];
      const next = random(7);
      for (let sample = 0; sample < 200; sample += 1) {
        let text = "";
        const length = 1 + Math.floor(next() * 40);
        for (let index = 0; index < length; index += 1) text += fragments[Math.floor(next() * fragments.length)];
        const pacingMs = next() < 0.5 ? 0 : 200;
        const { segmenter, deltas, clock } = harness({
          pacingMs,
          latencyMs: Math.floor(next() * 60),
          // The largest cluster above costs 8 (the family), so every cluster fits every budget.
          maxDeltaCharacters: 8 + Math.floor(next() * 20),
        });
        let position = 0;
        while (position < text.length) {
          const size = Math.floor(next() * 6);
          segmenter.push(text.slice(position, position + size));
          position += size;
          await clock.advanceAsync(Math.floor(next() * 120));
        }
        const ended = segmenter.end();
        await clock.runAllAsync();
        await ended;
        expect(deltas().join("")).toBe(text);
        expect(deltas().every((delta) => delta.length > 0)).toBe(true);
        expectCutsAtClusterBoundaries(deltas());
      }
    });
  });

  describe("end()", () => {
    it("flushes everything and resolves when the last emit completed", async () => {
      const { segmenter, deltas, pending, clock } = harness({ mode: "manual" });
      segmenter.push("a");
      segmenter.push("b");
      let resolved = false;
      const ended = segmenter.end().then(() => {
        resolved = true;
      });
      pending[0]!.resolve();
      await clock.advanceAsync(200);
      expect(deltas()).toEqual(["a", "b"]);
      expect(resolved).toBe(false);
      pending[1]!.resolve();
      await ended;
      expect(resolved).toBe(true);
    });

    it("resolves at once when nothing was pushed, and returns the same promise when called again", async () => {
      const { segmenter, deltas } = harness();
      const first = segmenter.end();
      expect(segmenter.end()).toBe(first);
      await first;
      expect(deltas()).toEqual([]);
    });

    it("ignores empty pushes and never emits an empty delta", async () => {
      const { segmenter, deltas, clock } = harness();
      segmenter.push("");
      expect(deltas()).toEqual([]);
      segmenter.push("x");
      segmenter.push("");
      await clock.advanceAsync(1000);
      await segmenter.end();
      expect(deltas()).toEqual(["x"]);
    });

    it("refuses text after end()", async () => {
      const { segmenter } = harness();
      await segmenter.end();
      expect(() => segmenter.push("late")).toThrow(/after end/);
    });
  });

  describe("failures", () => {
    it("stops at the first failed emit and rejects end() with its error", async () => {
      const failure = new Error("NIM 500");
      const { segmenter, deltas, pending, clock } = harness({ mode: "manual" });
      segmenter.push("a");
      segmenter.push("b");
      pending[0]!.reject(failure);
      await clock.advanceAsync(1000);
      segmenter.push("c");
      await clock.advanceAsync(1000);
      expect(deltas()).toEqual(["a"]);
      await expect(segmenter.end()).rejects.toBe(failure);
      expect(clock.pendingTimerCount).toBe(0);
    });

    it("rejects a pending end() when an emit fails during the flush", async () => {
      const failure = new Error("timeout");
      const { segmenter, pending, clock } = harness({ mode: "manual", maxDeltaCharacters: 6 });
      segmenter.push("abcdefghijkl");
      const ended = segmenter.end();
      pending[0]!.resolve();
      await clock.advanceAsync(200);
      pending[1]!.reject(failure);
      await expect(ended).rejects.toBe(failure);
    });

    it("treats an emit that throws synchronously like a rejected one", async () => {
      const failure = new Error("bad body");
      const segmenter = new Segmenter({
        pacingMs: 200,
        clock: new ManualClock(),
        maxDeltaCharacters: 100,
        emit: () => {
          throw failure;
        },
      });
      segmenter.push("a");
      await expect(segmenter.end()).rejects.toBe(failure);
    });
  });

  describe("abort()", () => {
    it("drops pending text and stops emitting; end() then resolves", async () => {
      const { segmenter, deltas, clock } = harness();
      segmenter.push("a");
      segmenter.push("b");
      segmenter.abort();
      await clock.advanceAsync(1000);
      expect(deltas()).toEqual(["a"]);
      expect(clock.pendingTimerCount).toBe(0);
      segmenter.push("c");
      await segmenter.end();
      expect(deltas()).toEqual(["a"]);
    });

    it("lets an in-flight emit settle before a pending end() resolves", async () => {
      const { segmenter, deltas, pending } = harness({ mode: "manual" });
      segmenter.push("a");
      segmenter.push("b");
      let resolved = false;
      const ended = segmenter.end().then(() => {
        resolved = true;
      });
      segmenter.abort();
      await settlePromises();
      expect(resolved).toBe(false);
      pending[0]!.resolve();
      await ended;
      expect(deltas()).toEqual(["a"]);
    });
  });
});
