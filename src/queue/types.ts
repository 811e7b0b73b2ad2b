/**
 * The reply queue: what the worker consumes. The embedded default is in-process; the scale-out
 * setup backs the same interface with BullMQ. Imports no implementation.
 */

export interface ReplyJob {
  /** The inbox key: NIM's msgidServer of the user message to answer. */
  msgidServer: string;
}

/**
 * Runs one job. `signal` fires when the queue stops (shutdown): the handler then hands its work
 * back promptly instead of finishing it, as BullMQ's processor signal asks of a processor.
 */
export type ReplyJobHandler = (job: ReplyJob, signal: AbortSignal) => Promise<void>;

export interface ReplyQueue {
  /** Add a job. A job with the same msgidServer that is still queued or running is not added again. */
  enqueue(job: ReplyJob): Promise<void>;
  /** Start consuming with at most `concurrency` jobs at once. */
  start(handler: ReplyJobHandler): void;
  /** Stop taking new jobs, fire the running handlers' signal, and wait for them to return. */
  stop(): Promise<void>;
  /** Jobs waiting plus running. */
  depth(): Promise<number>;
}
