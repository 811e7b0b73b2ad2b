/**
 * Time as the reply units see it. Pacing (NIM advises about one send per 200 ms) and idle timeouts
 * take a Clock instead of calling Date.now/setTimeout, so tests drive time with ManualClock
 * (src/reply/manual-clock.ts) instead of sleeping.
 *
 * @module
 */

export interface Clock {
  /** Milliseconds since an arbitrary origin; only differences matter. */
  now(): number;
  /** Calls `callback` once after `ms` milliseconds; returns a handle for clearTimeout. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a pending callback; unknown or already-fired handles are ignored. */
  clearTimeout(handle: unknown): void;
}

/** The real clock: Date.now and the global timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout> | undefined),
};
