import { describe, expect, it } from "vitest";
import { FifoSemaphore } from "./fifo-semaphore.ts";

describe("FifoSemaphore", () => {
  it("hands the lock on in arrival order, one waiter per release", async () => {
    const mutex = new FifoSemaphore(1);
    await mutex.acquire();
    const order: number[] = [];
    const waiters = Array.from({ length: 5 }, (_, index) =>
      mutex.acquire().then(() => {
        order.push(index);
      }),
    );
    expect(mutex.waiting).toBe(5);
    for (let released = 1; released <= 5; released += 1) {
      mutex.release();
      await new Promise((resolve) => setImmediate(resolve));
      // Exactly one more waiter got the lock; the others still wait.
      expect(order).toHaveLength(released);
      expect(mutex.waiting).toBe(5 - released);
    }
    await Promise.all(waiters);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    mutex.release();
    await mutex.acquire();
  });
});

describe("FifoSemaphore with several slots", () => {
  it("lets `limit` holders in at once, and a waiter that gives up loses its place", async () => {
    const slots = new FifoSemaphore(2);
    expect(slots.tryAcquire()).toBe(true);
    expect(slots.tryAcquire()).toBe(true);
    expect(slots.tryAcquire()).toBe(false);
    const controller = new AbortController();
    const gaveUp = slots.acquire(controller.signal);
    const order: string[] = [];
    const next = slots.acquire().then(() => order.push("next"));
    controller.abort(new Error("caller gave up"));
    await expect(gaveUp).rejects.toThrow("caller gave up");
    expect(slots.waiting).toBe(1);
    slots.release();
    await next;
    expect(order).toEqual(["next"]);
    expect(slots.waiting).toBe(0);
  });
});
