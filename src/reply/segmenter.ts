/**
 * Turns a stream of small text pieces (LLM tokens) into paced deltas for NIM segment messages.
 *
 * Why: NIM advises about one send per 200 ms, and every segment is a separate sendMsg call. Sending
 * each token would cost hundreds of calls per answer and hit rate control; sending only at the end
 * would not stream. So:
 * - the first delta goes out as soon as the first text arrives (the user sees the bot start at once);
 * - after that, at most one emit per `pacingMs`, measured from the start of the previous emit, with
 *   everything that arrived in between coalesced into one delta;
 * - one emit in flight at a time, strictly in order; text arriving meanwhile waits for the next one,
 *   which starts as soon as the in-flight emit completes if the interval has already passed;
 * - no delta is longer than the budget (`maxDeltaCharacters`, in JSON-encoded characters, because
 *   NIM counts the 5000-character body after JSON encoding); a longer buffer becomes several paced
 *   emits;
 * - deltas are cut at grapheme-cluster boundaries, and a trailing cluster that could still grow (a
 *   lone high surrogate, an emoji that may take a ZWJ or skin tone, half a flag …; the rule is in
 *   text-units.ts `trailingClusterMayGrow`) is held back until more text arrives or `end()`;
 * - empty deltas are never emitted; a failed emit stops the segmenter and surfaces from `end()`.
 *
 * Time comes from a Clock, so tests use ManualClock and never sleep.
 *
 * @example
 * const segmenter = new Segmenter({
 *   pacingMs: 200,
 *   clock: systemClock,
 *   maxDeltaCharacters: () => maxDeltaBudget({ streamId, replyTo, seq: nextSeq }),
 *   emit: (delta) => sendSegment(nextSeq++, delta),
 * });
 * for await (const piece of generator) segmenter.push(thinkFilter.push(piece));
 * segmenter.push(thinkFilter.flush());
 * await segmenter.end();
 *
 * @module
 */
import type { Clock } from "./clock.ts";
import { cutPrefixWithinBudget, isHighSurrogate, MINIMUM_TEXT_BUDGET, trailingClusterMayGrow } from "./text-units.ts";

export interface SegmenterOptions {
  /** Minimum time between the starts of two emits, in ms (NIM: about 200). 0 = back to back. */
  pacingMs: number;
  clock: Clock;
  /**
   * The most JSON-encoded characters a delta may take (`JSON.stringify(delta).length - 2`), at
   * least 6. A function is asked again before each delta is cut, so it can follow the seq digits
   * (see messages.ts `maxDeltaBudget`).
   */
  maxDeltaCharacters: number | (() => number);
  /** Sends one delta. The next emit starts only after this promise settles. */
  emit: (delta: string) => Promise<void>;
}

export class Segmenter {
  /** Text received and not yet emitted (including a held-back trailing cluster). */
  private buffer = "";
  private emitting = false;
  private lastEmitStartedAt: number | undefined;
  private pacingTimer: { handle: unknown } | undefined;
  private ended = false;
  private aborted = false;
  private failure: { error: unknown } | undefined;
  private endPromise: Promise<void> | undefined;
  private settleEnd: { resolve: () => void; reject: (error: unknown) => void } | undefined;

  constructor(private readonly options: SegmenterOptions) {
    if (!(options.pacingMs >= 0) || !Number.isFinite(options.pacingMs)) {
      throw new RangeError(`pacingMs must be a finite number >= 0, got ${options.pacingMs}`);
    }
    const budget = options.maxDeltaCharacters;
    if (typeof budget === "number" && !(budget >= MINIMUM_TEXT_BUDGET)) {
      throw new RangeError(`maxDeltaCharacters must be at least ${MINIMUM_TEXT_BUDGET}, got ${budget}`);
    }
  }

  /**
   * When the next emit may start (start of the previous emit + pacingMs), or undefined before the
   * first emit. Lets the caller pace the final message the same way.
   */
  get nextEmitAllowedAt(): number | undefined {
    return this.lastEmitStartedAt === undefined ? undefined : this.lastEmitStartedAt + this.options.pacingMs;
  }

  /** Adds text to the stream. Empty text is ignored, as is text after abort() or a failed emit. */
  push(text: string): void {
    if (this.ended) throw new Error("Segmenter.push() called after end()");
    if (text.length === 0 || this.aborted || this.failure) return;
    this.buffer += text;
    // Nothing can go out before the in-flight emit completes or the pacing timer fires, and both
    // pump again then: skip re-measuring the buffer on every token.
    if (this.emitting || this.pacingTimer) return;
    this.pump();
  }

  /**
   * Ends the stream: everything still buffered is emitted (paced, split to the budget, the held-back
   * trailing cluster included). Resolves when the last emit completed; rejects with the error of a
   * failed emit. Calling it again returns the same promise.
   */
  end(): Promise<void> {
    if (!this.endPromise) {
      this.ended = true;
      this.endPromise = new Promise<void>((resolve, reject) => {
        this.settleEnd = { resolve, reject };
      });
      this.pump();
    }
    return this.endPromise;
  }

  /**
   * Stops emitting and drops whatever is buffered. An emit already in flight is left to settle;
   * a pending end() then resolves (or rejects if that emit failed).
   */
  abort(): void {
    this.aborted = true;
    this.buffer = "";
    this.cancelPacingTimer();
    this.settleEndIfDone();
  }

  private pump(): void {
    if (this.emitting || this.aborted || this.failure || this.buffer.length === 0) {
      this.settleEndIfDone();
      return;
    }
    let end: number;
    try {
      end = this.nextDeltaEnd();
    } catch (error) {
      // A budget function that returned something unusable: stop like a failed emit.
      this.fail(error);
      return;
    }
    // Only a held-back trailing cluster is left: wait for more text or end().
    if (end === 0) return;
    const allowedAt = this.nextEmitAllowedAt;
    const now = this.options.clock.now();
    if (allowedAt !== undefined && now < allowedAt) {
      this.schedulePump(allowedAt - now);
      return;
    }
    this.startEmit(this.buffer.slice(0, end));
  }

  /** End offset in `buffer` of the next delta; 0 when nothing may go out yet. */
  private nextDeltaEnd(): number {
    const { maxDeltaCharacters } = this.options;
    const budget = typeof maxDeltaCharacters === "function" ? maxDeltaCharacters() : maxDeltaCharacters;
    if (this.ended) return cutPrefixWithinBudget(this.buffer, budget).end;
    // A trailing lone high surrogate is half a code point: never emitted before its other half (or
    // end()). It is left out before segmenting, because a boundary is only final once the code point
    // after it is complete (a skin tone or a regional indicator may join what precedes it).
    const available = isHighSurrogate(this.buffer.charCodeAt(this.buffer.length - 1))
      ? this.buffer.slice(0, -1)
      : this.buffer;
    if (available.length === 0) return 0;
    const { end, lastClusterStart } = cutPrefixWithinBudget(available, budget);
    // Everything available fits: its last cluster may still grow with text not received yet.
    // Boundaries before it are final (see trailingClusterMayGrow).
    if (lastClusterStart !== undefined && trailingClusterMayGrow(available.slice(lastClusterStart))) {
      return lastClusterStart;
    }
    return end;
  }

  private startEmit(delta: string): void {
    this.buffer = this.buffer.slice(delta.length);
    this.emitting = true;
    this.lastEmitStartedAt = this.options.clock.now();
    let sent: Promise<void>;
    try {
      sent = Promise.resolve(this.options.emit(delta));
    } catch (error) {
      // An emit that throws instead of rejecting is treated the same.
      sent = Promise.reject(error);
    }
    sent.then(
      () => {
        this.emitting = false;
        this.pump();
      },
      (error: unknown) => {
        this.emitting = false;
        this.fail(error);
      },
    );
  }

  private fail(error: unknown): void {
    this.failure = { error };
    this.buffer = "";
    this.cancelPacingTimer();
    this.settleEndIfDone();
  }

  private schedulePump(delayMs: number): void {
    if (this.pacingTimer) return;
    const timer = {
      handle: this.options.clock.setTimeout(() => {
        if (this.pacingTimer === timer) this.pacingTimer = undefined;
        this.pump();
      }, delayMs),
    };
    this.pacingTimer = timer;
  }

  private cancelPacingTimer(): void {
    if (!this.pacingTimer) return;
    this.options.clock.clearTimeout(this.pacingTimer.handle);
    this.pacingTimer = undefined;
  }

  /** Settles a pending end() once nothing is in flight and nothing is left to emit. */
  private settleEndIfDone(): void {
    const settle = this.settleEnd;
    if (!settle || this.emitting) return;
    if (this.failure) {
      this.settleEnd = undefined;
      settle.reject(this.failure.error);
    } else if (this.aborted || this.buffer.length === 0) {
      this.settleEnd = undefined;
      settle.resolve();
    }
  }
}
