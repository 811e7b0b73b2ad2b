/**
 * The shared contract suite of ReplyQueue (in the spirit of hono's router `common.case.test.ts`):
 * in-process.test.ts and bullmq.test.ts both call `runReplyQueueConformance`, so what the reply
 * worker relies on is checked once, the same way for every implementation:
 *
 * - every enqueued job is handled exactly once;
 * - an enqueue of a msgidServer that is queued, running or waiting for a retry adds nothing;
 * - a msgidServer enqueued again after its job finished (or failed all its attempts) is handled
 *   again: the inbox sweeper re-enqueues unfinished rows and relies on it;
 * - no more than `concurrency` handlers run at once, and the limit is used;
 * - a throwing handler is retried until it succeeds;
 * - depth() counts waiting and running jobs and comes back to 0;
 * - stop() waits for the running jobs, and no job starts after it.
 *
 * Each test builds its own queue through `makeQueue` with the settings it needs; the suite stops
 * every queue it made after each test.
 */
import { afterEach, describe, expect, test } from "vitest";
import type { ReplyJob, ReplyQueue } from "./types.ts";

/** What a test asks of the queue it gets from the harness. */
export interface ConformanceQueueSettings {
  concurrency: number;
  /** Total tries of a job whose handler throws. */
  attempts: number;
  /** The delay before the first retry (implementations may grow it for later ones). */
  retryDelayMs: number;
}

export interface ReplyQueueConformanceOptions {
  /** Called after each test once its queues are stopped, e.g. to delete a Redis queue's keys. */
  cleanup?: () => Promise<void> | void;
}

export type MakeReplyQueue = (settings: ConformanceQueueSettings) => Promise<ReplyQueue> | ReplyQueue;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `condition` until it holds, failing after `timeoutMs` with `what` in the message. */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  intervalMs = 10,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** A promise to release by hand: lets a test hold handlers "running" for as long as it needs. */
export function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** Counts handler calls per msgidServer. */
function callCounter() {
  const calls = new Map<string, number>();
  return {
    calls,
    record(job: ReplyJob) {
      calls.set(job.msgidServer, (calls.get(job.msgidServer) ?? 0) + 1);
    },
    count: (msgidServer: string) => calls.get(msgidServer) ?? 0,
    total: () => [...calls.values()].reduce((sum, value) => sum + value, 0),
  };
}

const defaults: ConformanceQueueSettings = { concurrency: 4, attempts: 3, retryDelayMs: 20 };

export function runReplyQueueConformance(
  name: string,
  makeQueue: MakeReplyQueue,
  options: ReplyQueueConformanceOptions = {},
): void {
  describe(`ReplyQueue conformance: ${name}`, () => {
    const made: ReplyQueue[] = [];
    async function queueWith(settings: Partial<ConformanceQueueSettings> = {}): Promise<ReplyQueue> {
      const queue = await makeQueue({ ...defaults, ...settings });
      made.push(queue);
      return queue;
    }

    afterEach(async () => {
      await Promise.allSettled(made.splice(0).map((queue) => queue.stop()));
      await options.cleanup?.();
    });

    test("every enqueued job is handled exactly once", async () => {
      const queue = await queueWith({ concurrency: 4 });
      const counter = callCounter();
      queue.start(async (job) => {
        counter.record(job);
        await sleep(Math.random() * 5);
      });
      const ids = Array.from({ length: 50 }, (_, index) => String(7_000_000_000_000 + index));
      for (const msgidServer of ids) await queue.enqueue({ msgidServer });
      await waitFor(
        "50 jobs handled and the queue empty",
        async () => counter.total() >= 50 && (await queue.depth()) === 0,
      );
      await sleep(100);
      expect(counter.calls.size).toBe(50);
      for (const msgidServer of ids) expect(counter.count(msgidServer)).toBe(1);
    });

    test("a duplicate enqueue while the job is queued or running is not handled twice", async () => {
      const queue = await queueWith({ concurrency: 1 });
      const counter = callCounter();
      const release = gate();
      queue.start(async (job) => {
        counter.record(job);
        await release.opened;
      });
      await queue.enqueue({ msgidServer: "running" });
      await waitFor("the first job to run", () => counter.count("running") === 1);
      await queue.enqueue({ msgidServer: "running" });
      await queue.enqueue({ msgidServer: "queued" });
      await queue.enqueue({ msgidServer: "queued" });
      expect(await queue.depth()).toBe(2);
      release.open();
      await waitFor("both jobs handled", async () => counter.count("queued") === 1 && (await queue.depth()) === 0);
      await sleep(100);
      expect(counter.count("running")).toBe(1);
      expect(counter.count("queued")).toBe(1);
    });

    test("a msgidServer enqueued again after its job completed is handled again", async () => {
      const queue = await queueWith();
      const counter = callCounter();
      queue.start(async (job) => counter.record(job));
      await queue.enqueue({ msgidServer: "again" });
      await waitFor("the first run", async () => counter.count("again") === 1 && (await queue.depth()) === 0);
      await queue.enqueue({ msgidServer: "again" });
      await waitFor("the second run", () => counter.count("again") === 2);
    });

    test("at most `concurrency` handlers run at once, and the limit is reached", async () => {
      const queue = await queueWith({ concurrency: 3 });
      let running = 0;
      let mostAtOnce = 0;
      let finished = 0;
      for (let index = 0; index < 12; index++) await queue.enqueue({ msgidServer: `parallel-${index}` });
      queue.start(async () => {
        running++;
        mostAtOnce = Math.max(mostAtOnce, running);
        await sleep(40);
        running--;
        finished++;
      });
      await waitFor("12 jobs finished", () => finished === 12);
      expect(mostAtOnce).toBe(3);
    });

    test("a throwing handler is retried until it succeeds, and a duplicate during the backoff adds nothing", async () => {
      const queue = await queueWith({ attempts: 4, retryDelayMs: 200 });
      const counter = callCounter();
      let succeeded = 0;
      queue.start(async (job) => {
        counter.record(job);
        if (counter.count(job.msgidServer) < 3) throw new Error(`planned failure ${counter.count(job.msgidServer)}`);
        succeeded++;
      });
      await queue.enqueue({ msgidServer: "flaky" });
      await waitFor("the first failure", () => counter.count("flaky") === 1);
      await sleep(50);
      await queue.enqueue({ msgidServer: "flaky" });
      await waitFor("success on the third try", async () => succeeded === 1 && (await queue.depth()) === 0);
      await sleep(100);
      expect(counter.count("flaky")).toBe(3);
      expect(succeeded).toBe(1);
    });

    test("a msgidServer whose job failed every attempt is handled again when enqueued again", async () => {
      const queue = await queueWith({ attempts: 2, retryDelayMs: 20 });
      const counter = callCounter();
      let broken = true;
      let succeeded = 0;
      queue.start(async (job) => {
        counter.record(job);
        if (broken) throw new Error("planned failure");
        succeeded++;
      });
      await queue.enqueue({ msgidServer: "gave-up" });
      await waitFor("both attempts used", async () => counter.count("gave-up") === 2 && (await queue.depth()) === 0);
      await sleep(50);
      expect(counter.count("gave-up")).toBe(2);
      broken = false;
      await queue.enqueue({ msgidServer: "gave-up" });
      await waitFor("the job to run again and succeed", () => succeeded === 1);
    });

    test("depth() counts waiting and running jobs and returns to 0", async () => {
      const queue = await queueWith({ concurrency: 1 });
      const release = gate();
      let started = 0;
      await queue.enqueue({ msgidServer: "depth-1" });
      await queue.enqueue({ msgidServer: "depth-2" });
      expect(await queue.depth()).toBe(2);
      queue.start(async () => {
        started++;
        await release.opened;
      });
      await queue.enqueue({ msgidServer: "depth-3" });
      await waitFor("the first job to run", () => started === 1);
      // One running, two waiting.
      expect(await queue.depth()).toBe(3);
      release.open();
      await waitFor("the queue to drain", async () => (await queue.depth()) === 0);
      expect(started).toBe(3);
    });

    test("stop() waits for the running jobs, and no job starts after it", async () => {
      const queue = await queueWith({ concurrency: 2 });
      let started = 0;
      let finished = 0;
      queue.start(async () => {
        started++;
        await sleep(300);
        finished++;
      });
      for (let index = 0; index < 6; index++) await queue.enqueue({ msgidServer: `stop-${index}` });
      await waitFor("two jobs running", () => started === 2);
      await queue.stop();
      expect(finished).toBe(2);
      await sleep(400);
      expect(started).toBe(2);
      // Enqueueing after stop neither throws nor runs anything.
      await queue.enqueue({ msgidServer: "after-stop" });
      await sleep(100);
      expect(started).toBe(2);
    });
  });
}
