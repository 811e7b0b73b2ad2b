/**
 * The worker: feeds the reply queue from the inbox and runs the pipeline for each job.
 * At start it re-enqueues every accepted-but-unfinished message, which is what makes a crash
 * or a restart lose no reply: the inbox row is the durable job, the queue only schedules it.
 */
import type { Logger } from "pino";
import type { ReplyJobHandler, ReplyQueue } from "../queue/types.ts";
import type { Repositories } from "../storage/repositories.ts";

export interface ReplyWorkerOptions {
  queue: ReplyQueue;
  processReply: ReplyJobHandler;
  repositories: Repositories;
  logger: Logger;
  /**
   * True when this process is the only worker (no REDIS_URL): leases left by a previous run of
   * this process belong to a dead process and are released at once instead of waiting them out.
   */
  singleInstance: boolean;
  now?: () => number;
  /**
   * How often to look for accepted messages nobody is working on: rows accepted by an HTTP-only
   * instance, an enqueue that failed, or a reply whose worker died (its lease ran out). 0 = never.
   */
  sweepIntervalMs?: number;
}

export interface ReplyWorker {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Re-scan the inbox for unfinished messages (used at start and by the scale-out sweeper). */
  resume(): Promise<number>;
}

export function createReplyWorker(options: ReplyWorkerOptions): ReplyWorker {
  const now = options.now ?? Date.now;
  async function resume(): Promise<number> {
    const unfinished = await options.repositories.inbox.unfinished();
    for (const message of unfinished) {
      if (options.singleInstance && message.lease_owner) {
        await options.repositories.inbox.release(message.msgid_server, message.lease_owner, now());
      }
      await options.queue.enqueue({ msgidServer: message.msgid_server });
    }
    return unfinished.length;
  }
  async function sweep(): Promise<void> {
    // Unowned by the database's clock, and first in line in their conversation.
    for (const message of await options.repositories.inbox.unclaimed()) {
      await options.queue.enqueue({ msgidServer: message.msgid_server });
    }
  }
  let sweeper: NodeJS.Timeout | undefined;
  return {
    resume,
    async start() {
      options.queue.start(options.processReply);
      const resumed = await resume();
      if (resumed > 0) options.logger.info({ resumed }, "resuming unfinished replies");
      const interval = options.sweepIntervalMs ?? 5_000;
      if (interval > 0) {
        sweeper = setInterval(() => {
          sweep().catch((error: unknown) => options.logger.warn({ err: error }, "inbox sweep failed"));
        }, interval);
        sweeper.unref();
      }
    },
    async stop() {
      if (sweeper) clearInterval(sweeper);
      // The queue fires its handlers' signal: running replies hand their leases back at once.
      await options.queue.stop();
    },
  };
}
