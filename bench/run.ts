/**
 * `npm run bench` — im-bridge's benchmarks, side by side in one run (everything on 127.0.0.1):
 *
 *   1. callback ingest: the bridge (child process, SQLite; PostgreSQL when it answers) vs a bare
 *      node:http server, max throughput and a fixed 1,000 req/s run;
 *   2. first-segment overhead: generator's first token → NIM emulator receives the first segment;
 *   3. NIM calls per reply: 300 tokens over 6 s with 200 ms pacing;
 *   4. concurrency: 100, 500 and 2,000 replies streaming at once (RSS, event-loop delay, segment lag);
 *   5. /im/register throughput against the NIM emulator.
 *
 * Flags: --quick (short run), --only=ingest,first-segment,calls,concurrency,register,
 *        --levels=100,500,2000 (concurrency levels), --out=file.json (instead of latest.json),
 *        --profile=<ingest-{sqlite,memory,postgres,postgres-redis}|concurrency-<n>|register> (node
 *        --cpu-prof of the bridge child in that scenario; written under bench/results/profiles/ and
 *        summarised over the measured window only).
 * Writes bench/results/latest.json (or --out) and prints its path.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadAverage, RESULTS_DIR, round } from "./common.ts";
import { formatProfileSummary, type ProfileSummary, type ProfileWindow, summarizeProfile } from "./profile-summary.ts";
import {
  type CallsPerReplyResult,
  type ConcurrencyResult,
  callsPerReplyScenario,
  concurrencyScenario,
  ensureDirectory,
  type FirstSegmentResult,
  firstSegmentScenario,
  type IngestResult,
  ingestScenario,
  latestProfile,
  type RegisterResult,
  registerScenario,
} from "./scenarios.ts";

const SCENARIOS = ["ingest", "first-segment", "calls", "concurrency", "register"] as const;
type ScenarioName = (typeof SCENARIOS)[number];

interface Arguments {
  quick: boolean;
  only: Set<ScenarioName>;
  profile: string | undefined;
  levels: number[] | undefined;
  out: string | undefined;
}

function parseArguments(argv: string[]): Arguments {
  let quick = false;
  let only = new Set<ScenarioName>(SCENARIOS);
  let profile: string | undefined;
  let levels: number[] | undefined;
  let out: string | undefined;
  for (const argument of argv) {
    if (argument === "--quick") quick = true;
    else if (argument.startsWith("--only=")) {
      const names = argument.slice("--only=".length).split(",").filter(Boolean);
      for (const name of names) {
        if (!SCENARIOS.includes(name as ScenarioName)) throw new Error(`unknown scenario ${name}`);
      }
      only = new Set(names as ScenarioName[]);
    } else if (argument.startsWith("--profile=")) profile = argument.slice("--profile=".length);
    else if (argument.startsWith("--levels=")) {
      levels = argument.slice("--levels=".length).split(",").map(Number);
      if (levels.some((level) => !Number.isInteger(level) || level < 1)) throw new Error(`bad ${argument}`);
    } else if (argument.startsWith("--out=")) out = argument.slice("--out=".length);
    else if (argument === "--help" || argument === "-h") {
      console.log(
        "npm run bench -- [--quick] [--only=ingest,first-segment,calls,concurrency,register] [--levels=100,500,2000]\n" +
          "                 [--profile=<ingest-sqlite|ingest-memory|ingest-postgres|ingest-postgres-redis|concurrency-<n>|register>] [--out=file.json]",
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${argument}`);
  }
  return { quick, only, profile, levels, out };
}

export interface Settings {
  ingest: {
    durationSeconds: number;
    warmupSeconds: number;
    fixedRateSeconds: number;
    connections: number;
    fixedRate: number;
    fixedRateConnections: number;
    poolSize: number;
  };
  firstSegment: { replies: number; spacingMs: number; tokens: number; intervalMs: number };
  calls: { replies: number; tokens: number; intervalMs: number; pacingMs: number };
  concurrency: { levels: number[]; tokens: number; intervalMs: number; batch: number; doneTimeoutMs: number };
  register: { durationSeconds: number; warmupSeconds: number; connections: number };
}

export const FULL: Settings = {
  ingest: {
    durationSeconds: 10,
    warmupSeconds: 2,
    fixedRateSeconds: 10,
    connections: 32,
    fixedRate: 1000,
    fixedRateConnections: 10,
    poolSize: 120_000,
  },
  firstSegment: { replies: 200, spacingMs: 40, tokens: 10, intervalMs: 30 },
  calls: { replies: 3, tokens: 300, intervalMs: 20, pacingMs: 200 },
  concurrency: { levels: [100, 500, 2000], tokens: 100, intervalMs: 50, batch: 200, doneTimeoutMs: 90_000 },
  register: { durationSeconds: 10, warmupSeconds: 2, connections: 16 },
};

export const QUICK: Settings = {
  ingest: {
    durationSeconds: 3,
    warmupSeconds: 1,
    fixedRateSeconds: 3,
    connections: 32,
    fixedRate: 1000,
    fixedRateConnections: 10,
    poolSize: 40_000,
  },
  firstSegment: { replies: 40, spacingMs: 40, tokens: 10, intervalMs: 30 },
  calls: { replies: 1, tokens: 300, intervalMs: 20, pacingMs: 200 },
  concurrency: { levels: [50, 200], tokens: 40, intervalMs: 50, batch: 100, doneTimeoutMs: 30_000 },
  register: { durationSeconds: 3, warmupSeconds: 1, connections: 16 },
};

export interface BenchResults {
  startedAt: string;
  finishedAt?: string;
  quick: boolean;
  machine: Record<string, string | number>;
  settings: Settings;
  ingest?: IngestResult;
  firstSegment?: FirstSegmentResult;
  calls?: CallsPerReplyResult;
  concurrency?: ConcurrencyResult[];
  register?: RegisterResult;
  profiles?: ProfileSummary[];
  table?: Row[];
  errors?: Record<string, string>;
}

export interface Row {
  metric: string;
  value: string;
  target: string;
  status: "PASS" | "MISS" | "";
}

function machine(): Record<string, string | number> {
  let os = "unknown";
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os;
  } catch {
    // not Linux
  }
  let kernel = "";
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    // not Linux
  }
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGb: round(totalmem() / 1024 ** 3, 1),
    os,
    kernel,
    node: process.version,
    loadAverageAtStart: loadAverage().join(" "),
  };
}

const ms = (value: number) => `${round(value, 1)} ms`;
const cpuPerRequest = (run: { serverCpuMicrosPerRequest?: number }) =>
  run.serverCpuMicrosPerRequest === undefined ? "" : `${run.serverCpuMicrosPerRequest} µs CPU/req`;
const pass = (ok: boolean): "PASS" | "MISS" => (ok ? "PASS" : "MISS");

export function buildTable(results: BenchResults): Row[] {
  const rows: Row[] = [];
  const ingest = results.ingest;
  if (ingest) {
    const bare = ingest.bare.maxThroughput;
    rows.push({
      metric: "ingest: bare node:http",
      value: `${bare.requestsPerSecond} req/s, p50 ${ms(bare.latencyMs.p50)}, p99 ${ms(bare.latencyMs.p99)}; ${cpuPerRequest(bare)}`,
      target: "baseline",
      status: "",
    });
    const targets = [
      ingest.sqlite,
      ...(ingest.sqliteMemory ? [ingest.sqliteMemory] : []),
      ...(ingest.postgres ? [ingest.postgres] : []),
      ...(ingest.postgresRedis ? [ingest.postgresRedis] : []),
    ];
    for (const target of targets) {
      const run = target.maxThroughput;
      const ratio = round(run.requestsPerSecond / bare.requestsPerSecond);
      rows.push({
        metric: `ingest: ${target.name}`,
        value: `${run.requestsPerSecond} req/s, p50 ${ms(run.latencyMs.p50)}, p99 ${ms(run.latencyMs.p99)}; ${cpuPerRequest(run)}${run.non2xx ? `, ${run.non2xx} non-2xx` : ""}`,
        target: "",
        status: "",
      });
      const diagnostic = target === ingest.sqliteMemory;
      rows.push({
        metric: `ingest: ${target.name} / bare`,
        value: `${ratio}× (CPU per request ${round((bare.serverCpuMicrosPerRequest ?? Number.NaN) / (run.serverCpuMicrosPerRequest ?? Number.NaN), 2)}×)`,
        target: diagnostic ? "diagnostic" : "≥ 0.5×",
        status: diagnostic ? "" : pass(ratio >= 0.5 && run.non2xx === 0),
      });
      if (target.fixedRate) {
        const fixed = target.fixedRate;
        rows.push({
          metric: `ingest: ${target.name} ack p99 @ ${fixed.offeredRate}/s`,
          value: `${ms(fixed.latencyMs.p99)} (p50 ${ms(fixed.latencyMs.p50)}, ${fixed.requestsPerSecond} req/s done)`,
          target: "< 20 ms",
          status: pass(fixed.latencyMs.p99 < 20 && fixed.non2xx === 0),
        });
      }
    }
    if (ingest.redisSkipped) {
      rows.push({
        metric: "ingest: bridge (postgres-redis)",
        value: `skipped: ${ingest.redisSkipped}`,
        target: "",
        status: "",
      });
    }
    if (ingest.postgresSkipped) {
      rows.push({
        metric: "ingest: bridge (postgres)",
        value: `skipped: ${ingest.postgresSkipped}`,
        target: "",
        status: "",
      });
    }
  }
  const first = results.firstSegment;
  if (first) {
    rows.push({
      metric: `first token → first segment at NIM (${first.overheadMs.count} replies)`,
      value: `p50 ${ms(first.overheadMs.p50)}, p99 ${ms(first.overheadMs.p99)}, max ${ms(first.overheadMs.max)}; event-loop delay p99 ${ms(first.eventLoopDelayMs.p99)}`,
      target: "p99 ≤ 50 ms",
      status: pass(first.overheadMs.p99 <= 50 && first.completed === first.replies),
    });
  }
  const calls = results.calls;
  if (calls) {
    const reply = calls.perReply[0];
    rows.push({
      metric: `NIM sendMsg calls, ${calls.tokens} tokens @ ${calls.intervalMs} ms`,
      value: `${calls.maxCalls} (${reply?.segments} segments + ${reply?.finals} final; per-token would be ${calls.perTokenBaseline})`,
      target: `≤ ${calls.target}`,
      status: pass(calls.maxCalls <= calls.target),
    });
  }
  for (const level of results.concurrency ?? []) {
    const is2000 = level.streams === 2000;
    rows.push({
      metric: `${level.streams} streams: bridge RSS peak`,
      value: `${level.rssPeakMb} MB (idle ${level.rssIdleMb} MB)`,
      target: is2000 ? "< 400 MB" : "",
      status: is2000 ? pass(level.rssPeakMb < 400) : "",
    });
    rows.push({
      metric: `${level.streams} streams: event-loop delay`,
      value: `p50 ${ms(level.eventLoopDelayMs.p50)}, p99 ${ms(level.eventLoopDelayMs.p99)}, max ${ms(level.eventLoopDelayMs.max)}`,
      target: "",
      status: "",
    });
    rows.push({
      metric: `${level.streams} streams: segment lag`,
      value: `p50 ${ms(level.segmentLagMs.p50)}, p99 ${ms(level.segmentLagMs.p99)}; ${level.completed}/${level.streams} done, bridge CPU ${level.bridgeCpu ?? "?"} cores, ${level.bridgeCpuMsPerNimMessage ?? "?"} ms CPU/NIM msg`,
      target: is2000 ? "p99 < 500 ms" : "",
      status: is2000 ? pass(level.segmentLagMs.p99 < 500 && level.completed === level.streams) : "",
    });
    rows.push({
      metric: `${level.streams} streams: callback ack while streaming`,
      value: `p50 ${ms(level.ackMs.p50)}, p99 ${ms(level.ackMs.p99)}, max ${ms(level.ackMs.max)}; ${level.nimMessagesPerSecond} NIM msgs/s (${level.duplicateMessages} repeats), peak ${level.peakActiveStreams} active`,
      target: "",
      status: "",
    });
  }
  const register = results.register;
  if (register) {
    rows.push({
      metric: "register (/im/register → emulator)",
      value: `${register.requestsPerSecond} req/s, p50 ${ms(register.latencyMs.p50)}, p99 ${ms(register.latencyMs.p99)}${register.non2xx ? `, ${register.non2xx} non-2xx` : ""}`,
      target: "",
      status: "",
    });
  }
  const competing: string[] = [];
  if (ingest) {
    for (const target of [ingest.bare, ingest.sqlite, ingest.sqliteMemory, ingest.postgres, ingest.postgresRedis]) {
      if (target?.maxThroughput.otherCpu !== undefined)
        competing.push(`${target.name} ${target.maxThroughput.otherCpu}`);
    }
  }
  if (first?.otherCpu !== undefined) competing.push(`first segment ${first.otherCpu}`);
  for (const level of results.concurrency ?? []) {
    if (level.otherCpu !== undefined) competing.push(`${level.streams} streams ${level.otherCpu}`);
  }
  if (register?.otherCpu !== undefined) competing.push(`register ${register.otherCpu}`);
  if (competing.length > 0) {
    rows.push({
      metric: "CPU used by other processes (cores of 2)",
      value: competing.join(", "),
      target: "",
      status: "",
    });
  }
  for (const [name, message] of Object.entries(results.errors ?? {})) {
    rows.push({ metric: `${name}: FAILED`, value: message.split("\n")[0]!.slice(0, 160), target: "", status: "MISS" });
  }
  return rows;
}

export function formatTable(rows: Row[]): string {
  const headers = ["metric", "value", "target", "status"] as const;
  const widths = headers.map((header) => Math.max(header.length, ...rows.map((row) => row[header].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, index) => cell.padEnd(widths[index]!)).join(" | ")} |`;
  return [
    line([...headers]),
    `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`,
    ...rows.map((row) => line(headers.map((header) => row[header]))),
  ].join("\n");
}

async function main(): Promise<void> {
  const args = parseArguments(process.argv.slice(2));
  const base = args.quick ? QUICK : FULL;
  const settings: Settings = args.levels
    ? { ...base, concurrency: { ...base.concurrency, levels: args.levels } }
    : base;
  const started = Date.now();
  const log = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  ensureDirectory(RESULTS_DIR);
  const profileDirectory = args.profile ? ensureDirectory(join(RESULTS_DIR, "profiles")) : undefined;
  const results: BenchResults = {
    startedAt: new Date(started).toISOString(),
    quick: args.quick,
    machine: machine(),
    settings,
    errors: {},
  };
  const profiles: Array<{ file: string; window?: ProfileWindow }> = [];
  const attempt = async (name: string, run: () => Promise<void>) => {
    log(`${name} …`);
    try {
      await run();
    } catch (error) {
      results.errors![name] = error instanceof Error ? (error.stack ?? error.message) : String(error);
      log(`${name} FAILED: ${error instanceof Error ? error.message : String(error)}`);
    }
  };

  if (args.only.has("ingest")) {
    await attempt("ingest", async () => {
      const postgresUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
      const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379/9";
      const profileTarget = args.profile?.startsWith("ingest-") ? args.profile.slice("ingest-".length) : undefined;
      results.ingest = await ingestScenario({
        ...settings.ingest,
        memoryVariant: !args.quick,
        postgresUrl,
        redisUrl,
        profileDirectory: profileTarget ? profileDirectory : undefined,
        profileTarget,
        log,
      });
      if (profileTarget && profileDirectory) {
        const file = latestProfile(profileDirectory, `ingest-${profileTarget}.cpuprofile`);
        const targets = {
          sqlite: results.ingest.sqlite,
          memory: results.ingest.sqliteMemory,
          postgres: results.ingest.postgres,
          "postgres-redis": results.ingest.postgresRedis,
        } as Record<string, { maxThroughput: { profileWindow?: ProfileWindow } } | undefined>;
        const target = targets[profileTarget];
        const window = target?.maxThroughput.profileWindow;
        if (file) profiles.push({ file, ...(window ? { window } : {}) });
      }
    });
  }
  if (args.only.has("first-segment")) {
    await attempt("first-segment", async () => {
      results.firstSegment = await firstSegmentScenario({ ...settings.firstSegment, log });
    });
  }
  if (args.only.has("calls")) {
    await attempt("calls", async () => {
      results.calls = await callsPerReplyScenario(settings.calls);
    });
  }
  if (args.only.has("concurrency")) {
    results.concurrency = [];
    for (const streams of settings.concurrency.levels) {
      await attempt(`concurrency-${streams}`, async () => {
        const profile = args.profile === `concurrency-${streams}`;
        const level = await concurrencyScenario({
          streams,
          tokens: settings.concurrency.tokens,
          intervalMs: settings.concurrency.intervalMs,
          batch: settings.concurrency.batch,
          doneTimeoutMs: settings.concurrency.doneTimeoutMs,
          profileDirectory: profile ? profileDirectory : undefined,
          log,
        });
        results.concurrency!.push(level);
        if (level.profile) profiles.push({ file: level.profile, window: level.profileWindow });
      });
    }
  }
  if (args.only.has("register")) {
    await attempt("register", async () => {
      results.register = await registerScenario({
        ...settings.register,
        profileDirectory: args.profile === "register" ? profileDirectory : undefined,
        log,
      });
      if (args.profile === "register" && profileDirectory) {
        const file = latestProfile(profileDirectory, "register.cpuprofile");
        const window = results.register.profileWindow;
        if (file) profiles.push({ file, ...(window ? { window } : {}) });
      }
    });
  }

  if (profiles.length > 0) {
    results.profiles = profiles.map(({ file, window }) => summarizeProfile(file, 20, window));
  }
  if (Object.keys(results.errors ?? {}).length === 0) delete results.errors;
  results.finishedAt = new Date().toISOString();
  results.machine.loadAverageAtEnd = loadAverage().join(" ");
  results.table = buildTable(results);
  const output = args.out ? resolve(args.out) : join(RESULTS_DIR, "latest.json");
  writeFileSync(output, `${JSON.stringify(results, null, 2)}\n`);

  console.log(
    `\nim-bridge benchmarks (${args.quick ? "quick" : "full"} run, ${round((Date.now() - started) / 1000, 1)} s)`,
  );
  console.log(
    `${results.machine.cpu}, ${results.machine.cores} cores, ${results.machine.os}, Node ${results.machine.node}\n`,
  );
  console.log(formatTable(results.table));
  for (const summary of results.profiles ?? []) console.log(`\n${formatProfileSummary(summary)}`);
  console.log(`\nresults: ${output}`);
  // Sockets kept alive by fetch's pool must not hold the process open.
  process.exit(results.errors ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
