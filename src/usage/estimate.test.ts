import { describe, expect, it } from "vitest";
import { dayOf, isTimeZone, lastDays } from "./day.ts";
import { estimatePromptTokens, estimateTokens, MESSAGE_OVERHEAD_TOKENS } from "./estimate.ts";

describe("token estimate", () => {
  it("counts one token per CJK character and one per four other characters", () => {
    expect(estimateTokens("")).toBe(0);
    expect(estimateTokens("你好世界")).toBe(4);
    expect(estimateTokens("こんにちは")).toBe(5);
    expect(estimateTokens("hello")).toBe(2);
    expect(estimateTokens("你好, world")).toBe(2 + 2);
    expect(estimateTokens("😀😀😀😀")).toBe(1); // code points, not UTF-16 units
  });

  it("frames each prompt part", () => {
    expect(estimatePromptTokens(["system", "你好"])).toBe(2 + 2 + 2 * MESSAGE_OVERHEAD_TOKENS);
  });
});

describe("usage days", () => {
  it("takes the day in the configured time zone", () => {
    const instant = Date.parse("2026-11-30T20:00:00Z");
    expect(dayOf(instant, "UTC")).toBe("2026-11-30");
    expect(dayOf(instant, "Asia/Shanghai")).toBe("2026-12-01");
    expect(dayOf(instant, "America/Los_Angeles")).toBe("2026-11-30");
  });

  it("lists the last days across month ends and daylight-saving changes, oldest first", () => {
    expect(lastDays(Date.parse("2026-03-02T12:00:00Z"), 3, "UTC")).toEqual(["2026-02-28", "2026-03-01", "2026-03-02"]);
    const afterChange = Date.parse("2026-03-09T07:30:00Z"); // US clocks went forward on 8 March
    expect(lastDays(afterChange, 3, "America/New_York")).toEqual(["2026-03-07", "2026-03-08", "2026-03-09"]);
  });

  it("knows IANA zones", () => {
    expect(isTimeZone("Asia/Shanghai")).toBe(true);
    expect(isTimeZone("UTC")).toBe(true);
    expect(isTimeZone("Mars/Olympus")).toBe(false);
  });

  it("gives UTC days (computed without Intl, to spare ICU's memory) exactly as Intl does", () => {
    const intl = new Intl.DateTimeFormat("en-CA", {
      timeZone: "UTC",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
    });
    // Every 6 h across a leap day, each instant and the millisecond before it, and a year's end.
    const start = Date.parse("2024-02-28T00:00:00Z");
    const steps = Array.from({ length: 13 }, (_, index) => start + index * 21_600_000);
    const instants = [0, Date.parse("2026-12-31T23:59:59.999Z"), ...steps.flatMap((at) => [at - 1, at])];
    for (const instant of instants) expect(dayOf(instant, "UTC")).toBe(intl.format(new Date(instant)));
  });
});
