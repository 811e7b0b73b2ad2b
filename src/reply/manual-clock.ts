/**
 * A Clock for tests: time stands still until the test advances it, and then due timers fire in
 * order of their due time (ties in the order they were scheduled), including timers that the fired
 * callbacks schedule within the advanced span.
 *
 * Code under test usually mixes timers with promises (an emit resolves, then the next send is
 * scheduled). `advanceAsync` lets pending promise callbacks run before and after every timer, so a
 * test reads like real time passing without any real waiting.
 *
 * @example
 * const clock = new ManualClock();
 * clock.setTimeout(() => console.log("fired"), 200);
 * clock.advance(199); // nothing
 * clock.advance(1);   // "fired"
 *
 * @module
 */
import type { Clock } from "./clock.ts";

interface ScheduledTimer {
  id: number;
  dueAt: number;
  callback: () => void;
}

/**
 * Captured at load time so that a test that fakes the global timers does not stop ManualClock from
 * draining promise callbacks. setImmediate runs after the whole microtask queue has drained.
 */
const realSetImmediate = globalThis.setImmediate;

/** Lets every promise callback that is already queued (and the ones they queue) run. */
export function settlePromises(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}

export class ManualClock implements Clock {
  private currentTime: number;
  private nextId = 1;
  private readonly timers = new Map<number, ScheduledTimer>();

  constructor(startTime = 0) {
    this.currentTime = startTime;
  }

  now(): number {
    return this.currentTime;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId;
    this.nextId += 1;
    // Like the real timers: negative or NaN delays mean "as soon as possible".
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    this.timers.set(id, { id, dueAt: this.currentTime + delay, callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === "number") this.timers.delete(handle);
  }

  /** How many timers are scheduled and not yet fired or cleared. */
  get pendingTimerCount(): number {
    return this.timers.size;
  }

  /** When the earliest pending timer is due, or undefined when none is pending. */
  nextDueTime(): number | undefined {
    return this.earliestTimer()?.dueAt;
  }

  /** Moves time forward by `ms`, firing due timers synchronously and in order. */
  advance(ms: number): void {
    const target = this.targetOf(ms);
    for (let timer = this.dueTimer(target); timer; timer = this.dueTimer(target)) this.fire(timer);
    this.currentTime = target;
  }

  /**
   * Like advance, but lets pending promise callbacks run before the first timer, after each timer
   * and at the end, so timers scheduled from `.then` callbacks within the span fire too.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.targetOf(ms);
    await settlePromises();
    for (let timer = this.dueTimer(target); timer; timer = this.dueTimer(target)) {
      this.fire(timer);
      await settlePromises();
    }
    this.currentTime = target;
    await settlePromises();
  }

  /**
   * Fires timers (with promise callbacks settled in between) until none is left, advancing time to
   * each one. Throws after `maxTimers` timers, which signals a timer that keeps rescheduling itself.
   */
  async runAllAsync(maxTimers = 10_000): Promise<void> {
    await settlePromises();
    for (let fired = 0; ; fired += 1) {
      const timer = this.earliestTimer();
      if (!timer) return;
      if (fired >= maxTimers) throw new Error(`ManualClock.runAllAsync: more than ${maxTimers} timers fired`);
      this.fire(timer);
      await settlePromises();
    }
  }

  private targetOf(ms: number): number {
    if (!(ms >= 0)) throw new RangeError(`ManualClock cannot go back in time (advance by ${ms})`);
    return this.currentTime + ms;
  }

  private earliestTimer(): ScheduledTimer | undefined {
    let earliest: ScheduledTimer | undefined;
    // Map iteration follows insertion (= scheduling) order, so the first of equal dueAt wins.
    for (const timer of this.timers.values()) {
      if (!earliest || timer.dueAt < earliest.dueAt) earliest = timer;
    }
    return earliest;
  }

  private dueTimer(target: number): ScheduledTimer | undefined {
    const timer = this.earliestTimer();
    return timer && timer.dueAt <= target ? timer : undefined;
  }

  private fire(timer: ScheduledTimer): void {
    this.timers.delete(timer.id);
    this.currentTime = Math.max(this.currentTime, timer.dueAt);
    timer.callback();
  }
}
