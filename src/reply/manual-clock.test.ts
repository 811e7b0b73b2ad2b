import { describe, expect, it } from "vitest";
import { systemClock } from "./clock.ts";
import { ManualClock, settlePromises } from "./manual-clock.ts";

describe("ManualClock", () => {
  it("starts at the given time and only moves when advanced", () => {
    const clock = new ManualClock(1000);
    expect(clock.now()).toBe(1000);
    clock.advance(250);
    expect(clock.now()).toBe(1250);
  });

  it("fires due timers in due order, ties in scheduling order, each at its due time", () => {
    const clock = new ManualClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 300);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 100);
    clock.setTimeout(() => fired.push(`b1@${clock.now()}`), 200);
    clock.setTimeout(() => fired.push(`b2@${clock.now()}`), 200);
    clock.advance(99);
    expect(fired).toEqual([]);
    clock.advance(201);
    expect(fired).toEqual(["a@100", "b1@200", "b2@200", "c@300"]);
    expect(clock.pendingTimerCount).toBe(0);
  });

  it("fires timers scheduled by callbacks when they fall within the advanced span", () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    const tick = () => {
      fired.push(clock.now());
      if (fired.length < 10) clock.setTimeout(tick, 200);
    };
    clock.setTimeout(tick, 200);
    clock.advance(1000);
    expect(fired).toEqual([200, 400, 600, 800, 1000]);
    expect(clock.nextDueTime()).toBe(1200);
  });

  it("treats negative and NaN delays as zero", () => {
    const clock = new ManualClock();
    let count = 0;
    clock.setTimeout(() => count++, -5);
    clock.setTimeout(() => count++, Number.NaN);
    clock.advance(0);
    expect(count).toBe(2);
  });

  it("cancels with clearTimeout and ignores unknown handles", () => {
    const clock = new ManualClock();
    let fired = false;
    const handle = clock.setTimeout(() => {
      fired = true;
    }, 10);
    clock.clearTimeout(handle);
    clock.clearTimeout("nonsense");
    clock.clearTimeout(undefined);
    clock.advance(100);
    expect(fired).toBe(false);
    expect(clock.nextDueTime()).toBeUndefined();
  });

  it("refuses to go back in time", () => {
    expect(() => new ManualClock().advance(-1)).toThrow(RangeError);
  });

  it("advanceAsync lets promise callbacks schedule timers that then fire within the span", async () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    const step = async () => {
      await Promise.resolve();
      await Promise.resolve();
      fired.push(clock.now());
      if (fired.length < 3) clock.setTimeout(() => void step(), 100);
    };
    void step();
    await clock.advanceAsync(1000);
    expect(fired).toEqual([0, 100, 200]);
    expect(clock.now()).toBe(1000);
  });

  it("runAllAsync fires everything and stops a timer that reschedules forever", async () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    clock.setTimeout(() => fired.push(clock.now()), 50);
    clock.setTimeout(() => fired.push(clock.now()), 5000);
    await clock.runAllAsync();
    expect(fired).toEqual([50, 5000]);
    const forever = () => clock.setTimeout(forever, 1);
    forever();
    await expect(clock.runAllAsync(20)).rejects.toThrow(/more than 20 timers/);
  });

  it("settlePromises drains chained promise callbacks", async () => {
    let done = false;
    void Promise.resolve()
      .then(() => Promise.resolve())
      .then(() => {
        done = true;
      });
    await settlePromises();
    expect(done).toBe(true);
  });
});

describe("systemClock", () => {
  it("reads the wall clock", () => {
    const before = Date.now();
    const now = systemClock.now();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
  });

  it("schedules and cancels real timers", async () => {
    const fired: string[] = [];
    const cancelled = systemClock.setTimeout(() => fired.push("cancelled"), 0);
    systemClock.clearTimeout(cancelled);
    await new Promise<void>((resolve) => {
      systemClock.setTimeout(() => {
        fired.push("fired");
        resolve();
      }, 0);
    });
    expect(fired).toEqual(["fired"]);
  });
});
