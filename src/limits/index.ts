/**
 * Rate limits on rate-limiter-flexible, in memory (one process) or in Redis (shared by every
 * instance), behind the interfaces of ./types.ts.
 *
 * rate-limiter-flexible counts points in a fixed window that starts at a key's first consume and
 * lasts `durationSeconds`. Windows are whole seconds on purpose: RateLimiterRedis truncates the
 * duration to whole seconds, and a truncated 0 means "never expires" — a key that would stay
 * blocked for good. Both backends get the same whole-second windows so they behave alike.
 *
 * The Redis limiter is built with `rejectIfRedisNotReady`: while Redis is unreachable, consume()
 * rejects at once instead of waiting in ioredis's offline queue (forever, on a client made for
 * BullMQ with maxRetriesPerRequest: null). Whether to let traffic through then is the caller's call.
 */
import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterQueue, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { RateLimit, RateLimitDecision, SendBudget } from "./types.ts";

export type { RateLimit, RateLimitDecision, SendBudget } from "./types.ts";

export interface RateLimitOptions {
  /** Points a key may consume per window. */
  points: number;
  /** Window length in whole seconds (at least 1). */
  durationSeconds: number;
  /** Namespaces the keys; limiters sharing a prefix (and a Redis) share their counters. */
  keyPrefix: string;
  /** Shares the counters through Redis; without it they live in this process. */
  redis?: Redis;
}

export function createRateLimit(options: RateLimitOptions): RateLimit {
  requirePositiveInteger("points", options.points);
  requirePositiveInteger("durationSeconds", options.durationSeconds);
  if (options.keyPrefix.length === 0) throw new RangeError("keyPrefix must not be empty");
  const settings = { points: options.points, duration: options.durationSeconds, keyPrefix: options.keyPrefix };
  const limiter = options.redis
    ? new RateLimiterRedis({ ...settings, storeClient: options.redis, rejectIfRedisNotReady: true })
    : new RateLimiterMemory(settings);
  return {
    async consume(key: string, points = 1): Promise<RateLimitDecision> {
      requirePositiveInteger("points", points);
      try {
        await limiter.consume(key, points);
        return { allowed: true };
      } catch (rejection) {
        // rate-limiter-flexible rejects with a RateLimiterRes for "over the limit" and with an
        // Error when the store fails; only the first is a decision.
        if (rejection instanceof RateLimiterRes) {
          return { allowed: false, retryAfterMs: Math.max(0, rejection.msBeforeNext) };
        }
        if (rejection instanceof Error) throw rejection;
        throw new Error(`rate limiter failed: ${String(rejection)}`);
      }
    },
  };
}

export interface ReplyLimitsOptions {
  /** Messages one user may have answered per minute. */
  perMinute: number;
  /** Messages one user may have answered per day (a 24-hour window from the first, not a calendar day). */
  perDay: number;
  redis?: Redis;
  /** Default "im-bridge:reply"; the two windows use `<prefix>:minute` and `<prefix>:day`. */
  keyPrefix?: string;
}

/**
 * Both windows for a user; a message goes ahead only when both allow it. The minute window is
 * asked first and a message it refuses is not charged to the day, so a user hammering the
 * per-minute limit does not also burn their daily allowance.
 */
export function createReplyLimits(options: ReplyLimitsOptions): RateLimit {
  const prefix = options.keyPrefix ?? "im-bridge:reply";
  const redis = options.redis ? { redis: options.redis } : {};
  const perMinute = createRateLimit({
    points: options.perMinute,
    durationSeconds: 60,
    keyPrefix: `${prefix}:minute`,
    ...redis,
  });
  const perDay = createRateLimit({
    points: options.perDay,
    durationSeconds: 24 * 60 * 60,
    keyPrefix: `${prefix}:day`,
    ...redis,
  });
  return {
    async consume(key: string, points = 1): Promise<RateLimitDecision> {
      const minute = await perMinute.consume(key, points);
      if (!minute.allowed) return minute;
      return perDay.consume(key, points);
    },
  };
}

export interface SendBudgetOptions {
  /** Sustained sends per second per group; the budget never exceeds it. */
  ratePerSecond: number;
  /** Sends that may go at once (a whole number). */
  burst: number;
  redis?: Redis;
  /** Default "im-bridge:send". */
  keyPrefix?: string;
  /** Longest an acquire waits for its turn before it rejects (default 10 s; Infinity: no limit). */
  maxWaitMs?: number;
}

/** An acquire whose turn would not come within the budget's maximum wait. */
export class SendBudgetTimeoutError extends Error {
  override readonly name = "SendBudgetTimeoutError";
  constructor(
    readonly group: string,
    readonly maxWaitMs: number,
  ) {
    super(`send budget for "${group}": no turn within ${maxWaitMs} ms`);
  }
}

/**
 * The fixed window that implements a send rate: `burst` sends per window of
 * ceil(burst / ratePerSecond) whole seconds (at least 1). The rate stays at or below
 * ratePerSecond and exactly matches it when burst is a multiple of ratePerSecond (burst =
 * ratePerSecond is the natural setting). A burst below the rate is honoured and caps the rate at
 * burst per second: under a limit is the side to err on for NIM's 416.
 *
 * A fixed window can let one window's sends at its end and the next window's at its start go
 * close together (up to 2 × burst within a short span), so configure ratePerSecond with some
 * headroom under NIM's limit.
 */
export function sendBudgetWindow(ratePerSecond: number, burst: number): { points: number; durationSeconds: number } {
  if (!(Number.isFinite(ratePerSecond) && ratePerSecond > 0)) {
    throw new RangeError("ratePerSecond must be a positive number");
  }
  requirePositiveInteger("burst", burst);
  return { points: burst, durationSeconds: Math.max(1, Math.ceil(burst / ratePerSecond)) };
}

/**
 * A send budget per group that waits instead of failing: acquires over the budget queue in order
 * (rate-limiter-flexible's RateLimiterQueue, first in first out per group) and are granted as the
 * window opens again. Every reply has at most one send waiting at a time (its writer is serial),
 * so the queue serves the streams in turn: each gets its fair share of the rate, and none waits
 * more than one round of the others. Without Redis the budget is per process: with several
 * instances, give them Redis (the window is then shared; each instance keeps its own queue) or
 * divide the rate between them.
 */
export function createSendBudget(options: SendBudgetOptions): SendBudget & {
  readonly window: { points: number; durationSeconds: number };
} {
  const window = sendBudgetWindow(options.ratePerSecond, options.burst);
  const maxWaitMs = options.maxWaitMs ?? 10_000;
  const settings = {
    points: window.points,
    duration: window.durationSeconds,
    keyPrefix: options.keyPrefix ?? "im-bridge:send",
  };
  const limiter = options.redis
    ? new RateLimiterRedis({ ...settings, storeClient: options.redis, rejectIfRedisNotReady: true })
    : new RateLimiterMemory(settings);
  const queue = new RateLimiterQueue(limiter);
  return {
    window,
    acquire(group: string, signal?: AbortSignal): Promise<void> {
      if (signal?.aborted) return Promise.reject(signal.reason);
      const turn = queue.removeTokens(1, group);
      return new Promise<void>((resolve, reject) => {
        // A waiter that gives up (abort, timeout) leaves its place in the queue: the token it is
        // granted later goes unused, which errs on the side of NIM's limit.
        let timer: NodeJS.Timeout | undefined;
        const settle = (outcome: () => void) => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          outcome();
        };
        const onAbort = () => settle(() => reject(signal?.reason));
        signal?.addEventListener("abort", onAbort, { once: true });
        if (Number.isFinite(maxWaitMs)) {
          timer = setTimeout(() => settle(() => reject(new SendBudgetTimeoutError(group, maxWaitMs))), maxWaitMs);
        }
        turn.then(
          () => settle(resolve),
          (error: unknown) =>
            settle(() => reject(error instanceof Error ? error : new Error(`send budget failed: ${String(error)}`))),
        );
      });
    },
  };
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
}
