/**
 * Rate limits on HTTP routes: an optional per-minute limit and the 429 it answers with.
 *
 * @module
 */
import type { Redis } from "ioredis";
import { HttpError } from "../http/errors.ts";
import { createRateLimit } from "./index.ts";
import type { RateLimit } from "./types.ts";

/** A per-minute limit, or undefined when `perMinute` is 0 (off). Shared across instances with Redis. */
export function optionalPerMinuteLimit(
  perMinute: number,
  keyPrefix: string,
  redis: Redis | undefined,
): RateLimit | undefined {
  if (perMinute <= 0) return undefined;
  return createRateLimit({ points: perMinute, durationSeconds: 60, keyPrefix, ...(redis ? { redis } : {}) });
}

/** Consumes one point; throws 429 with Retry-After when the limit is used up. */
export async function enforceLimit(limit: RateLimit | undefined, key: string): Promise<void> {
  if (!limit) return;
  const decision = await limit.consume(key);
  if (decision.allowed) return;
  const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
  throw new HttpError(429, "rate_limited", `Too many requests; retry in ${seconds} s`, {
    "Retry-After": String(seconds),
  });
}
