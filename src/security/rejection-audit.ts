/**
 * Audit rows for refused requests, at a bounded rate. Every unauthenticated request to
 * /im/callback is refused, so writing one row each would let anyone fill the database (and slow
 * the callback intake) with a flood. At most `perWindow` rows are written per window; the refusals
 * beyond that are counted and the count rides on the next row that is written. Writes never throw
 * and are never left floating: failures are logged.
 *
 * @module
 */
import type { Logger } from "pino";

export interface BoundedAuditOptions {
  record: (event: string, detail: Record<string, unknown>) => Promise<void>;
  perWindow: number;
  windowMs: number;
  now: () => number;
  logger: Pick<Logger, "warn">;
}

export interface BoundedAudit {
  /** Records (or counts) one refusal; resolves once the row is written or dropped. */
  refuse(event: string, detail: Record<string, unknown>): Promise<void>;
}

export function createBoundedAudit(options: BoundedAuditOptions): BoundedAudit {
  let windowStart = Number.NEGATIVE_INFINITY;
  let written = 0;
  let suppressed = 0;
  return {
    async refuse(event, detail) {
      const now = options.now();
      if (now - windowStart >= options.windowMs) {
        windowStart = now;
        written = 0;
      }
      if (written >= options.perWindow) {
        suppressed += 1;
        return;
      }
      written += 1;
      const carried = suppressed;
      suppressed = 0;
      try {
        await options.record(event, carried > 0 ? { ...detail, suppressedBefore: carried } : detail);
      } catch (error) {
        options.logger.warn({ err: error, event }, "could not write an audit row for a refused request");
      }
    },
  };
}
