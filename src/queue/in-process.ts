/**
 * The embedded queue: a FIFO in memory with a concurrency limit and de-duplication by
 * msgidServer. Durability comes from the inbox table, not from here: at start the worker
 * re-enqueues every unfinished inbox row, so a crash loses no job.
 */
import type { ReplyJob, ReplyJobHandler, ReplyQueue } from "./types.ts";

export interface InProcessQueueOptions {
  concurrency: number;
  /** A job whose handler throws is tried again this many times, after retryDelayMs × attempt. */
  maxAttempts?: number;
  retryDelayMs?: number;
  onError?: (job: ReplyJob, error: unknown, attempt: number) => void;
}

export class InProcessQueue implements ReplyQueue {
  private readonly waiting: Array<{ job: ReplyJob; attempt: number }> = [];
  private readonly known = new Set<string>();
  private readonly running = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private handler: ReplyJobHandler | undefined;
  private stopped = false;
  private shutdown = new AbortController();

  constructor(private readonly options: InProcessQueueOptions) {}

  async enqueue(job: ReplyJob): Promise<void> {
    if (this.stopped || this.known.has(job.msgidServer)) return;
    this.known.add(job.msgidServer);
    this.waiting.push({ job, attempt: 1 });
    this.pump();
  }

  start(handler: ReplyJobHandler): void {
    this.handler = handler;
    this.stopped = false;
    if (this.shutdown.signal.aborted) this.shutdown = new AbortController();
    this.pump();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    this.waiting.length = 0;
    this.shutdown.abort(new Error("queue stopped"));
    await Promise.allSettled([...this.running]);
  }

  async depth(): Promise<number> {
    return this.waiting.length + this.running.size;
  }

  private pump(): void {
    const handler = this.handler;
    if (!handler || this.stopped) return;
    while (this.running.size < this.options.concurrency && this.waiting.length > 0) {
      const entry = this.waiting.shift()!;
      const run: Promise<void> = handler(entry.job, this.shutdown.signal)
        .then(() => {
          this.known.delete(entry.job.msgidServer);
        })
        .catch((error: unknown) => {
          this.options.onError?.(entry.job, error, entry.attempt);
          if (entry.attempt >= (this.options.maxAttempts ?? 5) || this.stopped) {
            this.known.delete(entry.job.msgidServer);
            return;
          }
          const timer = setTimeout(
            () => {
              this.retryTimers.delete(timer);
              this.waiting.push({ job: entry.job, attempt: entry.attempt + 1 });
              this.pump();
            },
            (this.options.retryDelayMs ?? 1000) * entry.attempt,
          );
          this.retryTimers.add(timer);
        })
        .finally(() => {
          this.running.delete(run);
          this.pump();
        });
      this.running.add(run);
    }
  }
}
