import { describe, expect, it } from "vitest";
import { openDatabase } from "./database.ts";

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
