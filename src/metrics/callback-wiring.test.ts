/**
 * The wiring the composition root is expected to do, end to end through Fastify: the callback
 * route with the source guard and the metrics outcome hook, and GET /metrics on the same app.
 */
import type { FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildMessageCopy } from "../callback/build.ts";
import { signCallback } from "../callback/sign.ts";
import { buildHttpApp } from "../http/app.ts";
import { createLogger } from "../http/logger.ts";
import type { ReplyJob, ReplyQueue } from "../queue/types.ts";
import { systemClock } from "../reply/clock.ts";
import { createCallbackGuard } from "../security/callback-guard.ts";
import { createSourceGuard, parseAddressList } from "../security/ip-allow-list.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories } from "../storage/repositories.ts";
import { testCallbackRoute as callbackRoute } from "../testing/callback-route.ts";
import { createMetrics, type Metrics, metricsRoute } from "./index.ts";

const APP_SECRET = "wiring-secret";
const BOT = "advisor_bot";

class RecordingQueue implements ReplyQueue {
  readonly jobs: ReplyJob[] = [];
  async enqueue(job: ReplyJob) {
    this.jobs.push(job);
  }
  start() {}
  async stop() {}
  async depth() {
    return this.jobs.length;
  }
}

function signed(body: string, remoteAddress: string, secret = APP_SECRET) {
  return {
    method: "POST" as const,
    url: "/im/callback",
    remoteAddress,
    headers: {
      "content-type": "application/json",
      ...signCallback({ appSecret: secret, body, curTime: Date.now() }),
    },
    payload: body,
  };
}

function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("callback route + source guard + metrics", () => {
  let database: Database;
  let app: FastifyInstance;
  let metrics: Metrics;
  let queue: RecordingQueue;

  beforeEach(async () => {
    database = await openDatabase("sqlite::memory:");
    const repositories = createRepositories(database);
    queue = new RecordingQueue();
    metrics = createMetrics({ defaultMetrics: false });
    metrics.setQueueDepthSource(() => queue.depth());
    const sourceGuard = createSourceGuard({
      allow: parseAddressList("59.111.0.0/16, 2001:db8::/32"),
      trustedProxies: parseAddressList("127.0.0.1"),
    });
    app = await buildHttpApp({
      logger: createLogger({ level: "silent" }),
      bodyLimitBytes: 64 * 1024,
      routes: [
        callbackRoute({
          appSecret: APP_SECRET,
          botAccid: BOT,
          windowMs: 300_000,
          repositories,
          queue,
          clock: systemClock,
          onOutcome: (outcome, detail) => metrics.callbackOutcome(outcome, detail),
          guard: createCallbackGuard(sourceGuard, {
            onRefused: () => metrics.callbackOutcome("rejected", "source-address"),
          }),
        }),
        metricsRoute(metrics),
      ],
    });
  });
  afterEach(async () => {
    await app.close();
    await database.close();
  });

  it("counts accepted, duplicate, rejected and refused callbacks and reports the queue", async () => {
    const body = JSON.stringify(buildMessageCopy({ from: "u_alice", to: BOT, body: "你好", msgidServer: "1001" }));
    expect((await app.inject(signed(body, "59.111.1.1"))).statusCode).toBe(200);
    expect((await app.inject(signed(body, "::ffff:59.111.1.1"))).statusCode).toBe(200);
    expect((await app.inject(signed(body, "59.111.1.1", "wrong-secret"))).statusCode).toBe(401);

    const refused = await app.inject(signed(body, "8.8.8.8"));
    expect(refused.statusCode).toBe(403);
    expect(refused.json().error.code).toBe("forbidden_source");

    // Through our own proxy the forwarded address counts; a spoofed entry from elsewhere does not.
    const proxied = signed(
      JSON.stringify(buildMessageCopy({ from: "u_bob", to: BOT, body: "hi", msgidServer: "1002" })),
      "127.0.0.1",
    );
    expect(
      (await app.inject({ ...proxied, headers: { ...proxied.headers, "x-forwarded-for": "59.111.2.2" } })).statusCode,
    ).toBe(200);
    const spoofed = signed(body, "8.8.8.8");
    expect(
      (await app.inject({ ...spoofed, headers: { ...spoofed.headers, "x-forwarded-for": "59.111.2.2" } })).statusCode,
    ).toBe(403);

    const text = (await app.inject({ method: "GET", url: "/metrics" })).body;
    expect(sample(text, 'im_bridge_callbacks_total{outcome="accepted"}')).toBe(2);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="duplicate"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="checksum-mismatch"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="source-address"}')).toBe(2);
    expect(sample(text, "im_bridge_queue_depth")).toBe(2);
  });
});
