/**
 * The shared contract suite of the rate limits, run by limits.test.ts once per backend (memory,
 * Redis), so both behave the same for the HTTP layer and the reply pipeline:
 *
 * - a key gets `points` and is refused after, with a retryAfterMs inside the window;
 * - keys, and limiters with different prefixes, are independent;
 * - a window resets after its duration;
 * - reply limits enforce the per-minute and the per-day window;
 * - the send budget makes a burst wait (10 sends at 5/s, burst 5, take about a second), keeps
 *   groups apart, and gives up after maxWaitMs or when aborted.
 *
 * Windows are 1 s and timing bounds are generous: the suite checks behaviour, not the scheduler.
 */
import type { Redis } from "ioredis";
import { describe, expect, test } from "vitest";
import { createRateLimit, createReplyLimits, createSendBudget, SendBudgetTimeoutError } from "./index.ts";

export interface LimitsConformanceHarness {
  /** The Redis client the factories get; undefined for the memory backend. */
  redis(): Redis | undefined;
  /** A key prefix that no other test or run uses. */
  keyPrefix(label: string): string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function runLimitsConformance(name: string, harness: LimitsConformanceHarness): void {
  const backend = () => {
    const redis = harness.redis();
    return redis ? { redis } : {};
  };

  describe(`rate limits conformance: ${name}`, () => {
    test("a key gets `points`, then is refused with a retryAfterMs inside the window", async () => {
      const limit = createRateLimit({
        points: 3,
        durationSeconds: 10,
        keyPrefix: harness.keyPrefix("points"),
        ...backend(),
      });
      for (let index = 0; index < 3; index++) expect(await limit.consume("user-1")).toEqual({ allowed: true });
      const refused = await limit.consume("user-1");
      expect(refused.allowed).toBe(false);
      if (refused.allowed) return;
      expect(refused.retryAfterMs).toBeGreaterThan(8_000);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(10_000);
    });

    test("consume(key, points) counts several points at once", async () => {
      const limit = createRateLimit({
        points: 5,
        durationSeconds: 10,
        keyPrefix: harness.keyPrefix("weights"),
        ...backend(),
      });
      expect((await limit.consume("user-1", 4)).allowed).toBe(true);
      expect((await limit.consume("user-1", 2)).allowed).toBe(false);
    });

    test("keys and prefixes are independent", async () => {
      const prefix = harness.keyPrefix("independent");
      const limit = createRateLimit({ points: 1, durationSeconds: 10, keyPrefix: prefix, ...backend() });
      const other = createRateLimit({ points: 1, durationSeconds: 10, keyPrefix: `${prefix}-other`, ...backend() });
      expect((await limit.consume("user-1")).allowed).toBe(true);
      expect((await limit.consume("user-1")).allowed).toBe(false);
      expect((await limit.consume("user-2")).allowed).toBe(true);
      expect((await other.consume("user-1")).allowed).toBe(true);
    });

    test("the window resets after its duration", async () => {
      const limit = createRateLimit({
        points: 2,
        durationSeconds: 1,
        keyPrefix: harness.keyPrefix("reset"),
        ...backend(),
      });
      await limit.consume("user-1");
      await limit.consume("user-1");
      const refused = await limit.consume("user-1");
      expect(refused.allowed).toBe(false);
      if (refused.allowed) return;
      expect(refused.retryAfterMs).toBeLessThanOrEqual(1000);
      await sleep(refused.retryAfterMs + 50);
      expect((await limit.consume("user-1")).allowed).toBe(true);
    });

    test("reply limits: the per-minute window is enforced", async () => {
      const limits = createReplyLimits({
        perMinute: 3,
        perDay: 100,
        keyPrefix: harness.keyPrefix("minute"),
        ...backend(),
      });
      for (let index = 0; index < 3; index++) expect((await limits.consume("user-1")).allowed).toBe(true);
      const refused = await limits.consume("user-1");
      expect(refused.allowed).toBe(false);
      if (refused.allowed) return;
      expect(refused.retryAfterMs).toBeGreaterThan(50_000);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);
      expect((await limits.consume("user-2")).allowed).toBe(true);
    });

    test("reply limits: the per-day window is enforced", async () => {
      const limits = createReplyLimits({
        perMinute: 100,
        perDay: 2,
        keyPrefix: harness.keyPrefix("day"),
        ...backend(),
      });
      expect((await limits.consume("user-1")).allowed).toBe(true);
      expect((await limits.consume("user-1")).allowed).toBe(true);
      const refused = await limits.consume("user-1");
      expect(refused.allowed).toBe(false);
      if (refused.allowed) return;
      expect(refused.retryAfterMs).toBeGreaterThan(60_000);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(24 * 60 * 60 * 1000);
    });

    test("the send budget spreads a burst: 10 sends at 5/s with burst 5 take about a second", async () => {
      const budget = createSendBudget({
        ratePerSecond: 5,
        burst: 5,
        keyPrefix: harness.keyPrefix("send"),
        ...backend(),
      });
      const startedAt = Date.now();
      const grantedAfter: number[] = [];
      await Promise.all(
        Array.from({ length: 10 }, () =>
          budget.acquire("sendMsg").then(() => grantedAfter.push(Date.now() - startedAt)),
        ),
      );
      grantedAfter.sort((a, b) => a - b);
      // The first five at once, the next five when the window opens again.
      expect(grantedAfter[4]).toBeLessThan(500);
      expect(grantedAfter[5]).toBeGreaterThanOrEqual(900);
      expect(grantedAfter[9]).toBeLessThan(2500);
    });

    test("the send budget serves waiters in the order they asked: each stream gets its turn", async () => {
      const budget = createSendBudget({
        ratePerSecond: 4,
        burst: 4,
        keyPrefix: harness.keyPrefix("order"),
        ...backend(),
      });
      // Use up the window, then twelve streams ask one after another.
      await Promise.all(Array.from({ length: 4 }, () => budget.acquire("sendMsg")));
      const granted: number[] = [];
      await Promise.all(
        Array.from({ length: 12 }, (_, stream) => budget.acquire("sendMsg").then(() => granted.push(stream))),
      );
      expect(granted).toEqual(Array.from({ length: 12 }, (_, stream) => stream));
    });

    test("send budget groups are independent", async () => {
      const budget = createSendBudget({
        ratePerSecond: 1,
        burst: 1,
        keyPrefix: harness.keyPrefix("groups"),
        ...backend(),
      });
      await budget.acquire("group-a");
      const startedAt = Date.now();
      await budget.acquire("group-b");
      expect(Date.now() - startedAt).toBeLessThan(300);
    });

    test("an acquire gives up after maxWaitMs instead of waiting for a turn that comes too late", async () => {
      const budget = createSendBudget({
        ratePerSecond: 1,
        burst: 1,
        maxWaitMs: 200,
        keyPrefix: harness.keyPrefix("timeout"),
        ...backend(),
      });
      await budget.acquire("sendMsg");
      const startedAt = Date.now();
      await expect(budget.acquire("sendMsg")).rejects.toBeInstanceOf(SendBudgetTimeoutError);
      expect(Date.now() - startedAt).toBeLessThan(500);
    });

    test("an acquire rejects with the signal's reason when aborted while waiting", async () => {
      const budget = createSendBudget({
        ratePerSecond: 1,
        burst: 1,
        keyPrefix: harness.keyPrefix("abort"),
        ...backend(),
      });
      await budget.acquire("sendMsg");
      const controller = new AbortController();
      const reason = new Error("reply cancelled");
      const startedAt = Date.now();
      setTimeout(() => controller.abort(reason), 100);
      await expect(budget.acquire("sendMsg", controller.signal)).rejects.toBe(reason);
      expect(Date.now() - startedAt).toBeLessThan(600);
    });
  });
}
