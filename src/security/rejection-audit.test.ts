import { describe, expect, it } from "vitest";
import { createBoundedAudit } from "./rejection-audit.ts";

describe("bounded audit of refusals", () => {
  it("writes at most perWindow rows per window and carries the count of the rest", async () => {
    let now = 0;
    const rows: Array<Record<string, unknown>> = [];
    const audit = createBoundedAudit({
      record: async (_event, detail) => {
        rows.push(detail);
      },
      perWindow: 3,
      windowMs: 60_000,
      now: () => now,
      logger: { warn: () => {} },
    });
    for (let index = 0; index < 100; index += 1) await audit.refuse("callback.rejected", { index });
    expect(rows).toHaveLength(3);
    now = 60_000;
    await audit.refuse("callback.rejected", { index: 100 });
    expect(rows).toHaveLength(4);
    expect(rows[3]).toEqual({ index: 100, suppressedBefore: 97 });
  });

  it("never throws when the write fails", async () => {
    const warnings: unknown[] = [];
    const audit = createBoundedAudit({
      record: async () => {
        throw new Error("no such table: audit_events");
      },
      perWindow: 10,
      windowMs: 1_000,
      now: () => 0,
      logger: { warn: (value: unknown) => warnings.push(value) },
    });
    await expect(audit.refuse("callback.rejected", {})).resolves.toBeUndefined();
    expect(warnings).toHaveLength(1);
  });
});
