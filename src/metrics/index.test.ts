import fastify from "fastify";
import { describe, expect, it } from "vitest";
import { createMetrics, metricsRoute } from "./index.ts";

async function scrape(metrics: ReturnType<typeof createMetrics>) {
  const app = fastify();
  await app.register(metricsRoute(metrics));
  const response = await app.inject({ method: "GET", url: "/metrics" });
  await app.close();
  return response;
}

/** The value of one sample line, e.g. `im_bridge_replies_total{status="ok"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("createMetrics", () => {
  it("serves every metric in the text format on GET /metrics", async () => {
    const metrics = createMetrics();
    const response = await scrape(metrics);
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const name of [
      "im_bridge_callbacks_total",
      "im_bridge_replies_total",
      "im_bridge_first_segment_seconds",
      "im_bridge_reply_duration_seconds",
      "im_bridge_generator_first_token_seconds",
      "im_bridge_nim_calls_total",
      "im_bridge_nim_call_seconds",
      "im_bridge_generator_errors_total",
      "im_bridge_queue_depth",
      "im_bridge_register_total",
      // Default process metrics.
      "process_cpu_user_seconds_total",
      "nodejs_eventloop_lag_seconds",
    ]) {
      expect(response.body).toContain(`# TYPE ${name} `);
    }
  });

  it("leaves out process metrics on request", async () => {
    const response = await scrape(createMetrics({ defaultMetrics: false }));
    expect(response.body).not.toContain("process_cpu_user_seconds_total");
    expect(response.body).toContain("im_bridge_replies_total");
  });

  it("keeps instances apart (own registry each)", async () => {
    const first = createMetrics({ defaultMetrics: false });
    const second = createMetrics({ defaultMetrics: false });
    first.callbackOutcome("accepted");
    expect(sample(await first.render(), 'im_bridge_callbacks_total{outcome="accepted"}')).toBe(1);
    expect(sample(await second.render(), 'im_bridge_callbacks_total{outcome="accepted"}')).toBeUndefined();
  });

  it("counts callback outcomes, with a reason only for rejections", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.callbackOutcome("accepted");
    metrics.callbackOutcome("accepted");
    metrics.callbackOutcome("duplicate");
    metrics.callbackOutcome("ignored", "message-from-bot");
    metrics.callbackOutcome("validation");
    metrics.callbackOutcome("rejected", "checksum-mismatch");
    metrics.callbackOutcome("rejected", "checksum-mismatch");
    metrics.callbackOutcome("rejected", "source-address");
    metrics.callbackOutcome("rejected", "weird reason with spaces {}");
    metrics.callbackOutcome("rejected");
    const text = await metrics.render();
    expect(sample(text, 'im_bridge_callbacks_total{outcome="accepted"}')).toBe(2);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="duplicate"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="ignored"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="validation"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="checksum-mismatch"}')).toBe(2);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="source-address"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="other"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="unknown"}')).toBe(1);
  });

  it("caps the number of distinct label values", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    for (let index = 0; index < 80; index += 1) metrics.callbackOutcome("rejected", `reason-${index}`);
    const text = await metrics.render();
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="reason-0"}')).toBe(1);
    expect(sample(text, 'im_bridge_callbacks_total{outcome="rejected",reason="other"}')).toBe(30);
  });

  it("counts registrations", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.registerOutcome("created");
    metrics.registerOutcome("existing");
    metrics.registerOutcome("existing");
    const text = await metrics.render();
    expect(sample(text, 'im_bridge_register_total{outcome="created"}')).toBe(1);
    expect(sample(text, 'im_bridge_register_total{outcome="existing"}')).toBe(2);
  });

  it("turns observer hooks into reply metrics", async () => {
    let clock = 1_000_000;
    const metrics = createMetrics({ defaultMetrics: false, now: () => clock });
    const observer = metrics.replyObserver();
    expect(metrics.replyObserver()).toBe(observer);

    // Accepted at t=0, picked up 500 ms later, first token after 1.2 s of generation, first segment at 2 s.
    observer.started?.("msg-1", clock);
    clock += 500;
    clock += 1200;
    observer.firstToken?.("msg-1", 1200);
    clock += 300;
    observer.sent?.("segment", "ok", 40);
    observer.firstSegment?.("msg-1");
    clock += 100;
    observer.sent?.("segment", "ok", 60);
    observer.firstSegment?.("msg-1"); // only the first counts
    observer.sent?.("segment", "414", 5000);
    clock += 2900;
    observer.sent?.("final", "ok", 30);
    observer.finished?.("msg-1", "ok");

    observer.started?.("msg-2");
    observer.generatorError?.("timeout");
    observer.finished?.("msg-2", "error");
    observer.finished?.("msg-3", "failed");
    observer.finished?.("msg-4", "something-new");

    const text = await metrics.render();
    expect(sample(text, "im_bridge_first_segment_seconds_count")).toBe(1);
    expect(sample(text, "im_bridge_first_segment_seconds_sum")).toBeCloseTo(2.0);
    expect(sample(text, 'im_bridge_first_segment_seconds_bucket{le="1.5"}')).toBe(0);
    expect(sample(text, 'im_bridge_first_segment_seconds_bucket{le="2"}')).toBe(1);
    expect(sample(text, "im_bridge_generator_first_token_seconds_sum")).toBeCloseTo(1.2);
    // msg-1 lasted 5 s; msg-2 0 s; msg-3 and msg-4 were never started, so they have no duration.
    expect(sample(text, "im_bridge_reply_duration_seconds_count")).toBe(2);
    expect(sample(text, "im_bridge_reply_duration_seconds_sum")).toBeCloseTo(5.0);
    expect(sample(text, 'im_bridge_replies_total{status="ok",bot=""}')).toBe(1);
    expect(sample(text, 'im_bridge_replies_total{status="error",bot=""}')).toBe(1);
    expect(sample(text, 'im_bridge_replies_total{status="failed",bot=""}')).toBe(1);
    expect(sample(text, 'im_bridge_replies_total{status="other",bot=""}')).toBe(1);
    expect(sample(text, 'im_bridge_nim_calls_total{kind="segment",outcome="ok"}')).toBe(2);
    expect(sample(text, 'im_bridge_nim_calls_total{kind="segment",outcome="414"}')).toBe(1);
    expect(sample(text, 'im_bridge_nim_calls_total{kind="final",outcome="ok"}')).toBe(1);
    expect(sample(text, 'im_bridge_nim_call_seconds_count{kind="segment"}')).toBe(3);
    expect(sample(text, 'im_bridge_nim_call_seconds_sum{kind="segment"}')).toBeCloseTo(5.1);
    expect(sample(text, 'im_bridge_generator_errors_total{kind="timeout"}')).toBe(1);
  });

  it("measures from generation start when the pipeline never calls started", async () => {
    let clock = 0;
    const metrics = createMetrics({ defaultMetrics: false, now: () => clock });
    const observer = metrics.replyObserver();
    clock = 800;
    observer.firstToken?.("msg-1", 800);
    clock = 1000;
    observer.firstSegment?.("msg-1");
    clock = 4000;
    observer.finished?.("msg-1", "ok");
    const text = await metrics.render();
    expect(sample(text, "im_bridge_first_segment_seconds_sum")).toBeCloseTo(1.0);
    expect(sample(text, "im_bridge_reply_duration_seconds_sum")).toBeCloseTo(4.0);
  });

  it("bounds the replies it tracks", async () => {
    let clock = 0;
    const metrics = createMetrics({ defaultMetrics: false, now: () => clock, maxTrackedReplies: 2 });
    const observer = metrics.replyObserver();
    observer.started?.("a");
    observer.started?.("b");
    observer.started?.("c"); // drops "a"
    clock = 1000;
    for (const replyTo of ["a", "b", "c"]) observer.finished?.(replyTo, "ok", "tutor_bot");
    const text = await metrics.render();
    expect(sample(text, 'im_bridge_replies_total{status="ok",bot="tutor_bot"}')).toBe(3);
    expect(sample(text, "im_bridge_reply_duration_seconds_count")).toBe(2);
  });

  it("reads the queue depth at scrape time, surviving a failing or slow source", async () => {
    const metrics = createMetrics({ defaultMetrics: false, queueDepthTimeoutMs: 50 });
    expect(sample((await scrape(metrics)).body, "im_bridge_queue_depth")).toBe(0);
    let depth = 7;
    metrics.setQueueDepthSource(async () => depth);
    expect(sample((await scrape(metrics)).body, "im_bridge_queue_depth")).toBe(7);
    depth = 3;
    expect(sample((await scrape(metrics)).body, "im_bridge_queue_depth")).toBe(3);

    metrics.setQueueDepthSource(async () => {
      throw new Error("redis down");
    });
    const failing = await scrape(metrics);
    expect(failing.statusCode).toBe(200);
    expect(sample(failing.body, "im_bridge_queue_depth")).toBe(3);

    metrics.setQueueDepthSource(() => new Promise<number>(() => {}));
    const started = Date.now();
    const slow = await scrape(metrics);
    expect(slow.statusCode).toBe(200);
    expect(Date.now() - started).toBeLessThan(1000);

    metrics.setQueueDepthSource(() => 12);
    expect(sample((await scrape(metrics)).body, "im_bridge_queue_depth")).toBe(12);
  });

  it("serves another path on request", async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const app = fastify();
    await app.register(metricsRoute(metrics, { path: "/internal/metrics" }));
    expect((await app.inject({ method: "GET", url: "/internal/metrics" })).statusCode).toBe(200);
    expect((await app.inject({ method: "GET", url: "/metrics" })).statusCode).toBe(404);
    await app.close();
  });
});
