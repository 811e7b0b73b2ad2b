/**
 * Runs a generator for one reply: idle and total timeouts, and the reply's cancellation signal.
 * The generator gets one signal that fires on any of them, so its upstream connection is closed
 * as soon as the reply no longer wants text (a stop, a lost lease, a failed delivery, shutdown).
 * A generator that ignores its signal still cannot hold the reply: every step races the signal.
 *
 * @module
 */
import type { GenerationRequest, ReplyGenerator } from "../generators/types.ts";
import { type CancelReason, cancelReasonOf } from "./cancellation.ts";
import type { Clock } from "./clock.ts";

export type GenerationOutcome =
  | { kind: "completed" }
  | { kind: "timeout"; reason: string }
  | { kind: "failed"; reason: string }
  | { kind: "cancelled"; reason: CancelReason };

export interface GenerationOptions {
  generator: ReplyGenerator;
  request: GenerationRequest;
  /** The reply's signal (reply/cancellation.ts). */
  signal: AbortSignal;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  clock: Clock;
  /** Called for every non-empty piece; may throw to end the generation (counted as failed). */
  onPiece: (piece: string) => void | Promise<void>;
}

/** Never throws: every way a generation ends is an outcome. */
export async function runGeneration(options: GenerationOptions): Promise<GenerationOutcome> {
  const { clock } = options;
  const controller = new AbortController();
  let timeoutReason: string | undefined;
  const stopWith = (reason: unknown) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const onReplyAbort = () => stopWith(options.signal.reason);
  if (options.signal.aborted) onReplyAbort();
  else options.signal.addEventListener("abort", onReplyAbort, { once: true });
  const timeout = (reason: string) => {
    timeoutReason ??= reason;
    stopWith(new Error(reason));
  };
  // One idle timer per generation, not one per piece: a piece only notes when it came, and the
  // timer, when it fires, waits again for whatever is left of the idle time since the last piece.
  let lastPieceAt = clock.now();
  const checkIdle = () => {
    const idleFor = clock.now() - lastPieceAt;
    if (idleFor >= options.idleTimeoutMs) timeout("idle timeout");
    else idleTimer = clock.setTimeout(checkIdle, options.idleTimeoutMs - idleFor);
  };
  let idleTimer = clock.setTimeout(checkIdle, options.idleTimeoutMs);
  const totalTimer = clock.setTimeout(() => timeout("total timeout"), options.totalTimeoutMs);
  // A generator that ignores its signal must not hold the reply: each wait for the next piece
  // also ends when the signal fires. One slot for the current wait, rather than a Promise.race
  // against one long-lived promise, which would keep a reaction per piece until the reply ends
  // (hundreds per reply, hundreds of thousands with 2,000 streams).
  let abortCurrentStep: ((reason: unknown) => void) | undefined;
  controller.signal.addEventListener("abort", () => abortCurrentStep?.(controller.signal.reason), { once: true });
  const nextStep = (source: AsyncIterator<string>) =>
    new Promise<IteratorResult<string>>((resolve, reject) => {
      if (controller.signal.aborted) {
        reject(controller.signal.reason);
        return;
      }
      abortCurrentStep = reject;
      source.next().then(resolve, reject);
    });
  const outcomeAfterAbort = (error: unknown): GenerationOutcome => {
    const cancelled = cancelReasonOf(options.signal);
    if (cancelled) return { kind: "cancelled", reason: cancelled };
    if (timeoutReason) return { kind: "timeout", reason: timeoutReason };
    return { kind: "failed", reason: (error as Error)?.message ?? String(error) };
  };
  let iterator: AsyncIterator<string> | undefined;
  try {
    iterator = options.generator.generate(options.request, controller.signal)[Symbol.asyncIterator]();
    while (true) {
      const step = await nextStep(iterator);
      abortCurrentStep = undefined;
      if (step.done) break;
      if (typeof step.value === "string" && step.value.length > 0) {
        lastPieceAt = clock.now();
        await options.onPiece(step.value);
        if (controller.signal.aborted) return outcomeAfterAbort(controller.signal.reason);
      }
    }
    if (controller.signal.aborted) return outcomeAfterAbort(controller.signal.reason);
    return { kind: "completed" };
  } catch (error) {
    return outcomeAfterAbort(error);
  } finally {
    clock.clearTimeout(idleTimer);
    clock.clearTimeout(totalTimer);
    options.signal.removeEventListener("abort", onReplyAbort);
    stopWith(new Error("reply finished"));
    iterator?.return?.().catch(() => {});
  }
}

/** Marks where a regenerated answer starts when a resumed generation did not repeat what was sent. */
export const REGENERATED_MARKER = "\n\n[重新生成 / regenerated]\n";

/**
 * After a restart the generator runs again, but the user already saw `committed`. When the new
 * output starts with exactly that text (deterministic generators, temperature 0), only the rest
 * is sent; when it diverges, the new answer is sent in full after a visible marker. Either way
 * no seq is repeated and the final text equals what the user saw.
 */
export function createResumeFilter(committed: string): { push(piece: string): string } {
  if (committed === "") return { push: (piece) => piece };
  let buffered = "";
  let decided = false;
  return {
    push(piece: string): string {
      if (decided) return piece;
      buffered += piece;
      const overlap = Math.min(buffered.length, committed.length);
      if (buffered.slice(0, overlap) !== committed.slice(0, overlap)) {
        decided = true;
        const out = REGENERATED_MARKER + buffered;
        buffered = "";
        return out;
      }
      if (buffered.length >= committed.length) {
        decided = true;
        const out = buffered.slice(committed.length);
        buffered = "";
        return out;
      }
      return "";
    },
  };
}
