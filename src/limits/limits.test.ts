import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { REDIS_URL, services } from "../../test/services.ts";
import { runLimitsConformance } from "./conformance.ts";
import { createRateLimit, createReplyLimits, createSendBudget, sendBudgetWindow } from "./index.ts";

/** Distinct per run, so parallel or leftover runs never share a counter. */
const runPrefix = `im-bridge-test:limits:${randomUUID().slice(0, 8)}`;
let labels = 0;
const keyPrefix = (label: string) => `${runPrefix}:${label}-${++labels}`;

runLimitsConformance("memory", { redis: () => undefined, keyPrefix });

describe.runIf(services.redis)("rate limits on Redis", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    // The limiter refuses to queue commands while the client is not ready yet.
    await redis.ping();
  });
  afterAll(async () => {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${runPrefix}:*`, "COUNT", 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
    await redis.quit();
  });

  runLimitsConformance("Redis", { redis: () => redis, keyPrefix });

  test("limiters with the same prefix share their counters through Redis (two instances)", async () => {
    const prefix = keyPrefix("shared");
    const first = createRateLimit({ points: 2, durationSeconds: 10, keyPrefix: prefix, redis });
    const second = createRateLimit({ points: 2, durationSeconds: 10, keyPrefix: prefix, redis });
    expect((await first.consume("user-1")).allowed).toBe(true);
    expect((await second.consume("user-1")).allowed).toBe(true);
    expect((await first.consume("user-1")).allowed).toBe(false);
  });

  test("a message the minute window refuses is not charged to the day", async () => {
    const prefix = keyPrefix("not-charged");
    const strict = createReplyLimits({ perMinute: 1, perDay: 2, keyPrefix: prefix, redis });
    expect((await strict.consume("user-1")).allowed).toBe(true);
    for (let index = 0; index < 5; index++) expect((await strict.consume("user-1")).allowed).toBe(false);
    // Another instance with a looser minute sees the same day count: one of two used.
    const loose = createReplyLimits({ perMinute: 100, perDay: 2, keyPrefix: prefix, redis });
    const minuteKey = `${prefix}:minute:user-1`;
    await redis.del(minuteKey);
    expect((await loose.consume("user-1")).allowed).toBe(true);
    expect((await loose.consume("user-1")).allowed).toBe(false);
  });
});

describe("rate limit settings", () => {
  test("windows are whole seconds of at least 1 (Redis would make 0.5 s a window that never ends)", () => {
    for (const durationSeconds of [0, 0.5, 1.5, -1]) {
      expect(() => createRateLimit({ points: 1, durationSeconds, keyPrefix: "x" })).toThrow(RangeError);
    }
    expect(() => createRateLimit({ points: 0, durationSeconds: 1, keyPrefix: "x" })).toThrow(RangeError);
    expect(() => createReplyLimits({ perMinute: 1.5, perDay: 10 })).toThrow(RangeError);
  });

  test("points per consume are positive whole numbers", async () => {
    const limit = createRateLimit({ points: 5, durationSeconds: 1, keyPrefix: keyPrefix("weights") });
    await expect(limit.consume("user-1", 0.5)).rejects.toThrow(RangeError);
  });

  test("the send window keeps to the rate and the burst", () => {
    expect(sendBudgetWindow(5, 5)).toEqual({ points: 5, durationSeconds: 1 });
    expect(sendBudgetWindow(5, 10)).toEqual({ points: 10, durationSeconds: 2 });
    // Burst 5 at 2/s: 5 per 3 s, 1.67/s, under the rate.
    expect(sendBudgetWindow(2, 5)).toEqual({ points: 5, durationSeconds: 3 });
    // Less than one send a second.
    expect(sendBudgetWindow(0.5, 1)).toEqual({ points: 1, durationSeconds: 2 });
    // A burst below the rate caps it at burst per second.
    expect(sendBudgetWindow(10, 5)).toEqual({ points: 5, durationSeconds: 1 });
    expect(() => sendBudgetWindow(0, 5)).toThrow(RangeError);
    expect(() => sendBudgetWindow(5, 0)).toThrow(RangeError);
    expect(() => sendBudgetWindow(5, 2.5)).toThrow(RangeError);
    expect(createSendBudget({ ratePerSecond: 3, burst: 6 }).window).toEqual({ points: 6, durationSeconds: 2 });
  });

  test("a Redis that cannot be reached is an error, not a decision", async () => {
    // Port 1: nothing listens; the limiter refuses at once instead of queueing the command.
    const unreachable = new Redis({ host: "127.0.0.1", port: 1, lazyConnect: true, maxRetriesPerRequest: null });
    try {
      const limit = createRateLimit({ points: 1, durationSeconds: 1, keyPrefix: "x", redis: unreachable });
      await expect(limit.consume("user-1")).rejects.toThrow(/not ready/);
    } finally {
      unreachable.disconnect();
    }
  });
});
