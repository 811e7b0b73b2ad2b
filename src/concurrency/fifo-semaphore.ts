/**
 * At most `limit` holders at once; the others wait in arrival order, and each release hands the
 * slot to exactly one waiter. Used where a burst of thousands of waiters must not cost each
 * release a wake-up of all of them: the SQLite connection's gate (storage/fair-sqlite-dialect.ts)
 * and the sockets of a NIM pool (nim/pool-sender.ts).
 *
 * @module
 */
export class FifoSemaphore {
  private active = 0;
  private readonly waiters: Array<{ grant: () => void; gaveUp: boolean }> = [];
  private head = 0;

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
  }

  /** Takes a slot if one is free now. */
  tryAcquire(): boolean {
    if (this.active >= this.limit) return false;
    this.active += 1;
    return true;
  }

  /** Resolves once a slot is this caller's; rejects with the signal's reason if it aborts first. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        gaveUp: false,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      // A waiter that gives up keeps its place, marked: release() passes over it.
      const onAbort = () => {
        waiter.gaveUp = true;
        reject(signal?.reason);
      };
      this.waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Gives the slot to the next waiter, or frees it. */
  release(): void {
    while (this.head < this.waiters.length) {
      const next = this.waiters[this.head] as { grant: () => void; gaveUp: boolean };
      this.head += 1;
      this.compact();
      if (!next.gaveUp) {
        next.grant();
        return;
      }
    }
    this.active -= 1;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    let count = 0;
    for (let index = this.head; index < this.waiters.length; index += 1) {
      if (!this.waiters[index]?.gaveUp) count += 1;
    }
    return count;
  }

  /** Drops the served part of the queue now and then, so it does not grow without bound. */
  private compact(): void {
    if (this.head === this.waiters.length) {
      this.waiters.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    }
  }
}
