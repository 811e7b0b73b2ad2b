/**
 * The one retry policy for every call to NIM: capped exponential back-off with jitter, a maximum
 * number of attempts and an overall deadline, abortable by an AbortSignal. Only errors that say
 * they are worth another attempt (`retryable: true`) are retried; everything else ends the loop.
 *
 * Randomness, sleeping and the clock are injectable so tests run without real waiting.
 *
 * @example
 * const result = await retry(
 *   ({ attempt, remainingMs }) => callNim({ timeoutMs: Math.min(5000, remainingMs) }),
 *   { maxAttempts: 6, deadlineMs: 30_000, baseDelayMs: 200, maxDelayMs: 5_000 },
 *   { signal },
 * );
 */

export interface RetryPolicy {
  /** Attempts in total, the first one included (at least 1). */
  maxAttempts: number;
  /**
   * Budget for the whole loop, attempts and sleeps, in ms from the start. Omitted or Infinity: no
   * overall deadline. The loop never sleeps past it; an attempt running over it is the caller's to
   * cut short (use `remainingMs`).
   */
  deadlineMs?: number;
  /** Back-off before the first retry, doubled for each further retry. Default 200 ms. */
  baseDelayMs?: number;
  /** Cap on one back-off. Default 5 s. */
  maxDelayMs?: number;
  /**
   * "full": uniform in [0, backoff]. "equal": uniform in [backoff/2, backoff], which keeps a minimum
   * pause (useful against NIM's 416 frequency control, where retrying at once only burns quota).
   * Default "equal".
   */
  jitter?: "full" | "equal";
}

export interface RetryAttempt {
  /** 1 for the first attempt. */
  attempt: number;
  /** Time left until the overall deadline, in ms (Infinity without one). */
  remainingMs: number;
}

export interface RetryEvent {
  /** The attempt that just failed (1-based). */
  attempt: number;
  error: unknown;
  /** The pause before the next attempt. */
  delayMs: number;
}

export interface RetryOptions {
  /** Aborts the loop: a pending sleep ends at once and the signal's reason is thrown. */
  signal?: AbortSignal;
  /** Monotonic ms clock for the deadline. Default `performance.now()`. */
  now?: () => number;
  /** Sleeps `ms`, rejecting with the signal's reason when it aborts. Default: a timer. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Uniform in [0, 1). Default `Math.random`. */
  random?: () => number;
  /** Default: `error.retryable === true`. */
  isRetryable?: (error: unknown) => boolean;
  /** Called before each pause, e.g. to log the retry. */
  onRetry?: (event: RetryEvent) => void;
}

const defaultBaseDelayMs = 200;
/** The least time worth starting another attempt with. */
export const MINIMUM_ATTEMPT_MS = 100;
const defaultMaxDelayMs = 5_000;

/**
 * Runs `operation` until it succeeds, fails with a non-retryable error, runs out of attempts, or
 * the next pause would end at or after the deadline. The error thrown is the operation's own last
 * error (so callers still see NIM's code), or the abort reason.
 */
export async function retry<T>(
  operation: (attempt: RetryAttempt) => Promise<T>,
  policy: RetryPolicy,
  options: RetryOptions = {},
): Promise<T> {
  const now = options.now ?? (() => performance.now());
  const sleep = options.sleep ?? abortableSleep;
  const random = options.random ?? Math.random;
  const isRetryable = options.isRetryable ?? hasRetryableFlag;
  const maxAttempts = Math.max(1, Math.floor(policy.maxAttempts));
  const deadlineMs = policy.deadlineMs ?? Number.POSITIVE_INFINITY;
  const startedAt = now();
  const remaining = () => startedAt + deadlineMs - now();

  for (let attempt = 1; ; attempt += 1) {
    options.signal?.throwIfAborted();
    try {
      return await operation({ attempt, remainingMs: remaining() });
    } catch (error) {
      // An abort that surfaced as the operation's error is still an abort: no retry.
      options.signal?.throwIfAborted();
      if (!isRetryable(error) || attempt >= maxAttempts) throw error;
      const delayMs = Math.max(backoffDelay(attempt, policy, random), retryAfterOf(error));
      // Sleeping up to the deadline and then starting an attempt with almost no time left helps
      // nobody: it would likely end in a read timeout, which is ambiguous (NIM may have acted) and
      // final, where the error in hand (a 416, a refused connection) is clear.
      if (delayMs + MINIMUM_ATTEMPT_MS >= remaining()) throw error;
      options.onRetry?.({ attempt, error, delayMs });
      await sleep(delayMs, options.signal);
    }
  }
}

/**
 * The pause before retry number `retryNumber` (1 = the pause after the first failed attempt):
 * min(maxDelay, base * 2^(retryNumber-1)), jittered, rounded to whole ms.
 */
export function backoffDelay(retryNumber: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const base = policy.baseDelayMs ?? defaultBaseDelayMs;
  const cap = policy.maxDelayMs ?? defaultMaxDelayMs;
  // 2 ** 1100 is Infinity, and Math.min handles that, so no overflow guard is needed.
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, retryNumber - 1));
  const fraction = clampFraction(random());
  const delay = policy.jitter === "full" ? ceiling * fraction : ceiling / 2 + (ceiling / 2) * fraction;
  return Math.round(delay);
}

/** Resolves after `ms`; rejects with the signal's reason as soon as it aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function hasRetryableFlag(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { retryable?: unknown }).retryable === true;
}

function retryAfterOf(error: unknown): number {
  const value = typeof error === "object" && error !== null ? (error as { retryAfterMs?: unknown }).retryAfterMs : 0;
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : 0;
}

// A broken random source (NaN, 1, negative) must not produce a negative or uncapped pause.
function clampFraction(value: number): number {
  if (!Number.isFinite(value) || value < 0) return 0;
  return Math.min(value, 1);
}
