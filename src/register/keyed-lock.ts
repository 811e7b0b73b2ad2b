/**
 * A per-key mutex for one process: tasks with the same key run one after another, tasks with
 * different keys run concurrently. The register service uses it so that concurrent registrations
 * of one site user create one NIM account and hand every caller the same token.
 *
 * It is a Map from key to the tail of that key's promise chain. Each task waits for the previous
 * tail and then becomes the tail itself; the entry is removed when the last queued task finishes,
 * so the Map holds only keys with work in flight and cannot grow with the number of users.
 */
export interface KeyedLock {
  /** Runs `task` once every earlier task with this key has settled; resolves or rejects like it. */
  run<T>(key: string, task: () => Promise<T>): Promise<T>;
  /** How many keys currently have queued or running work (for tests and metrics). */
  readonly size: number;
}

export function createKeyedLock(): KeyedLock {
  const tails = new Map<string, Promise<void>>();
  return {
    get size() {
      return tails.size;
    },
    async run<T>(key: string, task: () => Promise<T>): Promise<T> {
      // The chain is built from promises that only ever resolve, so one failing task never
      // poisons the tasks queued behind it.
      const previous = tails.get(key) ?? Promise.resolve();
      let release: () => void = () => {};
      const done = new Promise<void>((resolve) => {
        release = resolve;
      });
      const tail = previous.then(() => done);
      tails.set(key, tail);
      try {
        await previous;
        return await task();
      } finally {
        release();
        // Only the last task in the queue removes the entry; an earlier one would cut later waiters loose.
        if (tails.get(key) === tail) tails.delete(key);
      }
    },
  };
}
