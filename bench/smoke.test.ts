/**
 * Keeps the benchmark harness working: a tiny run of each moving part (the bare and bridge child
 * processes under autocannon, the in-process bridge with the token generator, the streaming bridge
 * child with its IPC statistics, the profile summary). It asserts that things ran and were counted,
 * never how fast they were.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { summarize, timestampToken, tokenTimestamps } from "./common.ts";
import { summarizeProfile } from "./profile-summary.ts";
import { formatTable } from "./run.ts";
import { concurrencyScenario, firstSegmentScenario, ingestScenario } from "./scenarios.ts";

describe("benchmark harness (smoke)", () => {
  it("measures 50 signed callbacks against the bare server and the bridge", { timeout: 15_000 }, async () => {
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
  });

  it("times 3 replies from first token to first segment, in-process", { timeout: 15_000 }, async () => {
    const result = await firstSegmentScenario({ replies: 3, spacingMs: 10, tokens: 4, intervalMs: 10 });
    expect(result.completed).toBe(3);
    expect(result.overheadMs.count).toBe(3);
    expect(result.overheadMs.min).toBeGreaterThanOrEqual(0);
  });

  it("streams 3 replies through the bridge child and reads its statistics", { timeout: 15_000 }, async () => {
    const profiles = mkdtempSync(join(tmpdir(), "im-bridge-bench-smoke-"));
    try {
      const result = await concurrencyScenario({
        streams: 3,
        tokens: 5,
        intervalMs: 20,
        batch: 3,
        doneTimeoutMs: 10_000,
        profileDirectory: profiles,
      });
      expect(result.completed).toBe(3);
      expect(result.segmentLagMs.count).toBe(15);
      expect(result.rssPeakMb).toBeGreaterThan(10);
      expect(result.sendMs.count).toBeGreaterThanOrEqual(6);
      const profile = summarizeProfile(result.profile!, 5, result.profileWindow);
      expect(profile.top.length).toBeGreaterThan(0);
    } finally {
      rmSync(profiles, { recursive: true, force: true });
    }
  });

  it("formats results", () => {
    const text = `${timestampToken(1763900000123.4)}${timestampToken(1763900000124)}`;
    expect(tokenTimestamps(text)).toEqual([1763900000123.4, 1763900000124]);
    expect(tokenTimestamps(text.slice(0, -3), true)).toEqual({
      timestamps: [1763900000123.4],
      rest: " t1763900000124",
    });
    expect(summarize([3, 1, 2, 4]).p50).toBe(2);
    expect(formatTable([{ metric: "m", value: "1", target: "≤ 2", status: "PASS" }])).toContain("| m ");
  });
});
