/**
 * Keeps the benchmark harness working: a tiny run of each moving part (the bare and bridge child
 * processes under autocannon, the in-process bridge with the token generator, the streaming bridge
 * child with its IPC statistics and the load client with its probes, the anchor client, the
 * default-settings burst, fair pacing, split roles, the compiled build idling, the profile summary)
 * and the Goals rows built from those figures. It asserts that things ran and were counted, never
 * how fast they were.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { POSTGRES_URL, REDIS_URL, services } from "../test/services.ts";
import { profileThreadId, threadProfileName } from "./children.ts";
import { summarize, timestampToken, tokenTimestamps } from "./common.ts";
import { summarizeProfile } from "./profile-summary.ts";
import type { BenchResults } from "./results.ts";
import { FULL } from "./run.ts";
import { firstSegmentScenario, idleRssScenario, ingestScenario } from "./scenarios.ts";
import {
  burstScenario,
  concurrencyScenario,
  cpuPerMessageScenario,
  fairPacingScenario,
  p99WithMissing,
  scaleOutScenario,
} from "./stream-scenarios.ts";
import { buildGoals, buildTable, formatTable } from "./table.ts";

/** What the tiny runs measured, for the Goals rows at the end. */
const collected: BenchResults = {
  startedAt: new Date().toISOString(),
  quick: true,
  machine: {},
  settings: FULL,
};

describe("benchmark harness (smoke)", () => {
  it("measures 50 signed callbacks against the bare server and the bridge", { timeout: 20_000 }, async () => {
    const result = await ingestScenario({
      durationSeconds: 1,
      amount: 50,
      warmupSeconds: 0,
      fixedRateSeconds: 0,
      connections: 5,
      fixedRate: 100,
      fixedRateConnections: 2,
      poolSize: 200,
    });
    for (const target of [result.bare, result.sqlite]) {
      expect(target.maxThroughput.total).toBeGreaterThanOrEqual(50);
      expect(target.maxThroughput.non2xx).toBe(0);
      expect(target.maxThroughput.errors).toBe(0);
      expect(target.maxThroughput.requestsPerSecond).toBeGreaterThan(0);
    }
    expect(result.sqlite.signedOnTheFly).toBe(0);
    expect(result.ratioSqlite).toBeGreaterThan(0);
    collected.ingest = result;
  });

  it("times 3 replies from first token to first segment, in-process", { timeout: 15_000 }, async () => {
    const result = await firstSegmentScenario({ replies: 3, spacingMs: 10, tokens: 4, intervalMs: 10 });
    expect(result.completed).toBe(3);
    expect(result.overheadMs.count).toBe(3);
    expect(result.overheadMs.min).toBeGreaterThanOrEqual(0);
  });

  it("streams 3 replies through the bridge child, probes acks meanwhile, profiles every thread", {
    timeout: 20_000,
  }, async () => {
    const profiles = mkdtempSync(join(tmpdir(), "im-bridge-bench-smoke-"));
    try {
      const result = await concurrencyScenario({
        streams: 3,
        tokens: 5,
        intervalMs: 20,
        batch: 3,
        doneTimeoutMs: 10_000,
        probeRatePerSecond: 20,
        profileDirectory: profiles,
      });
      expect(result.completed).toBe(3);
      expect(result.segmentLagMs.count).toBe(15);
      expect(result.rssPeakMb).toBeGreaterThan(10);
      // Counted at NIM, so it holds whether the replies ran on the main thread or a reply thread.
      expect(result.nimMessages).toBeGreaterThanOrEqual(6);
      expect(result.burstAckMs.count).toBe(3);
      expect(result.probes.posted).toBeGreaterThanOrEqual(1);
      expect(result.probeAckMs.count).toBe(result.probes.posted);
      expect(result.ackMs.count).toBe(3 + result.probes.posted);
      expect(result.longestGapMs.count).toBe(3);
      expect(result.firstSegmentsMissing).toBe(0);
      expect(result.meanSegmentBodyCharacters).toBeGreaterThan(50);
      expect(result.processCpu.map((entry) => entry.role)).toEqual(["all-in-one"]);
      // Main thread first, then any other thread (tsx's hooks, the reply thread), each summarised.
      expect(result.profile).toBe(join(profiles, "concurrency-3.cpuprofile"));
      expect(result.profiles?.[0]).toBe(result.profile);
      for (const file of result.profiles ?? []) {
        expect(summarizeProfile(file, 5, result.profileWindow).file).toBe(file);
      }
      expect(summarizeProfile(result.profile!, 5, result.profileWindow).top.length).toBeGreaterThan(0);
      collected.concurrency = [result];
    } finally {
      rmSync(profiles, { recursive: true, force: true });
    }
  });

  it("measures CPU per NIM message of 2 replies, and the anchor client's", { timeout: 20_000 }, async () => {
    const result = await cpuPerMessageScenario({
      streams: 2,
      tokens: 5,
      intervalMs: 20,
      batch: 2,
      doneTimeoutMs: 10_000,
      anchorSockets: 4,
      anchorMaxSeconds: 1,
    });
    expect(result.bridge.completed).toBe(2);
    expect(result.bridge.nimMessages).toBeGreaterThanOrEqual(4);
    expect(Number.isFinite(result.bridge.bridgeCpuMsPerNimMessage)).toBe(true);
    // At least 200 messages, so the anchor's CPU is more than a few 10 ms ticks of /proc.
    expect(result.anchor.messages).toBe(200);
    expect(result.anchor.failed).toBe(0);
    expect(result.anchor.bodyCharacters).toBe(result.bridge.meanSegmentBodyCharacters);
    expect(result.anchor.meanFormBytes).toBeGreaterThan(result.anchor.bodyCharacters);
    expect(result.anchor.cpuMs).toBeGreaterThanOrEqual(0);
    collected.cpu = result;
  });

  it("times first segment − ack for a burst of 3 users on the default settings", { timeout: 20_000 }, async () => {
    const result = await burstScenario({ users: 3, tokens: 3, intervalMs: 20, timeoutMs: 10_000 });
    expect(result.firstSegmentsMissing).toBe(0);
    expect(result.firstSegmentAfterAckMs.count).toBe(3);
    expect(result.firstSegmentAfterAckP99Ms).not.toBeNull();
    collected.burst = result;
  });

  it("measures every stream's longest gap under a send budget", { timeout: 20_000 }, async () => {
    const result = await fairPacingScenario({
      streams: 3,
      ratePerSecond: 30,
      tokens: 10,
      intervalMs: 20,
      batch: 3,
      doneTimeoutMs: 10_000,
      probeRatePerSecond: 10,
    });
    expect(result.fairShareMs).toBe(100);
    expect(result.gapLimitMs).toBe(200);
    expect(result.completed).toBe(3);
    expect(result.longestGapMs.count).toBe(3);
    expect(result.streamsOverGapLimit).toBeGreaterThanOrEqual(0);
    expect(result.probes.posted).toBeGreaterThanOrEqual(1);
    collected.fairPacing = result;
  });

  it("idles the compiled build under plain node and reads its RSS", { timeout: 40_000 }, async () => {
    const result = await idleRssScenario({ idleSeconds: 0.5 });
    expect(result.missing).toBeUndefined();
    expect(result.command).toBe("node dist/cli/serve.js");
    expect(result.rssMb).toBeGreaterThan(10);
    collected.idleRss = result;
  });

  describe.runIf(services.postgres && services.redis)("split roles on PostgreSQL + Redis", () => {
    it("streams through http + 1 worker, then http + 2 workers", { timeout: 60_000 }, async () => {
      const result = await scaleOutScenario({
        postgresUrl: POSTGRES_URL,
        redisUrl: REDIS_URL,
        streams: 4,
        tokens: 20,
        intervalMs: 20,
        batch: 4,
        windowMs: 1500,
        settleMs: 0,
      });
      expect(result.one.run.processCpu.map((entry) => entry.role)).toEqual(["http", "worker 1"]);
      expect(result.two.run.processCpu.map((entry) => entry.role)).toEqual(["http", "worker 1", "worker 2"]);
      for (const { run } of [result.one, result.two]) {
        expect(run.firstSegmentsMissing).toBe(0);
        expect(run.steadyMessagesPerSecond).toBeGreaterThan(0);
      }
      expect(result.ratio).toBeGreaterThan(0);
      collected.scaleOut = result;
    });
  });

  it("builds one Goals row per goal from what the tiny runs measured", () => {
    const goals = buildGoals(collected);
    expect(goals.map((row) => row.metric.split(".")[0])).toEqual(["1", "2", "3", "4", "5", "6", "7"]);
    // Measured goals are decided; goal 3 misses its PostgreSQL parts here (only SQLite ran), and
    // goal 6 is either measured or not run.
    for (const row of goals.slice(0, 5)) expect(row.status).toMatch(/^(PASS|MISS)$/);
    expect(goals[2]!.value).toContain("PostgreSQL not measured");
    expect(goals[2]!.status).toBe("MISS");
    expect(goals[6]!.status).toMatch(/^(PASS|MISS)$/);
    expect(goals[5]!.status).toMatch(collected.scaleOut ? /^(PASS|MISS)$/ : /^$/);
    expect(formatTable(buildTable(collected))).toContain("CPU per NIM message: anchor");
  });

  it("decides a goal from its figures", () => {
    expect(buildGoals({ ...collected, idleRss: { command: "node dist/cli/serve.js", rssMb: 79.9 } })[6]!.status).toBe(
      "PASS",
    );
    expect(buildGoals({ ...collected, idleRss: { command: "node dist/cli/serve.js", rssMb: 80 } })[6]!.status).toBe(
      "MISS",
    );
    expect(buildGoals({ ...collected, idleRss: { command: "x", missing: "not built" } })[6]!.value).toBe("not built");
    expect(buildGoals({ ...collected, cpu: undefined, errors: { cpu: "Error: boom\n  at x" } })[0]!).toMatchObject({
      value: "cpu failed: Error: boom",
      status: "MISS",
    });
  });

  it("formats results", () => {
    const text = `${timestampToken(1763900000123.4)}${timestampToken(1763900000124)}`;
    expect(tokenTimestamps(text)).toEqual([1763900000123.4, 1763900000124]);
    expect(tokenTimestamps(text.slice(0, -3), true)).toEqual({
      timestamps: [1763900000123.4],
      rest: " t1763900000124",
    });
    expect(summarize([3, 1, 2, 4]).p50).toBe(2);
    // 1 of 100 missing still has a p99 (the 99th known value); 2 missing put it beyond the run.
    const known = Array.from({ length: 99 }, (_, index) => index + 1);
    expect(p99WithMissing(known, 100)).toBe(99);
    expect(p99WithMissing(known.slice(1), 100)).toBeNull();
    expect(profileThreadId("CPU.20261123.213300.4242.3.007.cpuprofile", 4242)).toBe(3);
    expect(profileThreadId("CPU.20261123.213300.4243.0.001.cpuprofile", 4242)).toBeUndefined();
    expect(threadProfileName("concurrency-2000.cpuprofile", 0)).toBe("concurrency-2000.cpuprofile");
    expect(threadProfileName("concurrency-2000.cpuprofile", 2)).toBe("concurrency-2000.thread-2.cpuprofile");
    expect(formatTable([{ metric: "m", value: "1", target: "≤ 2", status: "PASS" }])).toContain("| m ");
  });
});
