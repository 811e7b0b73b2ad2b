/**
 * The reply queue: what the worker consumes. The embedded default is in-process; the scale-out
 * setup backs the same interface with BullMQ. Imports no implementation.
 */

export interface ReplyJob {
  /** The inbox key: NIM's msgidServer of the user message to answer. */
  msgidServer: string;
}

export type ReplyJobHandler = (job: ReplyJob) => Promise<void>;

export interface ReplyQueue {
  /** Add a job. A job with the same msgidServer that is still queued or running is not added again. */
  enqueue(job: ReplyJob): Promise<void>;
  /** Start consuming with at most `concurrency` jobs at once. */
  start(handler: ReplyJobHandler): void;
  /** Stop taking new jobs and wait for the running ones. */
  stop(): Promise<void>;
  /** Jobs waiting plus running. */
  depth(): Promise<number>;
}
