/**
 * Prometheus metrics. The pipeline never imports this module: it calls ReplyObserver hooks and the
 * callback route calls `onOutcome`; this module turns those calls into counters and histograms.
 * What each metric means and example alert rules: docs/operations.md.
 *
 * Every instance has its own Registry (not prom-client's global one), so tests and several apps in
 * one process never collide on metric names. Label values that come from outside (NIM codes,
 * reasons, kinds) are reduced to a short safe token and capped in number, because every distinct
 * label value is a time series kept forever.
 */
import type { FastifyPluginAsync } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { CallbackOutcome } from "../callback/route.ts";
import type { ReplyObserver } from "../reply/observer.ts";

export interface MetricsOptions {
  /**
   * The clock for latencies measured here (first segment, reply duration). Give the pipeline's
   * clock (`() => clock.now()`) so `started(replyTo, acceptedAt)` and this agree. Default Date.now.
   */
  now?: () => number;
  /** Process metrics (CPU, memory, event-loop lag, GC). Default true. */
  defaultMetrics?: boolean;
  /** Bound on the queue-depth source during a scrape, so a slow Redis cannot hang /metrics. Default 1000 ms. */
  queueDepthTimeoutMs?: number;
  /** Most replies tracked at once for latency; the oldest is dropped beyond it. Default 10 000. */
  maxTrackedReplies?: number;
}

export type QueueDepthSource = () => Promise<number> | number;

export interface Metrics {
  readonly registry: Registry;
  /** The observer to give the reply pipeline. One shared instance: its per-reply state is shared too. */
  replyObserver(): ReplyObserver;
  /** For the callback route's `onOutcome`. `reason` is kept only for `rejected`. */
  callbackOutcome(outcome: CallbackOutcome, reason?: string): void;
  /** For /im/register: created, existing, refreshed, refused, failed … */
  registerOutcome(outcome: string): void;
  /** What `im_bridge_queue_depth` reports, read at each scrape (e.g. `() => queue.depth()`). */
  setQueueDepthSource(source: QueueDepthSource): void;
  /** The exposition text, as GET /metrics serves it. */
  render(): Promise<string>;
}

const REPLY_STATUSES = new Set(["ok", "error", "blocked", "limited", "stopped", "skipped", "failed"]);
const CALLBACK_OUTCOMES = new Set<string>([
  "accepted",
  "duplicate",
  "ignored",
  "validation",
  "rejected",
  "unavailable",
]);
/** Distinct values one free-form label may take before further ones are counted as "other". */
const MAX_LABEL_VALUES = 50;
const LABEL_VALUE = /^[A-Za-z0-9_.:-]{1,40}$/;

const DEFAULT_MAX_TRACKED_REPLIES = 10_000;
const DEFAULT_QUEUE_DEPTH_TIMEOUT_MS = 1000;

/**
 * Keeps a free-form label bounded: values outside a short safe alphabet, or beyond the first
 * MAX_LABEL_VALUES distinct ones, become "other".
 */
function boundedLabel(): (value: string | undefined) => string {
  const seen = new Set<string>();
  return (value) => {
    if (value === undefined || value === "") return "unknown";
    if (!LABEL_VALUE.test(value)) return "other";
    if (seen.has(value)) return value;
    if (seen.size >= MAX_LABEL_VALUES) return "other";
    seen.add(value);
    return value;
  };
}

interface TrackedReply {
  startedAt: number;
  firstSegmentSeen: boolean;
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const now = options.now ?? Date.now;
  const maxTracked = options.maxTrackedReplies ?? DEFAULT_MAX_TRACKED_REPLIES;
  const depthTimeoutMs = options.queueDepthTimeoutMs ?? DEFAULT_QUEUE_DEPTH_TIMEOUT_MS;
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const callbacks = new Counter({
    name: "im_bridge_callbacks_total",
    help: "NIM message-copy callbacks by outcome (accepted, duplicate, ignored, validation, rejected); reason only for rejected",
    labelNames: ["outcome", "reason"] as const,
    registers,
  });
  const replies = new Counter({
    name: "im_bridge_replies_total",
    help: "Finished replies by final status (ok, error, blocked, limited, stopped, skipped, failed = could not be delivered) and bot",
    labelNames: ["status", "bot"] as const,
    registers,
  });
  const firstSegmentSeconds = new Histogram({
    name: "im_bridge_first_segment_seconds",
    help: "Seconds from callback acceptance (or reply start) to NIM accepting the reply's first message",
    buckets: [0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60],
    registers,
  });
  const replyDurationSeconds = new Histogram({
    name: "im_bridge_reply_duration_seconds",
    help: "Seconds from callback acceptance (or reply start) to the reply's end, any status",
    buckets: [1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300],
    registers,
  });
  const firstTokenSeconds = new Histogram({
    name: "im_bridge_generator_first_token_seconds",
    help: "Seconds from the start of generation to the generator's first text piece",
    buckets: [0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60],
    registers,
  });
  const nimCalls = new Counter({
    name: "im_bridge_nim_calls_total",
    help: "NIM message sends by message kind and outcome (ok, or NIM's error code)",
    labelNames: ["kind", "outcome"] as const,
    registers,
  });
  const nimCallSeconds = new Histogram({
    name: "im_bridge_nim_call_seconds",
    help: "Seconds one NIM message send took, retries included",
    labelNames: ["kind"] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const generatorErrors = new Counter({
    name: "im_bridge_generator_errors_total",
    help: "Generations that ended without a complete answer, by kind (failed, timeout)",
    labelNames: ["kind"] as const,
    registers,
  });
  const registrations = new Counter({
    name: "im_bridge_register_total",
    help: "POST /im/register calls by outcome",
    labelNames: ["outcome"] as const,
    registers,
  });

  let queueDepthSource: QueueDepthSource | undefined;
  new Gauge({
    name: "im_bridge_queue_depth",
    help: "Reply jobs waiting in the queue, read at scrape time",
    registers,
    // Read on scrape rather than pushed, so the value is never staler than the scrape itself.
    async collect() {
      if (!queueDepthSource) return;
      let timer: NodeJS.Timeout | undefined;
      try {
        const depth = await Promise.race([
          Promise.resolve(queueDepthSource()),
          new Promise<never>((_resolve, reject) => {
            timer = setTimeout(() => reject(new Error("queue depth timed out")), depthTimeoutMs);
          }),
        ]);
        if (Number.isFinite(depth)) this.set(depth);
      } catch {
        // A failing source must not fail the whole scrape; the last value stays.
      } finally {
        clearTimeout(timer);
      }
    },
  });

  const rejectReason = boundedLabel();
  const nimKind = boundedLabel();
  const nimOutcome = boundedLabel();
  const generatorKind = boundedLabel();
  const registerLabel = boundedLabel();

  /** Per-reply start times, insertion-ordered so the oldest is dropped first when over the bound. */
  const tracked = new Map<string, TrackedReply>();
  const track = (replyTo: string, startedAt: number) => {
    if (tracked.has(replyTo)) return;
    // A reply whose `finished` never comes (a lost lease, a crash) must not leak memory forever.
    while (tracked.size >= maxTracked) {
      const oldest = tracked.keys().next().value;
      if (oldest === undefined) break;
      tracked.delete(oldest);
    }
    tracked.set(replyTo, { startedAt, firstSegmentSeen: false });
  };
  const secondsSince = (startedAt: number) => Math.max(0, now() - startedAt) / 1000;

  const observer: ReplyObserver = {
    started(replyTo, acceptedAt) {
      track(replyTo, acceptedAt ?? now());
    },
    firstToken(replyTo, milliseconds) {
      firstTokenSeconds.observe(Math.max(0, milliseconds) / 1000);
      // A pipeline that does not call `started` still gets latencies, counted from generation start.
      track(replyTo, now() - milliseconds);
    },
    firstSegment(replyTo) {
      const reply = tracked.get(replyTo);
      if (!reply || reply.firstSegmentSeen) return;
      reply.firstSegmentSeen = true;
      firstSegmentSeconds.observe(secondsSince(reply.startedAt));
    },
    sent(kind, outcome, milliseconds) {
      const kindLabel = nimKind(kind);
      nimCalls.inc({ kind: kindLabel, outcome: nimOutcome(outcome) });
      nimCallSeconds.observe({ kind: kindLabel }, Math.max(0, milliseconds) / 1000);
    },
    generatorError(kind) {
      generatorErrors.inc({ kind: generatorKind(kind) });
    },
    finished(replyTo, status, bot) {
      replies.inc({ status: REPLY_STATUSES.has(status) ? status : "other", bot: bot ?? "" });
      const reply = tracked.get(replyTo);
      if (reply) replyDurationSeconds.observe(secondsSince(reply.startedAt));
      tracked.delete(replyTo);
    },
  };

  return {
    registry,
    replyObserver: () => observer,
    callbackOutcome(outcome, reason) {
      const outcomeLabel = CALLBACK_OUTCOMES.has(outcome) ? outcome : "other";
      // `ignored` also comes with a detail (the event kind); only rejections get a reason label.
      if (outcomeLabel === "rejected") callbacks.inc({ outcome: outcomeLabel, reason: rejectReason(reason) });
      else callbacks.inc({ outcome: outcomeLabel });
    },
    registerOutcome(outcome) {
      registrations.inc({ outcome: registerLabel(outcome) });
    },
    setQueueDepthSource(source) {
      queueDepthSource = source;
    },
    render: () => registry.metrics(),
  };
}

export interface MetricsRouteOptions {
  /** Default /metrics. */
  path?: string;
}

/**
 * GET /metrics in Prometheus' text format (text/plain; version=0.0.4). It exposes operational
 * detail, so keep it off the public internet (bind the scrape through an internal port or deny
 * the path at the reverse proxy).
 */
export function metricsRoute(metrics: Metrics, options: MetricsRouteOptions = {}): FastifyPluginAsync {
  return async (app) => {
    app.get(options.path ?? "/metrics", async (_request, reply) => {
      const text = await metrics.render();
      return reply.header("content-type", metrics.registry.contentType).header("cache-control", "no-store").send(text);
    });
  };
}
