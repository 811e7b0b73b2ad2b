import { describe, expect, it } from "vitest";
import { createKeyedLock } from "./keyed-lock.ts";

function deferred<T = void>() {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((resolvePromise, rejectPromise) => {
    resolve = resolvePromise;
    reject = rejectPromise;
  });
  return { promise, resolve, reject };
}

describe("createKeyedLock", () => {
  it("runs tasks of one key one at a time, in arrival order", async () => {
    const lock = createKeyedLock();
    const order: string[] = [];
    const first = deferred();
    const a = lock.run("k", async () => {
      order.push("a start");
      await first.promise;
      order.push("a end");
      return "a";
    });
    const b = lock.run("k", async () => {
      order.push("b");
      return "b";
    });
    await Promise.resolve();
    expect(order).toEqual(["a start"]);
    first.resolve();
    expect(await Promise.all([a, b])).toEqual(["a", "b"]);
    expect(order).toEqual(["a start", "a end", "b"]);
  });

  it("runs different keys concurrently", async () => {
    const lock = createKeyedLock();
    const gate = deferred();
    const slow = lock.run("one", () => gate.promise.then(() => "one"));
    // "two" finishes while "one" is still blocked.
    await expect(lock.run("two", async () => "two")).resolves.toBe("two");
    gate.resolve();
    await expect(slow).resolves.toBe("one");
  });

  it("lets a failure through to its caller without blocking the next task", async () => {
    const lock = createKeyedLock();
    const failing = lock.run("k", async () => {
      throw new Error("boom");
    });
    const next = lock.run("k", async () => "still runs");
    await expect(failing).rejects.toThrow("boom");
    await expect(next).resolves.toBe("still runs");
  });

  it("removes a key's entry once its queue is empty", async () => {
    const lock = createKeyedLock();
    const gate = deferred();
    const first = lock.run("k", () => gate.promise);
    const second = lock.run("k", async () => {});
    expect(lock.size).toBe(1);
    gate.resolve();
    await Promise.all([first, second]);
    expect(lock.size).toBe(0);
    await lock.run("other", async () => {});
    expect(lock.size).toBe(0);
  });
});
