import { randomUUID } from "node:crypto";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { REDIS_URL, services } from "../../test/services.ts";
import { BullMqQueue, type BullMqQueueOptions, jobIdFor } from "./bullmq.ts";
import { runReplyQueueConformance, waitFor } from "./conformance.ts";
import type { ReplyJob } from "./types.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe("jobIdFor", () => {
  test("never yields what BullMQ refuses: an integer, '0' or a ':'", () => {
    for (const msgidServer of ["4163728312937", "0", "12", "a:b:c", "a:b", ":", "x"]) {
      const jobId = jobIdFor(msgidServer);
      expect(`${Number.parseInt(jobId, 10)}`).not.toBe(jobId);
      expect(jobId).not.toContain(":");
    }
    expect(jobIdFor("4163728312937")).toBe("msg-4163728312937");
  });

  test("distinct msgidServers get distinct job ids", () => {
    const ids = ["1", "01", "a:b", "a_b", "a-b", "YTpi", "用户/消息", "msg-1", "msg64-YTpi", " 1", "1 "];
    expect(new Set(ids.map(jobIdFor)).size).toBe(ids.length);
  });

  test("an empty msgidServer is refused", () => {
    expect(() => jobIdFor("")).toThrow(TypeError);
  });
});

describe("BullMqQueue options", () => {
  test("a supplied connection must have maxRetriesPerRequest: null", () => {
    const connection = new Redis(REDIS_URL, { lazyConnect: true });
    try {
      expect(() => new BullMqQueue({ connection, concurrency: 1 })).toThrow(/maxRetriesPerRequest/);
    } finally {
      connection.disconnect();
    }
  });

  test("exactly one of redisUrl and connection", () => {
    expect(() => new BullMqQueue({ concurrency: 1 })).toThrow(TypeError);
  });

  test("enqueue and depth give up when Redis does not answer, instead of holding NIM's callback", async () => {
    // Port 1: nothing listens, so ioredis keeps reconnecting and the commands would wait forever.
    const queue = new BullMqQueue({ redisUrl: "redis://127.0.0.1:1", concurrency: 1, commandTimeoutMs: 200 });
    try {
      const startedAt = Date.now();
      await expect(queue.enqueue({ msgidServer: "4163728312937" })).rejects.toThrow(/did not answer within 200 ms/);
      await expect(queue.depth()).rejects.toThrow(/did not answer/);
      expect(Date.now() - startedAt).toBeLessThan(1500);
    } finally {
      await queue.stop();
    }
  });
});

describe.runIf(services.redis)("BullMqQueue on Redis", () => {
  const runId = randomUUID().slice(0, 8);
  let sequence = 0;
  const used: string[] = [];
  let admin: Redis;

  /** A queue name no other test or run uses; its keys are deleted after the test. */
  function nextQueueName(): string {
    const name = `im-bridge-test-${runId}-${++sequence}`;
    used.push(name);
    return name;
  }

  async function deleteUsedQueues(): Promise<void> {
    for (const name of used.splice(0)) {
      const queue = new Queue(name, { connection: admin });
      await queue.obliterate({ force: true });
      await queue.close();
    }
  }

  function makeQueue(options: Omit<BullMqQueueOptions, "redisUrl" | "connection">): BullMqQueue {
    return new BullMqQueue({ redisUrl: REDIS_URL, ...options });
  }

  beforeAll(() => {
    admin = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await deleteUsedQueues();
    await admin.quit();
  });

  runReplyQueueConformance(
    "BullMQ",
    ({ concurrency, attempts, retryDelayMs }) =>
      makeQueue({ queueName: nextQueueName(), concurrency, attempts, backoffMs: retryDelayMs }),
    { cleanup: deleteUsedQueues },
  );

  describe("BullMQ specifics", () => {
    const open: BullMqQueue[] = [];
    function tracked(queue: BullMqQueue): BullMqQueue {
      open.push(queue);
      return queue;
    }
    afterEach(async () => {
      await Promise.allSettled(open.splice(0).map((queue) => queue.stop({ force: true })));
      await deleteUsedQueues();
    });

    test("msgidServers BullMQ would refuse as job ids reach the handler unchanged, once each", async () => {
      const queue = tracked(makeQueue({ queueName: nextQueueName(), concurrency: 2 }));
      const handled: string[] = [];
      queue.start(async (job) => {
        handled.push(job.msgidServer);
      });
      const ids = ["4163728312937", "0", "a:b:c", "a:b", "用户 消息/1"];
      for (const msgidServer of ids) {
        await queue.enqueue({ msgidServer });
        await queue.enqueue({ msgidServer });
      }
      await waitFor("all handled", async () => handled.length >= ids.length && (await queue.depth()) === 0);
      await sleep(100);
      expect(handled.sort()).toEqual([...ids].sort());
    });

    test("a prefix keeps every key of the queue under it, apart from other deployments", async () => {
      const queueName = nextQueueName();
      const prefix = `im-bridge-test-prefix-${runId}`;
      const queue = tracked(makeQueue({ queueName, prefix, concurrency: 1 }));
      const handled: string[] = [];
      queue.start(async (job) => {
        handled.push(job.msgidServer);
      });
      await queue.enqueue({ msgidServer: "4163728312937" });
      await waitFor("handled", async () => handled.length === 1 && (await queue.depth()) === 0);
      try {
        expect((await admin.keys(`${prefix}:${queueName}:*`)).length).toBeGreaterThan(0);
        expect(await admin.keys(`bull:${queueName}:*`)).toEqual([]);
      } finally {
        await queue.stop({ force: true });
        const keys = await admin.keys(`${prefix}:*`);
        if (keys.length > 0) await admin.del(...keys);
      }
    });

    test("completed jobs are removed; failed ones are kept up to keepFailedJobs", async () => {
      const queueName = nextQueueName();
      const queue = tracked(makeQueue({ queueName, concurrency: 4, attempts: 1, keepFailedJobs: 2 }));
      let calls = 0;
      queue.start(async (job) => {
        calls++;
        if (job.msgidServer.startsWith("bad")) throw new Error("planned failure");
      });
      for (const msgidServer of ["good-1", "good-2", "bad-1", "bad-2", "bad-3", "bad-4"]) {
        await queue.enqueue({ msgidServer });
      }
      await waitFor("all six tried", async () => calls === 6 && (await queue.depth()) === 0);
      const inspector = new Queue(queueName, { connection: admin });
      try {
        const counts = await inspector.getJobCounts("completed", "failed");
        expect(counts).toEqual({ completed: 0, failed: 2 });
      } finally {
        await inspector.close();
      }
    });

    test("two instances on one queue share 200 jobs and handle none twice", async () => {
      const queueName = nextQueueName();
      const first = tracked(makeQueue({ queueName, concurrency: 5 }));
      const second = tracked(makeQueue({ queueName, concurrency: 5 }));
      const handledBy = new Map<string, string[]>();
      const handler = (instance: string) => async (job: ReplyJob) => {
        handledBy.set(job.msgidServer, [...(handledBy.get(job.msgidServer) ?? []), instance]);
        await sleep(5);
      };
      const ids = Array.from({ length: 200 }, (_, index) => String(5_000_000_000_000 + index));
      // Both instances produce, as two bridge instances receiving callbacks would.
      await Promise.all(ids.map((msgidServer, index) => (index % 2 ? first : second).enqueue({ msgidServer })));
      first.start(handler("first"));
      second.start(handler("second"));
      await waitFor("200 jobs handled", async () => handledBy.size === 200 && (await first.depth()) === 0, 15_000);
      await sleep(200);
      const all = [...handledBy.values()];
      expect(all.every((instances) => instances.length === 1)).toBe(true);
      const byFirst = all.filter(([instance]) => instance === "first").length;
      expect(byFirst).toBeGreaterThan(0);
      expect(byFirst).toBeLessThan(200);
    });

    test("the job of an instance that died is taken over by another one once its lock expires", async () => {
      const settings = { queueName: nextQueueName(), concurrency: 1, lockDurationMs: 1000, stalledIntervalMs: 500 };
      const dying = tracked(makeQueue(settings));
      let dyingStarted = 0;
      dying.start(async () => {
        dyingStarted++;
        // Hangs like a process that froze or was killed mid-job.
        await new Promise<never>(() => {});
      });
      await dying.enqueue({ msgidServer: "orphan" });
      await waitFor("the dying instance to take the job", () => dyingStarted === 1);
      // Force: drop the connections without finishing the job or releasing its lock.
      await dying.stop({ force: true });

      const diedAt = Date.now();
      const survivor = tracked(makeQueue(settings));
      const handled: string[] = [];
      survivor.start(async (job) => {
        handled.push(job.msgidServer);
      });
      await waitFor("the survivor to take the job over", () => handled.length === 1, 8000);
      // lockDuration + up to two stalled intervals, with slack.
      expect(Date.now() - diedAt).toBeLessThan(5000);
      expect(handled).toEqual(["orphan"]);
      await waitFor("the queue to drain", async () => (await survivor.depth()) === 0);
    });
  });
});
