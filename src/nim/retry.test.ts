import { describe, expect, it } from "vitest";
import { NimError } from "./errors.ts";
import { backoffDelay, type RetryPolicy, retry } from "./retry.ts";

/** A fake clock that sleeping advances, so deadlines are tested without waiting. */
function fakeTime() {
  let current = 0;
  const sleeps: number[] = [];
  return {
    now: () => current,
    advance: (ms: number) => {
      current += ms;
    },
    sleeps,
    sleep: async (ms: number, signal?: AbortSignal) => {
      signal?.throwIfAborted();
      sleeps.push(ms);
      current += ms;
    },
  };
}

const retryable = (code = 500) => new NimError("api", code, "server error", true, "test");
const terminal = () => new NimError("api", 414, "parameter error", false, "test");
const policy: RetryPolicy = { maxAttempts: 5, deadlineMs: 60_000, baseDelayMs: 100, maxDelayMs: 1_000 };

describe("retry", () => {
  it("returns the first success without sleeping", async () => {
    const time = fakeTime();
    const result = await retry(async () => "ok", policy, { now: time.now, sleep: time.sleep });
    expect(result).toBe("ok");
    expect(time.sleeps).toEqual([]);
  });

  it("retries retryable errors until the operation succeeds", async () => {
    const time = fakeTime();
    const attempts: number[] = [];
    const result = await retry(
      async ({ attempt }) => {
        attempts.push(attempt);
        if (attempt < 3) throw retryable();
        return attempt;
      },
      policy,
      { now: time.now, sleep: time.sleep, random: () => 0.5 },
    );
    expect(result).toBe(3);
    expect(attempts).toEqual([1, 2, 3]);
    expect(time.sleeps).toHaveLength(2);
  });

  it("stops at once on a terminal error", async () => {
    const time = fakeTime();
    let calls = 0;
    const error = terminal();
    await expect(
      retry(
        async () => {
          calls += 1;
          throw error;
        },
        policy,
        { now: time.now, sleep: time.sleep },
      ),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
    expect(time.sleeps).toEqual([]);
  });

  it("does not retry plain errors without a retryable flag", async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
          throw new Error("bug");
        },
        policy,
        { sleep: async () => {} },
      ),
    ).rejects.toThrow("bug");
    expect(calls).toBe(1);
  });

  it("gives up after maxAttempts and throws the last error", async () => {
    const time = fakeTime();
    let calls = 0;
    const errors = Array.from({ length: 5 }, (_, index) => retryable(500 + index));
    await expect(
      retry(
        async () => {
          calls += 1;
          throw errors[calls - 1];
        },
        { ...policy, maxAttempts: 4 },
        { now: time.now, sleep: time.sleep },
      ),
    ).rejects.toBe(errors[3]);
    expect(calls).toBe(4);
    expect(time.sleeps).toHaveLength(3);
  });

  it("never sleeps past the deadline", async () => {
    const time = fakeTime();
    let calls = 0;
    // Each attempt takes 300 ms; pauses are exactly 100, 200, 400 … (random 1 with equal jitter).
    await expect(
      retry(
        async () => {
          calls += 1;
          time.advance(300);
          throw retryable();
        },
        { maxAttempts: 50, deadlineMs: 1_500, baseDelayMs: 100, maxDelayMs: 10_000 },
        { now: time.now, sleep: time.sleep, random: () => 0.999_999 },
      ),
    ).rejects.toBeInstanceOf(NimError);
    // 300 +100 +300 +200 +300 = 1200; the next pause (400) would end at 1900 > 1500: give up.
    expect(calls).toBe(3);
    expect(time.sleeps).toEqual([100, 200]);
    expect(time.now()).toBeLessThanOrEqual(1_500);
  });

  it("hands each attempt the time left until the deadline", async () => {
    const time = fakeTime();
    const remaining: number[] = [];
    await retry(
      async ({ attempt, remainingMs }) => {
        remaining.push(remainingMs);
        if (attempt < 2) throw retryable();
        return "ok";
      },
      { maxAttempts: 3, deadlineMs: 1_000, baseDelayMs: 100, jitter: "full" },
      { now: time.now, sleep: time.sleep, random: () => 0.5 },
    );
    expect(remaining).toEqual([1_000, 950]);
  });

  it("without a deadline, only maxAttempts bounds the loop", async () => {
    const time = fakeTime();
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
          time.advance(1_000_000);
          throw retryable();
        },
        { maxAttempts: 3 },
        { now: time.now, sleep: time.sleep },
      ),
    ).rejects.toBeInstanceOf(NimError);
    expect(calls).toBe(3);
  });

  it("honours a server-requested Retry-After as a floor", async () => {
    const time = fakeTime();
    const error = new NimError("http", 429, "HTTP 429", true, "test", { retryAfterMs: 2_000 });
    let calls = 0;
    await retry(
      async () => {
        calls += 1;
        if (calls === 1) throw error;
        return "ok";
      },
      policy,
      { now: time.now, sleep: time.sleep, random: () => 0 },
    );
    expect(time.sleeps).toEqual([2_000]);
  });

  it("stops when aborted during a pause and throws the abort reason", async () => {
    const controller = new AbortController();
    let calls = 0;
    const reason = new Error("shutting down");
    const promise = retry(
      async () => {
        calls += 1;
        throw retryable();
      },
      { maxAttempts: 10, baseDelayMs: 10_000, maxDelayMs: 10_000 },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(reason), 20);
    await expect(promise).rejects.toBe(reason);
    expect(calls).toBe(1);
  });

  it("does not start when the signal is already aborted", async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
        },
        policy,
        { signal: AbortSignal.abort(new Error("gone")) },
      ),
    ).rejects.toThrow("gone");
    expect(calls).toBe(0);
  });

  it("reports each retry with its pause", async () => {
    const time = fakeTime();
    const events: Array<{ attempt: number; delayMs: number }> = [];
    await retry(
      async ({ attempt }) => {
        if (attempt < 3) throw retryable();
      },
      policy,
      {
        now: time.now,
        sleep: time.sleep,
        random: () => 0,
        onRetry: ({ attempt, delayMs }) => events.push({ attempt, delayMs }),
      },
    );
    expect(events).toEqual([
      { attempt: 1, delayMs: 50 },
      { attempt: 2, delayMs: 100 },
    ]);
  });
});

describe("backoffDelay", () => {
  const capped: RetryPolicy = { maxAttempts: 20, baseDelayMs: 100, maxDelayMs: 1_000 };

  it("doubles per retry and is capped", () => {
    const ceilings = [1, 2, 3, 4, 5, 6, 30, 2000].map((retryNumber) =>
      backoffDelay(retryNumber, { ...capped, jitter: "full" }, () => 0.999_999_9),
    );
    expect(ceilings).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000]);
  });

  it("full jitter spans [0, ceiling]", () => {
    expect(backoffDelay(3, { ...capped, jitter: "full" }, () => 0)).toBe(0);
    expect(backoffDelay(3, { ...capped, jitter: "full" }, () => 0.5)).toBe(200);
  });

  it("equal jitter keeps at least half the ceiling (the default)", () => {
    expect(backoffDelay(3, capped, () => 0)).toBe(200);
    expect(backoffDelay(3, capped, () => 0.5)).toBe(300);
    expect(backoffDelay(3, { ...capped, jitter: "equal" }, () => 0.999_999_9)).toBe(400);
  });

  it("a broken random source cannot make the pause negative or uncapped", () => {
    expect(backoffDelay(10, capped, () => Number.NaN)).toBe(500);
    expect(backoffDelay(10, capped, () => 5)).toBe(1_000);
    expect(backoffDelay(10, { ...capped, jitter: "full" }, () => -1)).toBe(0);
  });
});
