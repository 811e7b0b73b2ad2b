/**
 * The scale-out reply queue: the ReplyQueue contract on BullMQ (Redis), so several im-bridge
 * instances share one queue. As with the in-process queue, the inbox row stays the durable job and
 * this queue only schedules it; what BullMQ adds is that work is spread over instances and that a
 * job held by an instance that dies is taken over by another one.
 *
 * - One BullMQ job per msgidServer (the job id is derived from it), so an enqueue while the job is
 *   waiting, delayed for a retry or running does nothing: BullMQ ignores an add with an existing id.
 * - Completed jobs are removed at once by default. BullMQ would otherwise ignore every later enqueue
 *   of the same msgidServer while the completed record exists, and the inbox sweeper re-enqueues
 *   unfinished rows on purpose (a job can complete without finishing its row, e.g. when another
 *   worker held the row's lease). `keepCompletedJobs` keeps a bounded number anyway, as an extra
 *   de-duplication for deployments that want it, with exactly that trade-off.
 * - Failed jobs (all attempts used) are kept, bounded, for inspection. Enqueueing such a msgidServer
 *   again moves the failed job back to waiting with fresh attempts: the interface promises that only
 *   a job that is still queued or running absorbs an enqueue.
 * - A handler that throws is retried with exponential backoff (`backoffMs` × 2^(attempt−1)).
 * - Each running job holds a lock in Redis that its worker renews every lockDuration/2. When an
 *   instance dies the renewals stop, the lock expires, and the stalled checker of any other worker
 *   (every `stalledIntervalMs`) moves the job back to waiting, where another worker takes it.
 */
import { type Job, Queue, UnrecoverableError, Worker } from "bullmq";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { ReplyJob, ReplyJobHandler, ReplyQueue } from "./types.ts";

export const DEFAULT_QUEUE_NAME = "im-bridge-replies";

/** BullMQ's job name; there is one kind of job per queue. */
const JOB_NAME = "reply";

export interface BullMqQueueOptions {
  /** redis:// or rediss:// URL; the queue opens its own connection and closes it in stop(). */
  redisUrl?: string;
  /**
   * An existing ioredis client instead of redisUrl; it must have `maxRetriesPerRequest: null`
   * (BullMQ's workers block on it and must never give up on a command). The caller closes it.
   */
  connection?: Redis;
  /** Redis namespace of the queue; every instance that shares the work uses the same name. */
  queueName?: string;
  /** BullMQ's key prefix (BullMQ's default `bull`): keys are `<prefix>:<queueName>:…`. */
  prefix?: string;
  /** Jobs this instance runs at once. */
  concurrency: number;
  /** Total tries of a job whose handler throws, the first one included. */
  attempts?: number;
  /** Delay before the first retry; each later retry waits twice as long as the one before. */
  backoffMs?: number;
  /** How often this worker looks for jobs whose worker died (BullMQ default 30 s). */
  stalledIntervalMs?: number;
  /** How long a running job's lock lives without renewal (BullMQ default 30 s). */
  lockDurationMs?: number;
  /** How often one job may be recovered from a dead worker before it fails (BullMQ default 1). */
  maxStalledCount?: number;
  /** Completed jobs to keep (default 0). See the module comment for what a kept record implies. */
  keepCompletedJobs?: number;
  /** Failed jobs to keep for inspection (default 1000). */
  keepFailedJobs?: number;
  /**
   * Longest enqueue() and depth() wait for Redis before rejecting (default 3000 ms). The callback
   * route awaits enqueue() inside NIM's 5 s, and with maxRetriesPerRequest: null a command would
   * otherwise wait out a Redis outage. A command that timed out may still land once Redis is back,
   * which is harmless: adding a job is idempotent.
   */
  commandTimeoutMs?: number;
  logger?: Pick<Logger, "error" | "warn">;
}

export interface BullMqStopOptions {
  /**
   * Do not wait for running jobs: close the connections at once. Their locks then expire and
   * another instance takes them over, so this is for a process that is about to exit anyway
   * (a shutdown deadline that passed).
   */
  force?: boolean;
}

interface ReplyJobData {
  msgidServer: string;
}

/** Characters a msgidServer may have to be used in a job id as it is. */
const PLAIN_ID = /^[A-Za-z0-9_.-]+$/;

/**
 * The BullMQ job id of a msgidServer. BullMQ refuses custom ids that read as integers (NIM's
 * msgidServer is all digits) and ids containing ':' (its key separator), so every id is prefixed,
 * and anything outside a plain alphabet is base64url-encoded under a different prefix: two distinct
 * msgidServers never share a job, and no id is an integer or contains ':'.
 */
export function jobIdFor(msgidServer: string): string {
  if (msgidServer.length === 0) throw new TypeError("msgidServer must not be empty");
  return PLAIN_ID.test(msgidServer)
    ? `msg-${msgidServer}`
    : `msg64-${Buffer.from(msgidServer, "utf8").toString("base64url")}`;
}

const silentLogger: Pick<Logger, "error" | "warn"> = {
  error: () => {},
  warn: () => {},
};

export class BullMqQueue implements ReplyQueue {
  readonly queueName: string;
  private readonly connection: Redis;
  private readonly ownsConnection: boolean;
  private readonly queue: Queue<ReplyJobData>;
  private readonly logger: Pick<Logger, "error" | "warn">;
  private worker: Worker<ReplyJobData> | undefined;
  private stopping: Promise<void> | undefined;
  /** Fired at stop(): running handlers hand their work back instead of holding Worker.close. */
  private readonly shutdown = new AbortController();

  constructor(private readonly options: BullMqQueueOptions) {
    if ((options.redisUrl === undefined) === (options.connection === undefined)) {
      throw new TypeError("BullMqQueue needs exactly one of redisUrl and connection");
    }
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError("concurrency must be a positive integer");
    }
    if (options.connection && options.connection.options.maxRetriesPerRequest !== null) {
      // BullMQ would throw this only once a worker starts; say it where the client is handed over.
      throw new TypeError("the ioredis connection for BullMqQueue needs maxRetriesPerRequest: null");
    }
    this.queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
    this.logger = options.logger ?? silentLogger;
    this.ownsConnection = options.connection === undefined;
    this.connection = options.connection ?? new Redis(options.redisUrl!, { maxRetriesPerRequest: null });
    // The queue shares the connection (it never blocks); each worker duplicates it into a command
    // connection and a blocking one of its own and closes those itself.
    this.queue = new Queue<ReplyJobData>(this.queueName, {
      connection: this.connection,
      ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
      defaultJobOptions: {
        attempts: options.attempts ?? 5,
        backoff: { type: "exponential", delay: options.backoffMs ?? 1000 },
        removeOnComplete: options.keepCompletedJobs ? { count: options.keepCompletedJobs } : true,
        removeOnFail: { count: options.keepFailedJobs ?? 1000 },
      },
    });
    // An EventEmitter 'error' without a listener would crash the process on a Redis hiccup.
    this.queue.on("error", (error) => this.logger.error({ err: error }, "reply queue: Redis error"));
  }

  async enqueue(job: ReplyJob): Promise<void> {
    // Like the in-process queue: after stop() the inbox row alone carries the job, and the next
    // start (or another instance's sweep) enqueues it again.
    if (this.stopping) return;
    await this.withinCommandTimeout("enqueue", this.add(job));
  }

  start(handler: ReplyJobHandler): void {
    if (this.stopping) throw new Error("BullMqQueue was stopped; create a new one to consume again");
    if (this.worker) throw new Error("BullMqQueue was already started");
    const worker = new Worker<ReplyJobData>(
      this.queueName,
      async (job: Job<ReplyJobData>) => {
        const msgidServer = job.data?.msgidServer;
        if (typeof msgidServer !== "string") {
          // Not one of ours: retrying cannot make it valid.
          throw new UnrecoverableError(`reply job ${job.id} has no msgidServer`);
        }
        await handler({ msgidServer }, this.shutdown.signal);
      },
      {
        connection: this.connection,
        concurrency: this.options.concurrency,
        ...(this.options.prefix !== undefined ? { prefix: this.options.prefix } : {}),
        ...(this.options.stalledIntervalMs !== undefined ? { stalledInterval: this.options.stalledIntervalMs } : {}),
        ...(this.options.lockDurationMs !== undefined ? { lockDuration: this.options.lockDurationMs } : {}),
        ...(this.options.maxStalledCount !== undefined ? { maxStalledCount: this.options.maxStalledCount } : {}),
      },
    );
    worker.on("error", (error) => this.logger.error({ err: error }, "reply queue worker: Redis error"));
    worker.on("failed", (failed, error) => {
      this.logger.error(
        { err: error, msgidServer: failed?.data?.msgidServer, attempt: failed?.attemptsMade },
        "reply job failed",
      );
    });
    worker.on("stalled", (jobId) => {
      this.logger.warn({ jobId }, "reply job stalled (its worker stopped renewing the lock); moved back to waiting");
    });
    this.worker = worker;
  }

  /** Stops taking jobs, waits for the running ones (unless `force`), then closes the connections. */
  stop(options: BullMqStopOptions = {}): Promise<void> {
    this.stopping ??= this.close(options.force ?? false);
    return this.stopping;
  }

  async depth(): Promise<number> {
    // 'delayed' holds jobs waiting out a retry backoff: still work this queue owes.
    const counts = await this.withinCommandTimeout("depth", this.queue.getJobCounts("waiting", "active", "delayed"));
    return (counts["waiting"] ?? 0) + (counts["active"] ?? 0) + (counts["delayed"] ?? 0);
  }

  private async add(job: ReplyJob): Promise<void> {
    const jobId = jobIdFor(job.msgidServer);
    const state = await this.queue.getJobState(jobId);
    if (state === "failed") {
      await this.retryFailed(jobId, job.msgidServer);
      return;
    }
    // 'unknown' is the usual case. Any other state is a job that is still queued, delayed for a
    // retry or running (or a kept completed record, see keepCompletedJobs): nothing to add. Two
    // instances that both saw 'unknown' race harmlessly: BullMQ ignores an add with an existing id.
    if (state !== "unknown") return;
    await this.queue.add(JOB_NAME, { msgidServer: job.msgidServer }, { jobId });
  }

  private async retryFailed(jobId: string, msgidServer: string): Promise<void> {
    const failed = await this.queue.getJob(jobId);
    if (!failed) {
      // Evicted by removeOnFail between the two reads: it is simply a new job now.
      await this.queue.add(JOB_NAME, { msgidServer }, { jobId });
      return;
    }
    try {
      await failed.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
    } catch (error) {
      // Another instance retried it first: it is queued again, which is all this call wanted.
      if ((await this.queue.getJobState(jobId)) === "failed") throw error;
    }
  }

  private async withinCommandTimeout<T>(what: string, command: Promise<T>): Promise<T> {
    const timeoutMs = this.options.commandTimeoutMs ?? 3000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`reply queue ${what}: Redis did not answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([command, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async close(force: boolean): Promise<void> {
    this.shutdown.abort(new Error("queue stopped"));
    try {
      // Worker.close waits for the running jobs and fetches nothing new meanwhile.
      await this.worker?.close(force);
    } finally {
      await this.queue.close();
      if (this.ownsConnection) {
        // QUIT on a client that is not connected would wait in ioredis's offline queue.
        if (force || this.connection.status !== "ready") this.connection.disconnect();
        else await this.connection.quit().catch(() => this.connection.disconnect());
      }
    }
  }
}
