/**
 * The retention job (RETENTION_DAYS): once an hour, and once at start, deletes finished exchanges
 * and audit rows older than the retention period. Any instance may run it; the deletes are
 * idempotent, so several instances running it at once only repeat work.
 *
 * @module
 */
import type { Logger } from "pino";
import type { RetentionRepository } from "../storage/repositories.ts";

export interface RetentionJobOptions {
  retention: RetentionRepository;
  days: number;
  intervalMs?: number;
  now?: () => number;
  logger: Pick<Logger, "info" | "warn">;
}

export interface RetentionJob {
  /** One pass now; resolves with what was deleted (also used by tests). */
  runOnce(): Promise<Awaited<ReturnType<RetentionRepository["purgeBefore"]>>>;
  start(): void;
  stop(): void;
}

const DAY_MS = 86_400_000;

export function createRetentionJob(options: RetentionJobOptions): RetentionJob {
  const now = options.now ?? Date.now;
  let timer: NodeJS.Timeout | undefined;
  const runOnce = async () => {
    const deleted = await options.retention.purgeBefore(now() - options.days * DAY_MS);
    if (deleted.inbox + deleted.replies + deleted.outbox + deleted.audit > 0) {
      options.logger.info({ deleted, days: options.days }, "retention: old rows deleted");
    }
    return deleted;
  };
  const runLogged = () => {
    runOnce().catch((error: unknown) => options.logger.warn({ err: error }, "retention pass failed"));
  };
  return {
    runOnce,
    start() {
      if (options.days <= 0 || timer) return;
      runLogged();
      timer = setInterval(runLogged, options.intervalMs ?? 3_600_000);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}
