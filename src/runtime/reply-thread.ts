/**
 * The reply thread, seen from the process: in the all-in-one role the replies run on a worker
 * thread of their own, so a callback's ack never waits behind reply work on the event loop
 * (issue 13: with 2,000 replies streaming on one loop the slowest ack took seconds, past NIM's 5 s
 * limit). The process keeps HTTP (callbacks, register, console, metrics); the thread keeps the
 * worker, the generators and the NIM sends. Both open the same database: the inbox row stays the
 * durable job, and the thread's queue only schedules it.
 *
 * The process tells the thread of each accepted message (`job`) and of stops and recalls
 * (`cancel`); the thread replays its observer calls here (metrics, the console's live view) in
 * batches. A thread that dies unexpectedly is started again: at start it resumes every unfinished
 * reply from the inbox, as a restarted process would.
 *
 * @module
 */
import { Worker } from "node:worker_threads";
import type { Config } from "../config/index.ts";
import type { Logger } from "../http/logger.ts";
import type { ReplyJob, ReplyJobHandler, ReplyQueue } from "../queue/types.ts";
import { callObserver, type ReplyObserver } from "../reply/observer.ts";
import type { TurnControl } from "../reply/turn-control.ts";
import type { FromReplyThread, ReplyThreadData, ToReplyThread } from "./reply-thread-messages.ts";

export interface ReplyThreadOptions {
  data: ReplyThreadData;
  /** Gets every observer call the thread makes (asked at each call: the caller builds it later). */
  observer: () => ReplyObserver;
  logger: Pick<Logger, "error" | "warn" | "info">;
  /** How long to wait before starting a thread that died again. */
  restartDelayMs?: number;
  /** How long `stop` waits for running replies to hand back before ending the thread. */
  stopTimeoutMs?: number;
  /**
   * Whether replies are waiting at start (unfinished in the inbox): then the thread starts at
   * once; otherwise with the first job, so an idle process does not carry a second heap.
   */
  hasWork?: () => Promise<boolean>;
}

/** The thread's entry module beside this one: `.js` in the compiled build, `.ts` under tsx. */
export function replyThreadEntry(): URL {
  const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  return new URL(`./reply-thread-entry${extension}`, import.meta.url);
}

/**
 * How to start a worker on `entry`. On Node 20 a worker does not inherit the process's `--import
 * tsx` hooks, so a TypeScript entry is reached through a two-line bootstrap that registers tsx in
 * the worker first (tsx's own API); the compiled build starts the file directly.
 */
function workerSource(entry: URL): { source: string | URL; evaluate: boolean } {
  if (!entry.pathname.endsWith(".ts")) return { source: entry, evaluate: false };
  const tsx = import.meta.resolve("tsx/esm/api");
  const source = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); });`;
  return { source, evaluate: true };
}

/**
 * Whether REPLY_THREAD=auto starts the thread: always from the compiled build; from TypeScript
 * sources when the process itself runs under tsx (`npm run serve:dev`, the CLI in tests, the
 * bench). A test runner that transpiles in memory (vitest) keeps one loop unless told `on`.
 */
export function replyThreadLoadable(): boolean {
  if (!import.meta.url.endsWith(".ts")) return true;
  return [...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((argument) => /\btsx\b/.test(argument));
}

/**
 * REPLY_THREAD=auto runs replies on their own thread when this process is the whole deployment
 * (role all, no Redis: with Redis, run SERVE_ROLE=worker processes instead), the database can be
 * opened twice (not an in-memory SQLite), and the caller handed in nothing that cannot cross into
 * a thread (a generator function, a NIM client, a queue, a clock, a fetch, a logger). `on` insists
 * and says why it cannot; `off` keeps one event loop.
 */
export function replyThreadWanted(
  config: Pick<Config, "role" | "redisUrl" | "databaseUrl"> & { reply: Pick<Config["reply"], "thread"> },
  context: { runsWorker: boolean; inProcessOverrides: readonly string[] },
): boolean {
  if (config.reply.thread === "off") return false;
  const reasons: string[] = [];
  if (!context.runsWorker || config.role !== "all") reasons.push("SERVE_ROLE is not all");
  if (config.redisUrl) reasons.push("REDIS_URL is set (run SERVE_ROLE=worker processes instead)");
  if (/^sqlite:(:memory:)?$/.test(config.databaseUrl)) reasons.push("the SQLite database is in memory");
  if (context.inProcessOverrides.length > 0) {
    reasons.push(`overrides cannot cross into a thread: ${context.inProcessOverrides.join(", ")}`);
  }
  if (config.reply.thread === "on" && reasons.length > 0) {
    throw new Error(`REPLY_THREAD=on, but replies cannot run on a thread: ${reasons.join("; ")}`);
  }
  // Under a test runner that transpiles in memory, auto stays on one loop (on still starts the
  // thread, through tsx's own API).
  return reasons.length === 0 && (config.reply.thread === "on" || replyThreadLoadable());
}

export class ReplyThread {
  private worker: Worker | undefined;
  private lastDepth = 0;
  private stopping = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  private stoppedWaiter: (() => void) | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(private readonly options: ReplyThreadOptions) {}

  /** The queue the intake enqueues on: each job is handed to the thread (started by the first). */
  readonly queue: ReplyQueue = {
    enqueue: async (job: ReplyJob) => {
      if (!this.worker && this.started && !this.stopping && !this.restartTimer) this.spawn();
      this.post({ type: "job", msgidServer: job.msgidServer });
    },
    start: (_handler: ReplyJobHandler) => {},
    stop: async () => {},
    depth: async () => this.lastDepth,
  };

  /** Stops and recalls reach the reply in the thread. */
  readonly turnControl: TurnControl = {
    cancel: async (replyTo, reason) => this.post({ type: "cancel", replyTo, reason }),
    close: async () => {},
  };

  /**
   * Starts the thread when replies are waiting (resolving once it has resumed them and takes
   * jobs); otherwise it starts with the first job. Messages posted to a thread that is still
   * starting wait in its port.
   */
  async start(): Promise<void> {
    this.started = true;
    if (this.options.hasWork && !(await this.options.hasWork())) return;
    await new Promise<void>((resolve, reject) => {
      this.readyWaiters.push({ resolve, reject });
      this.spawn();
    });
  }

  /** Running replies hand their leases back (as a process shutdown does), then the thread ends. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const worker = this.worker;
    if (!worker) return;
    const stopped = new Promise<void>((resolve) => {
      this.stoppedWaiter = resolve;
      worker.once("exit", () => resolve());
    });
    this.post({ type: "stop" });
    const timeoutMs = this.options.stopTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([stopped, timedOut]);
    clearTimeout(timer);
    if (outcome === "timeout") this.options.logger.warn({ timeoutMs }, "reply thread did not stop in time; ending it");
    await worker.terminate();
    this.worker = undefined;
  }

  private post(message: ToReplyThread): void {
    // While the thread is down its jobs are not lost: the next thread resumes them from the inbox.
    this.worker?.postMessage(message);
  }

  private spawn(): void {
    const { source, evaluate } = workerSource(replyThreadEntry());
    const worker = new Worker(source, { eval: evaluate, workerData: this.options.data });
    this.worker = worker;
    worker.on("message", (message: FromReplyThread) => this.receive(message));
    worker.on("error", (error) => {
      this.options.logger.error({ err: error }, "reply thread failed");
    });
    worker.on("exit", (code) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.stoppedWaiter?.();
      if (this.stopping) return;
      const error = new Error(`reply thread exited with code ${code} before it was ready`);
      const waiters = this.readyWaiters.splice(0);
      if (waiters.length > 0) {
        for (const waiter of waiters) waiter.reject(error);
        return;
      }
      const delayMs = this.options.restartDelayMs ?? 1_000;
      this.options.logger.error({ code, delayMs }, "reply thread ended unexpectedly; starting it again");
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (!this.stopping) this.spawn();
      }, delayMs);
      this.restartTimer.unref();
    });
  }

  private receive(message: FromReplyThread): void {
    switch (message.type) {
      case "ready":
        for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
        return;
      case "observed":
        for (const call of message.calls) {
          try {
            callObserver(this.options.observer(), call.method, call.args);
          } catch (error) {
            this.options.logger.warn({ err: error, method: call.method }, "reply observer failed");
          }
        }
        return;
      case "depth":
        this.lastDepth = message.depth;
        return;
      case "stopped":
        this.stoppedWaiter?.();
        return;
      case "failed":
        for (const waiter of this.readyWaiters.splice(0)) waiter.reject(new Error(message.message));
        return;
    }
  }
}
