import { describe, expect, it } from "vitest";
import type { GenerationRequest, ReplyGenerator } from "../generators/types.ts";
import { abort } from "./cancellation.ts";
import { systemClock } from "./clock.ts";
import { createResumeFilter, REGENERATED_MARKER, runGeneration } from "./generation.ts";
import { ManualClock, settlePromises } from "./manual-clock.ts";

const request: GenerationRequest = { userId: undefined, accid: "u", message: "hi", history: [], systemPrompt: "" };

/** Yields one piece, then waits forever and ignores its signal (the worst generator). */
function deafGenerator(seen: { signal?: AbortSignal }): ReplyGenerator {
  return {
    name: "deaf",
    async *generate(_request, signal) {
      seen.signal = signal;
      yield "first";
      await new Promise(() => {});
    },
  };
}

describe("runGeneration", () => {
  it("ends with the reply's cancel reason and aborts the generator's signal, even if it does not listen", async () => {
    const seen: { signal?: AbortSignal } = {};
    const reply = new AbortController();
    const pieces: string[] = [];
    const outcome = runGeneration({
      generator: deafGenerator(seen),
      request,
      signal: reply.signal,
      idleTimeoutMs: 60_000,
      totalTimeoutMs: 60_000,
      clock: systemClock,
      onPiece: (piece) => {
        pieces.push(piece);
        abort(reply, "stopped");
      },
    });
    expect(await outcome).toEqual({ kind: "cancelled", reason: "stopped" });
    expect(pieces).toEqual(["first"]);
    expect(seen.signal?.aborted).toBe(true);
  });

  it("ends with a timeout when the generator is silent past the idle timeout", async () => {
    const clock = new ManualClock();
    const seen: { signal?: AbortSignal } = {};
    const outcome = runGeneration({
      generator: deafGenerator(seen),
      request,
      signal: new AbortController().signal,
      idleTimeoutMs: 1_000,
      totalTimeoutMs: 60_000,
      clock,
      onPiece: () => {},
    });
    await settlePromises();
    clock.advance(1_000);
    expect(await outcome).toEqual({ kind: "timeout", reason: "idle timeout" });
    expect(seen.signal?.aborted).toBe(true);
  });

  it("measures idleness from the last piece, arming its idle timer once, not once per piece", async () => {
    const clock = new ManualClock();
    let timersArmed = 0;
    const countingClock = {
      now: () => clock.now(),
      setTimeout: (callback: () => void, ms: number) => {
        timersArmed += 1;
        return clock.setTimeout(callback, ms);
      },
      clearTimeout: (handle: unknown) => clock.clearTimeout(handle as never),
    };
    let release: (() => void) | undefined;
    const outcome = runGeneration({
      generator: {
        name: "bursty",
        async *generate() {
          // 500 pieces, 1 ms apart by the manual clock, then silence.
          for (let index = 0; index < 500; index += 1) {
            await new Promise<void>((resolve) => {
              release = resolve;
            });
            yield "x";
          }
          await new Promise(() => {});
        },
      },
      request,
      signal: new AbortController().signal,
      idleTimeoutMs: 1_000,
      totalTimeoutMs: 60_000,
      clock: countingClock,
      onPiece: () => {},
    });
    for (let index = 0; index < 500; index += 1) {
      await settlePromises();
      clock.advance(1);
      release?.();
    }
    await settlePromises();
    // The last piece came at 500 ms: still active at 1,000 ms, idle by 1,500 ms.
    clock.advance(500);
    await settlePromises();
    clock.advance(499);
    await settlePromises();
    let settled = false;
    void outcome.then(() => {
      settled = true;
    });
    await settlePromises();
    expect(settled).toBe(false);
    clock.advance(1);
    expect(await outcome).toEqual({ kind: "timeout", reason: "idle timeout" });
    // The total timer, the first idle timer and one re-arm: not 500.
    expect(timersArmed).toBeLessThanOrEqual(4);
  });

  it("never starts a generator's work for a reply cancelled before it began", async () => {
    const reply = new AbortController();
    abort(reply, "shutdown");
    let consumed = 0;
    const outcome = await runGeneration({
      generator: {
        name: "counting",
        async *generate() {
          consumed += 1;
          yield "x";
        },
      },
      request,
      signal: reply.signal,
      idleTimeoutMs: 1_000,
      totalTimeoutMs: 1_000,
      clock: systemClock,
      onPiece: () => {},
    });
    expect(outcome).toEqual({ kind: "cancelled", reason: "shutdown" });
    expect(consumed).toBeLessThanOrEqual(1);
  });
});

describe("resume filter", () => {
  it("sends only the rest when the regenerated text repeats what was sent", () => {
    const filter = createResumeFilter("Hello wor");
    expect(filter.push("Hello")).toBe("");
    expect(filter.push(" world!")).toBe("ld!");
    expect(filter.push(" More")).toBe(" More");
  });

  it("marks a diverging regeneration and sends it in full", () => {
    const filter = createResumeFilter("Hello");
    expect(filter.push("Hi there")).toBe(`${REGENERATED_MARKER}Hi there`);
  });
});
