/**
 * The bridge in its own process for the benchmarks: what `src/cli/serve.ts` does (environment only,
 * createBridge, start), plus the overrides a benchmark needs and an IPC channel to report from
 * inside the process (event-loop delay, memory, NIM send times).
 *
 * BENCH_MODE:
 * - `ingest`: overrides.worker = false, so the process only takes callbacks (verify, parse, one inbox
 *   insert, enqueue) — the callback ingest path alone, like SERVE_ROLE=http.
 * - `stream`: the worker runs with the in-bench token generator (BENCH_TOKENS pieces every
 *   BENCH_TOKEN_INTERVAL_MS ms, each carrying the wall-clock time it was yielded).
 *
 * Started with `node --import tsx bench/bridge-child.ts` through child_process.fork (see children.ts).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { loadConfig } from "../src/config/index.ts";
import type { ReplyObserver } from "../src/reply/observer.ts";
import { type BridgeOverrides, createBridge } from "../src/server.ts";
import { summarize } from "./common.ts";

type Request = { id: number; type: "mark" | "reset" | "stats" | "stop" };

/** The sampling timer of the event-loop-delay histogram; its own period is subtracted from each value. */
const RESOLUTION_MS = 1;

/** CLOCK_MONOTONIC in µs: the time base of V8's CPU profiles, so a profile can be cut to a window. */
function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

async function main(): Promise<void> {
  const mode = process.env.BENCH_MODE ?? "ingest";
  const config = loadConfig(process.env, { require: ["NIM_APP_KEY", "NIM_APP_SECRET", "NIM_BOT_ACCID"] });

  let sendTimes: number[] = [];
  let sendOutcomes: Record<string, number> = {};
  const observer: ReplyObserver = {
    sent(_kind, outcome, milliseconds) {
      sendTimes.push(milliseconds);
      sendOutcomes[outcome] = (sendOutcomes[outcome] ?? 0) + 1;
    },
  };
  const overrides: BridgeOverrides = { observer };
  if (mode === "ingest") {
    overrides.worker = false;
  } else {
    // By module URL, so the generator runs wherever the replies run (the reply thread).
    overrides.generatorModule = new URL("./token-generator-module.ts", import.meta.url).href;
  }

  const bridge = await createBridge(config, overrides);
  const url = await bridge.start();
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();

  // Peaks of the heap figures since the last reset, to tell heap growth from other RSS.
  let peaks = { heapTotal: 0, heapUsed: 0, external: 0 };
  const samplePeaks = () => {
    const memory = process.memoryUsage();
    peaks = {
      heapTotal: Math.max(peaks.heapTotal, memory.heapTotal),
      heapUsed: Math.max(peaks.heapUsed, memory.heapUsed),
      external: Math.max(peaks.external, memory.external),
    };
  };
  setInterval(samplePeaks, 250).unref();

  const ms = (nanoseconds: number) => Math.max(0, nanoseconds / 1e6 - RESOLUTION_MS);
  process.on("message", async (message: Request) => {
    switch (message.type) {
      case "mark":
        process.send?.({ id: message.id, monotonicMicros: monotonicMicros() });
        return;
      case "reset":
        delay.reset();
        peaks = { heapTotal: 0, heapUsed: 0, external: 0 };
        sendTimes = [];
        sendOutcomes = {};
        process.send?.({ id: message.id, monotonicMicros: monotonicMicros() });
        return;
      case "stats": {
        samplePeaks();
        const memory = process.memoryUsage();
        const sends = summarize(sendTimes);
        process.send?.({
          id: message.id,
          monotonicMicros: monotonicMicros(),
          eventLoopDelayMs: {
            p50: ms(delay.percentile(50)),
            p99: ms(delay.percentile(99)),
            max: ms(delay.max),
            mean: ms(delay.mean),
          },
          rss: memory.rss,
          heapUsed: memory.heapUsed,
          peaks,
          sends: { count: sends.count, p50: sends.p50, p99: sends.p99, max: sends.max, outcomes: sendOutcomes },
        });
        return;
      }
      case "stop": {
        delay.disable();
        // A bounded close: streams still running are abandoned (the inbox would resume them).
        await Promise.race([bridge.close(), new Promise((resolve) => setTimeout(resolve, 5000))]);
        process.send?.({ id: message.id });
        // A normal exit, so --cpu-prof writes its profile.
        process.exit(0);
      }
    }
  });

  process.send?.({
    type: "ready",
    url,
    pid: process.pid,
    queue: bridge.queue.constructor.name,
    database: bridge.database.dialect,
    redisConfigured: config.redisUrl !== undefined,
  });
}

main().catch((error: unknown) => {
  console.error("bench bridge child failed:", error);
  process.exit(1);
});
