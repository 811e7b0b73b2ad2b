import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REDIS_URL, services } from "../../test/services.ts";
import { createRedisKeyedLock, LockTimeoutError, LockUnavailableError } from "./redis-lock.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe("createRedisKeyedLock without Redis", () => {
  it("fails fast with LockUnavailableError instead of waiting out the outage", async () => {
    // Port 1: nothing listens; with maxRetriesPerRequest: null a command would wait forever.
    const redis = new Redis("redis://127.0.0.1:1", { maxRetriesPerRequest: null, lazyConnect: true });
    redis.on("error", () => {});
    try {
      const lock = createRedisKeyedLock({ redis, keyPrefix: "test", commandTimeoutMs: 200 });
      const startedAt = Date.now();
      let ran = false;
      await expect(
        lock.run("user", async () => {
          ran = true;
        }),
      ).rejects.toBeInstanceOf(LockUnavailableError);
      expect(ran).toBe(false);
      expect(Date.now() - startedAt).toBeLessThan(1500);
    } finally {
      redis.disconnect();
    }
  });
});

describe.runIf(services.redis)("createRedisKeyedLock on Redis", () => {
  const prefix = `im-bridge-test-lock-${randomUUID().slice(0, 8)}`;
  let first: Redis;
  let second: Redis;

  beforeAll(() => {
    // Two clients, as two instances have: the lock must hold across connections, not only in one.
    first = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    second = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    const keys = await first.keys(`${prefix}:*`);
    if (keys.length > 0) await first.del(...keys);
    await first.quit();
    await second.quit();
  });

  it("runs tasks with the same key one at a time across clients, and different keys together", async () => {
    const locks = [first, second].map((redis) => createRedisKeyedLock({ redis, keyPrefix: prefix, retryDelayMs: 5 }));
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const task = (index: number) => async () => {
      running++;
      most = Math.max(most, running);
      await sleep(20);
      order.push(index);
      running--;
      return index;
    };
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, index) => locks[index % 2]!.run("same-user", task(index))),
    );
    expect(results).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(most).toBe(1);
    expect(order).toHaveLength(8);

    running = 0;
    most = 0;
    await Promise.all([locks[0]!.run("user-x", task(0)), locks[1]!.run("user-y", task(1))]);
    expect(most).toBe(2);
    expect(await first.keys(`${prefix}:*`)).toEqual([]);
  });

  it("keeps the lock past its TTL while the task runs, and releases it after a throw", async () => {
    const lock = createRedisKeyedLock({ redis: first, keyPrefix: prefix, ttlMs: 150 });
    const other = createRedisKeyedLock({ redis: second, keyPrefix: prefix, ttlMs: 150, waitTimeoutMs: 100 });
    await expect(
      lock.run("slow", async () => {
        await sleep(500);
        // Extended every 50 ms: still ours after three TTLs, so the other caller could not get in.
        await expect(other.run("slow", async () => "in")).rejects.toBeInstanceOf(LockTimeoutError);
        throw new Error("task failed");
      }),
    ).rejects.toThrow("task failed");
    expect(await first.exists(`${prefix}:slow`)).toBe(0);
    expect(await other.run("slow", async () => "in")).toBe("in");
  });

  it("never deletes a lock that expired and was taken by someone else", async () => {
    const lost: string[] = [];
    const lock = createRedisKeyedLock({ redis: first, keyPrefix: prefix, ttlMs: 90, onLost: (key) => lost.push(key) });
    await lock.run("stolen", async () => {
      // Simulate a holder frozen past its TTL: the key vanishes and another process takes it.
      await first.del(`${prefix}:stolen`);
      await second.set(`${prefix}:stolen`, "someone-else", "PX", 5_000);
      await sleep(80);
    });
    expect(await second.get(`${prefix}:stolen`)).toBe("someone-else");
    expect(lost).toEqual(["stolen"]);
    await second.del(`${prefix}:stolen`);
  });

  it("goes ahead once a dead holder's lock expires", async () => {
    await second.set(`${prefix}:crashed`, "dead-process", "PX", 300);
    const lock = createRedisKeyedLock({ redis: first, keyPrefix: prefix, retryDelayMs: 20 });
    const startedAt = Date.now();
    expect(await lock.run("crashed", async () => "after")).toBe("after");
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250);
  });

  it("gives up with LockTimeoutError when the holder keeps it for the whole wait", async () => {
    await second.set(`${prefix}:busy`, "holder", "PX", 5_000);
    const lock = createRedisKeyedLock({ redis: first, keyPrefix: prefix, waitTimeoutMs: 200 });
    let ran = false;
    await expect(
      lock.run("busy", async () => {
        ran = true;
      }),
    ).rejects.toBeInstanceOf(LockTimeoutError);
    expect(ran).toBe(false);
    expect(await second.get(`${prefix}:busy`)).toBe("holder");
    await second.del(`${prefix}:busy`);
  });
});
