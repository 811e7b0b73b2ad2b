/**
 * `npm run bench` — im-bridge's benchmarks, side by side in one run (everything on 127.0.0.1). It
 * prints a Goals section (one row per goal of issue 13, PASS or MISS with the measured figures) and
 * the detailed table:
 *
 *   ingest         callback ingest: the bridge (SQLite; PostgreSQL, PostgreSQL + Redis when they
 *                  answer) vs a bare node:http server (goal 3);
 *   first-segment  generator's first token → NIM emulator receives the first segment;
 *   calls          NIM calls per reply: 300 tokens over 6 s with 200 ms pacing;
 *   cpu            CPU per NIM message of the all-in-one SQLite default, and the anchor: a bare
 *                  client posting the same signed form at the same rate (goal 1);
 *   concurrency    100, 500 and 2,000 replies streaming at once, acks timed while they run (goals 2, 4);
 *   burst          400 users at once on the default settings: first segment − ack (goal 4);
 *   fair-pacing    NIM_SEND_RATE_PER_SECOND=300 and 1,000 streams: longest gap per stream (goal 5);
 *   scale-out      PostgreSQL + Redis, http + 1 worker vs http + 2 workers (goal 6);
 *   idle-rss       `node dist/cli/serve.js` idle (goal 7);
 *   register       /im/register throughput against the NIM emulator.
 *
 * Flags: --quick (short run, reduced sizes), --only=<names above, comma-separated>,
 *        --levels=100,500,2000 (concurrency levels), --out=file.json (instead of latest.json),
 *        --profile=<ingest-{sqlite,memory,postgres,postgres-redis}|concurrency-<n>|cpu|register> (node
 *        --cpu-prof of the bridge child in that scenario, one profile per thread; written under
 *        bench/results/profiles/ and each summarised over the measured window only).
 * Writes bench/results/latest.json (or --out) and prints its path.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { postgresAnswers, redisAnswers } from "../test/services.ts";
import { loadAverage, RESULTS_DIR, round } from "./common.ts";
import { formatProfileSummary, type ProfileWindow, summarizeProfile } from "./profile-summary.ts";
import type { BenchResults, Settings } from "./results.ts";
import {
  callsPerReplyScenario,
  ensureDirectory,
  firstSegmentScenario,
  idleRssScenario,
  ingestScenario,
  latestProfile,
  registerScenario,
} from "./scenarios.ts";
import {
  burstScenario,
  type ConcurrencyResult,
  concurrencyScenario,
  cpuPerMessageScenario,
  fairPacingScenario,
  scaleOutScenario,
} from "./stream-scenarios.ts";
import { buildGoals, buildTable, formatTable } from "./table.ts";

const SCENARIOS = [
  "ingest",
  "first-segment",
  "calls",
  "cpu",
  "concurrency",
  "burst",
  "fair-pacing",
  "scale-out",
  "idle-rss",
  "register",
] as const;
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
        `npm run bench -- [--quick] [--only=${SCENARIOS.join(",")}]\n` +
          "                 [--levels=100,500,2000] [--out=file.json]\n" +
          "                 [--profile=<ingest-sqlite|ingest-memory|ingest-postgres|ingest-postgres-redis|concurrency-<n>|cpu|register>]",
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${argument}`);
  }
  return { quick, only, profile, levels, out };
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
  // 200 streams want ~1,000 msg/s: enough that per-wakeup costs do not dominate either side.
  cpu: { streams: 200, tokens: 200, intervalMs: 50, batch: 200, doneTimeoutMs: 60_000, anchorSockets: 16 },
  concurrency: {
    levels: [100, 500, 2000],
    tokens: 100,
    intervalMs: 50,
    batch: 200,
    doneTimeoutMs: 90_000,
    probeRatePerSecond: 10,
  },
  // Replies of ~6 s (120 tokens, 50 ms apart), all 400 callbacks at once.
  burst: { users: 400, tokens: 120, intervalMs: 50, timeoutMs: 60_000 },
  // Fair share 1,000 / 300 = 3.33 s; replies of ~10 s, so every stream has several gaps.
  fairPacing: {
    streams: 1000,
    ratePerSecond: 300,
    tokens: 200,
    intervalMs: 50,
    batch: 200,
    doneTimeoutMs: 60_000,
    probeRatePerSecond: 5,
  },
  // 400 streams at 200 ms pacing offer 2,000 msg/s, more than one worker carries on this VM.
  scaleOut: { streams: 400, tokens: 400, intervalMs: 25, batch: 200, windowMs: 15_000 },
  idleRss: { idleSeconds: 5 },
  register: { durationSeconds: 10, warmupSeconds: 2, connections: 16 },
};

export const QUICK: Settings = {
  ingest: {
    durationSeconds: 3,
    warmupSeconds: 1,
    fixedRateSeconds: 0,
    connections: 32,
    fixedRate: 1000,
    fixedRateConnections: 10,
    poolSize: 40_000,
  },
  firstSegment: { replies: 40, spacingMs: 40, tokens: 10, intervalMs: 30 },
  calls: { replies: 1, tokens: 300, intervalMs: 20, pacingMs: 200 },
  cpu: { streams: 100, tokens: 100, intervalMs: 50, batch: 100, doneTimeoutMs: 30_000, anchorSockets: 16 },
  concurrency: {
    levels: [50, 200],
    tokens: 40,
    intervalMs: 50,
    batch: 100,
    doneTimeoutMs: 30_000,
    probeRatePerSecond: 10,
  },
  // The goal's own size: 400 users on the defaults; only the wait is shorter.
  burst: { users: 400, tokens: 120, intervalMs: 50, timeoutMs: 20_000 },
  // 300 streams at 90/s: the same 3.33 s fair share as 1,000 at 300/s.
  fairPacing: {
    streams: 300,
    ratePerSecond: 90,
    tokens: 200,
    intervalMs: 50,
    batch: 100,
    doneTimeoutMs: 30_000,
    probeRatePerSecond: 3,
  },
  scaleOut: { streams: 200, tokens: 400, intervalMs: 25, batch: 100, windowMs: 6_000 },
  idleRss: { idleSeconds: 3 },
  register: { durationSeconds: 3, warmupSeconds: 1, connections: 16 },
};

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
  // Every thread's profile of a streaming run, each cut to the run's window (one clock per process).
  const addProfiles = (run: ConcurrencyResult) => {
    for (const file of run.profiles ?? []) profiles.push({ file, window: run.profileWindow });
  };
  const postgresUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379/9";
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
  if (args.only.has("cpu")) {
    await attempt("cpu", async () => {
      const profile = args.profile === "cpu";
      results.cpu = await cpuPerMessageScenario({
        ...settings.cpu,
        profileDirectory: profile ? profileDirectory : undefined,
        log,
      });
      addProfiles(results.cpu.bridge);
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
          probeRatePerSecond: settings.concurrency.probeRatePerSecond,
          profileDirectory: profile ? profileDirectory : undefined,
          log,
        });
        results.concurrency!.push(level);
        addProfiles(level);
      });
    }
  }
  if (args.only.has("burst")) {
    await attempt("burst", async () => {
      results.burst = await burstScenario({ ...settings.burst, log });
    });
  }
  if (args.only.has("fair-pacing")) {
    await attempt("fair-pacing", async () => {
      results.fairPacing = await fairPacingScenario({ ...settings.fairPacing, log });
    });
  }
  if (args.only.has("scale-out")) {
    await attempt("scale-out", async () => {
      if (!(await postgresAnswers(postgresUrl))) {
        results.scaleOutSkipped = `PostgreSQL did not answer at ${postgresUrl}`;
      } else if (!(await redisAnswers(redisUrl))) {
        results.scaleOutSkipped = `Redis did not answer at ${redisUrl}`;
      } else {
        results.scaleOut = await scaleOutScenario({ ...settings.scaleOut, postgresUrl, redisUrl, log });
      }
    });
  }
  if (args.only.has("idle-rss")) {
    await attempt("idle-rss", async () => {
      results.idleRss = await idleRssScenario({ ...settings.idleRss, log });
    });
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
  results.goals = buildGoals(results);
  results.table = buildTable(results);
  const output = args.out ? resolve(args.out) : join(RESULTS_DIR, "latest.json");
  writeFileSync(output, `${JSON.stringify(results, null, 2)}\n`);

  console.log(
    `\nim-bridge benchmarks (${args.quick ? "quick" : "full"} run, ${round((Date.now() - started) / 1000, 1)} s)`,
  );
  console.log(
    `${results.machine.cpu}, ${results.machine.cores} cores, ${results.machine.os}, Node ${results.machine.node}\n`,
  );
  console.log("Goals (issue 13)\n");
  console.log(formatTable(results.goals));
  if (args.quick) {
    console.log(
      "\nQuick run: goals 2, 4, 5 and 6 are measured at reduced sizes (named in each row); only a full run decides them.",
    );
  }
  console.log(
    "Goal 6 compares delivered NIM messages per second under the same overload (every stream wants one message per\n" +
      "200 ms): the streams a configuration carries at a given lag are its delivered rate ÷ 5 msg/s per stream.",
  );
  console.log("\nDetails\n");
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
