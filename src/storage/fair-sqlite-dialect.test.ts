import { describe, expect, it } from "vitest";
import { openDatabase } from "./database.ts";
import { FifoMutex } from "./fair-sqlite-dialect.ts";

describe("FifoMutex", () => {
  it("hands the lock on in arrival order, one waiter per release", async () => {
    const mutex = new FifoMutex();
    await mutex.lock();
    const order: number[] = [];
    const waiters = Array.from({ length: 5 }, (_, index) =>
      mutex.lock().then(() => {
        order.push(index);
      }),
    );
    expect(mutex.waiting).toBe(5);
    for (let released = 1; released <= 5; released += 1) {
      mutex.unlock();
      await new Promise((resolve) => setImmediate(resolve));
      // Exactly one more waiter got the lock; the others still wait.
      expect(order).toHaveLength(released);
      expect(mutex.waiting).toBe(5 - released);
    }
    await Promise.all(waiters);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    mutex.unlock();
    await mutex.lock();
  });
});

describe("the SQLite dialect behind the FIFO gate", () => {
  it("runs thousands of concurrent queries and transactions to completion, in the order they were issued", async () => {
    const database = await openDatabase("sqlite::memory:");
    try {
      const finished: number[] = [];
      await Promise.all(
        Array.from({ length: 2_000 }, (_, index) =>
          (index % 3 === 0
            ? database.kysely.transaction().execute(async (transaction) => {
                await transaction.selectFrom("accounts").select("accid").limit(1).execute();
                await transaction.selectFrom("inbox").select("msgid_server").limit(1).execute();
              })
            : database.kysely.selectFrom("accounts").select("accid").limit(1).execute()
          ).then(() => finished.push(index)),
        ),
      );
      expect(finished).toEqual(Array.from({ length: 2_000 }, (_, index) => index));
    } finally {
      await database.close();
    }
  });
});
