/**
 * Abort handling shared by the generators. Every generator reports an aborted generation the same
 * way, as `GeneratorError("aborted")`, so that a cut-off answer never looks like a complete one to
 * a caller that only watches for the end of the iteration.
 */
import { GeneratorError } from "./types.ts";

/** The error every generator throws once its signal has aborted. */
export function abortedError(signal: AbortSignal): GeneratorError {
  return new GeneratorError("aborted", undefined, { cause: signal.reason });
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortedError(signal);
}

/** Waits `milliseconds`, or rejects with `abortedError` as soon as `signal` aborts. */
export function delay(milliseconds: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortedError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, milliseconds);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
