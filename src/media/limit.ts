/**
 * At most N media turns are downloaded and decoded at once per process. A reply worker runs up to
 * REPLY_CONCURRENCY replies together; without this, that many 20 MB downloads and image decodes
 * could be held in memory at the same moment. Further turns wait their turn in arrival order.
 */

export type ConcurrencyLimit = <T>(work: () => Promise<T>) => Promise<T>;

/**
 * @example
 * const limit = createConcurrencyLimit(4);
 * const turn = await limit(() => downloadAndDecode());
 */
export function createConcurrencyLimit(maximum: number): ConcurrencyLimit {
  if (!Number.isInteger(maximum) || maximum < 1) throw new RangeError("concurrency limit must be a whole number ≥ 1");
  let running = 0;
  const waiting: Array<() => void> = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else running -= 1;
  };
  return async (work) => {
    if (running < maximum) running += 1;
    // The slot is handed over directly by `release`, so `running` stays counted while it passes.
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await work();
    } finally {
      release();
    }
  };
}
