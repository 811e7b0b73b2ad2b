/**
 * The benchmark scenarios. Each starts what it needs (NIM emulator, bridge in a child process or
 * in-process, the bare baseline), measures, tears everything down and returns plain numbers.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import autocannon, { type AutocannonRequest, type AutocannonResult } from "autocannon";
import { Redis } from "ioredis";
import pg from "pg";
import { newMessageIdServer } from "../src/callback/build.ts";
import { loadConfig } from "../src/config/index.ts";
import { type RunningNimEmulator, startNimEmulator } from "../src/emulator/index.ts";
import { createBridge } from "../src/server.ts";
import { postgresAnswers, redisAnswers } from "../test/services.ts";
import { type BenchChild, startChild } from "./children.ts";
import {
  APP_KEY,
  APP_SECRET,
  BOT,
  bridgeEnvironment,
  cpuMeter,
  cpuMillisecondsOfProcessesNamed,
  createTokenGenerator,
  freePort,
  machineCpuMeter,
  REPO_ROOT,
  round,
  SERVICE_KEY,
  type SignedRequest,
  type Summary,
  sampleResident,
  signedCallbackPool,
  signedTextCallback,
  sleep,
  summarize,
  wallClock,
} from "./common.ts";
import type { ProfileWindow } from "./profile-summary.ts";

const MB = 1024 * 1024;

export async function startEmulator(): Promise<RunningNimEmulator> {
  return startNimEmulator({
    appKey: APP_KEY,
    appSecret: APP_SECRET,
    frequencyLimits: { userPerSecond: Number.POSITIVE_INFINITY, messagePerSecond: Number.POSITIVE_INFINITY },
  });
}

export function addAccounts(emulator: RunningNimEmulator, accids: string[]): void {
  const now = Date.now();
  for (const accid of accids) emulator.state.addAccount({ accid: accid.toLowerCase(), token: "bench", createdAt: now });
}

export function temporaryDirectory(): string {
  return mkdtempSync(join(tmpdir(), "im-bridge-bench-"));
}

export interface ParsedStreamMessage {
  kind?: string;
  reply_to?: string;
  seq?: number;
  delta?: string;
  done?: boolean;
  part?: number;
}

export function parseStreamBody(body: string): ParsedStreamMessage | undefined {
  try {
    const parsed = JSON.parse(body) as ParsedStreamMessage;
    return parsed.kind === "bot_stream" ? parsed : undefined;
  } catch {
    return undefined;
  }
}

async function postCallback(baseUrl: string, request: SignedRequest): Promise<number> {
  const response = await fetch(`${baseUrl}/im/callback`, {
    method: "POST",
    headers: request.headers,
    body: request.body,
  });
  await response.arrayBuffer();
  return response.status;
}

// ---------------------------------------------------------------------------------------------
// 1. Callback ingest
// ---------------------------------------------------------------------------------------------

export interface LoadRun {
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  total: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  durationSeconds: number;
  connections: number;
  offeredRate?: number;
  /** CPU the server process used, in cores (1 = one core fully busy). */
  serverCpu?: number;
  /** Server CPU time per completed request, µs: robust to other load on the machine. */
  serverCpuMicrosPerRequest?: number;
  /** CPU the load-generating process (autocannon, and the emulator when it lives here) used, in cores. */
  loaderCpu?: number;
  /** CPU PostgreSQL's processes used, in cores (when measured). */
  postgresCpu?: number;
  /** CPU redis-server used, in cores (when measured). */
  redisCpu?: number;
  /** CPU the whole machine was busy, in cores. */
  machineCpu?: number;
  /** Machine CPU not accounted for by the processes above: competing work, in cores. */
  otherCpu?: number;
  /** The measured run in the server's monotonic clock, to cut its CPU profile to it. */
  profileWindow?: ProfileWindow;
}

/** Hands out pre-signed requests; signs on the fly (counted) only if the pool runs dry. */
class CallbackCursor {
  private index = 0;
  signedOnTheFly = 0;
  constructor(
    private readonly pool: SignedRequest[],
    private readonly cycle: boolean,
  ) {}
  next(): SignedRequest {
    if (this.index < this.pool.length) return this.pool[this.index++]!;
    if (this.cycle) {
      this.index = 1;
      return this.pool[0]!;
    }
    this.signedOnTheFly += 1;
    return signedTextCallback({ from: `u_bench_${this.signedOnTheFly % 1000}`, text: "late benchmark message" });
  }
}

async function load(input: {
  url: string;
  path: string;
  connections: number;
  durationSeconds: number;
  /** A fixed number of requests instead of a duration. */
  amount?: number;
  overallRate?: number;
  next: () => { headers: Record<string, string>; body: string };
  child?: BenchChild;
  measurePostgres?: boolean;
  measureRedis?: boolean;
  label?: string;
}): Promise<LoadRun> {
  const request: AutocannonRequest = {
    method: "POST",
    path: input.path,
    setupRequest: (raw) => {
      const next = input.next();
      raw.headers = next.headers;
      raw.body = next.body;
      return raw;
    },
  };
  const serverPid = input.child?.ready.pid;
  const serverCpu = serverPid === undefined ? undefined : cpuMeter(serverPid);
  const fromMicros = await input.child?.mark();
  const postgresStart = input.measurePostgres ? cpuMillisecondsOfProcessesNamed("postgres") : 0;
  const redisStart = input.measureRedis ? cpuMillisecondsOfProcessesNamed("redis-server") : 0;
  const machine = machineCpuMeter();
  const loaderCpuStart = process.cpuUsage();
  const loaderStartedAt = performance.now();
  const result: AutocannonResult = await autocannon({
    url: input.url,
    connections: input.connections,
    duration: input.durationSeconds,
    timeout: 10,
    requests: [request],
    ...(input.amount ? { amount: input.amount } : {}),
    ...(input.overallRate ? { overallRate: input.overallRate } : {}),
  });
  const loaderCpuUsage = process.cpuUsage(loaderCpuStart);
  const elapsedMs = performance.now() - loaderStartedAt;
  const machineCores = machine.stop();
  const serverCores = serverCpu?.stop();
  const postgresCores = input.measurePostgres
    ? (cpuMillisecondsOfProcessesNamed("postgres") - postgresStart) / elapsedMs
    : undefined;
  const redisCores = input.measureRedis
    ? (cpuMillisecondsOfProcessesNamed("redis-server") - redisStart) / elapsedMs
    : undefined;
  const toMicros = await input.child?.mark();
  const loaderCores = (loaderCpuUsage.user + loaderCpuUsage.system) / 1000 / elapsedMs;
  const statusCodes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = Number(stats.count);
  return {
    requestsPerSecond: round(result.requests.total / result.duration, 0),
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
      mean: round(result.latency.average),
    },
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    durationSeconds: round(result.duration),
    connections: input.connections,
    ...(input.overallRate ? { offeredRate: input.overallRate } : {}),
    ...(serverCores !== undefined
      ? {
          serverCpu: round(serverCores),
          serverCpuMicrosPerRequest: round((serverCores * elapsedMs * 1000) / Math.max(1, result.requests.total), 0),
        }
      : {}),
    loaderCpu: round(loaderCores),
    ...(postgresCores !== undefined ? { postgresCpu: round(postgresCores) } : {}),
    ...(redisCores !== undefined ? { redisCpu: round(redisCores) } : {}),
    ...(machineCores !== undefined
      ? {
          machineCpu: round(machineCores),
          otherCpu: round(
            Math.max(0, machineCores - (serverCores ?? 0) - loaderCores - (postgresCores ?? 0) - (redisCores ?? 0)),
          ),
        }
      : {}),
    ...(fromMicros !== undefined && toMicros !== undefined
      ? { profileWindow: { fromMicros, toMicros, ...(input.label ? { label: input.label } : {}) } }
      : {}),
  };
}

export interface IngestTarget {
  name: string;
  description: string;
  maxThroughput: LoadRun;
  fixedRate?: LoadRun;
  signedOnTheFly?: number;
  rssAfterBytes?: number;
  notes?: string[];
}

export interface IngestOptions {
  durationSeconds: number;
  /** A fixed number of requests per max-throughput run instead of `durationSeconds` (smoke test). */
  amount?: number;
  warmupSeconds: number;
  /** 0 skips the fixed-rate run. */
  fixedRateSeconds: number;
  connections: number;
  fixedRate: number;
  fixedRateConnections: number;
  /** Pre-signed callbacks per bridge target (warm-up + both runs). */
  poolSize: number;
  postgresUrl?: string | undefined;
  redisUrl?: string | undefined;
  /** Also measure the bridge on an in-memory SQLite (max throughput only): separates file I/O from the rest. */
  memoryVariant?: boolean;
  profileDirectory?: string | undefined;
  /** Which target to profile: "sqlite", "memory" or "postgres". */
  profileTarget?: string | undefined;
  log?: (line: string) => void;
}

export interface IngestResult {
  bare: IngestTarget;
  sqlite: IngestTarget;
  sqliteMemory?: IngestTarget;
  postgresRedis?: IngestTarget;
  redisSkipped?: string;
  postgres?: IngestTarget;
  postgresSkipped?: string;
  ratioSqlite: number;
  ratioPostgres?: number;
  ratioPostgresRedis?: number;
}

async function measureTarget(
  child: BenchChild,
  name: string,
  description: string,
  options: IngestOptions,
  cursor: CallbackCursor,
  withFixedRate = true,
): Promise<IngestTarget> {
  const log = options.log ?? (() => {});
  const common = {
    url: child.ready.url,
    path: "/im/callback",
    next: () => cursor.next(),
    child,
    measurePostgres: name.includes("postgres"),
    measureRedis: name.includes("redis"),
  };
  if (options.warmupSeconds > 0) {
    log(`  ${name}: warm-up ${options.warmupSeconds} s`);
    await load({ ...common, connections: options.connections, durationSeconds: options.warmupSeconds });
  }
  log(
    `  ${name}: max throughput ${options.amount ? `${options.amount} requests` : `${options.durationSeconds} s`}, ${options.connections} connections`,
  );
  const maxThroughput = await load({
    ...common,
    connections: options.connections,
    durationSeconds: options.durationSeconds,
    ...(options.amount ? { amount: options.amount } : {}),
    label: `${name} max throughput`,
  });
  if (!withFixedRate || options.fixedRateSeconds <= 0)
    return { name, description, maxThroughput, signedOnTheFly: cursor.signedOnTheFly };
  await sleep(500);
  log(`  ${name}: fixed rate ${options.fixedRate}/s for ${options.fixedRateSeconds} s`);
  const fixedRate = await load({
    ...common,
    connections: options.fixedRateConnections,
    durationSeconds: options.fixedRateSeconds,
    overallRate: options.fixedRate,
  });
  return { name, description, maxThroughput, fixedRate, signedOnTheFly: cursor.signedOnTheFly };
}

export async function withPostgresSchema<T>(url: string, run: (schemaUrl: string) => Promise<T>): Promise<T> {
  const schema = `bench_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`create schema ${schema}`);
    const schemaUrl = new URL(url);
    schemaUrl.searchParams.set("options", `-c search_path=${schema}`);
    return await run(schemaUrl.toString());
  } finally {
    await admin.query(`drop schema if exists ${schema} cascade`).catch(() => {});
    await admin.end().catch(() => {});
  }
}

/** Runs `run`, then deletes every Redis key under `prefix` (the bridge ran with REDIS_KEY_PREFIX=prefix). */
export async function withRedisCleanup<T>(url: string, prefix: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } finally {
    const redis = new Redis(url, { maxRetriesPerRequest: 1 });
    try {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== "0");
    } finally {
      redis.disconnect();
    }
  }
}

export async function ingestScenario(options: IngestOptions): Promise<IngestResult> {
  const log = options.log ?? (() => {});
  const emulator = await startEmulator();
  const directory = temporaryDirectory();
  try {
    // The same signed bytes hit the bare server, cycled (it stores nothing, so ids need not be fresh).
    const barePool = signedCallbackPool(Math.min(options.poolSize, 20_000));
    const bareChild = await startChild({ script: "bare-child.ts", env: { PORT: "0" } });
    let bare: IngestTarget;
    try {
      bare = await measureTarget(
        bareChild,
        "bare node:http",
        "node:http, reads the body, answers 200",
        options,
        new CallbackCursor(barePool, true),
      );
    } finally {
      await bareChild.stop();
    }

    const runBridge = async (
      target: "sqlite" | "memory" | "postgres" | "postgres-redis",
      databaseUrl: string,
      extra: Record<string, string>,
    ): Promise<IngestTarget> => {
      const port = await freePort();
      const profile = options.profileDirectory && options.profileTarget === target;
      const child = await startChild({
        script: "bridge-child.ts",
        env: {
          ...bridgeEnvironment({ nimApiBase: emulator.classicApiBase, databaseUrl, port, extra }),
          // The production ingest-only role: callbacks are verified and stored, no worker runs.
          SERVE_ROLE: "http",
          BENCH_MODE: "ingest",
        },
        ...(profile
          ? { cpuProfileDirectory: options.profileDirectory, cpuProfileName: `ingest-${target}.cpuprofile` }
          : {}),
      });
      try {
        log(`  signing ${options.poolSize} callbacks for bridge (${target})`);
        const cursor = new CallbackCursor(signedCallbackPool(options.poolSize), false);
        const descriptions = {
          sqlite: "bridge, SQLite (WAL) in a temp dir, SERVE_ROLE=http (no worker)",
          memory: "bridge, in-memory SQLite (diagnostic: no file I/O), SERVE_ROLE=http",
          postgres: "bridge, PostgreSQL (fresh schema), SERVE_ROLE=http",
          "postgres-redis": `bridge, PostgreSQL + REDIS_URL (queue: ${child.ready.queue}), SERVE_ROLE=http`,
        };
        const description = descriptions[target];
        const result = await measureTarget(
          child,
          `bridge (${target})`,
          description,
          options,
          cursor,
          target !== "memory",
        );
        const notes: string[] = [];
        if (child.ready.redisConfigured && child.ready.queue !== "BullMqQueue") {
          notes.push(`REDIS_URL was set but createBridge used ${child.ready.queue}: Redis not exercised`);
        }
        const stats = await child.stats();
        return { ...result, rssAfterBytes: stats.rss, ...(notes.length > 0 ? { notes } : {}) };
      } finally {
        await child.stop();
      }
    };

    log("  bridge with SQLite");
    const sqlite = await runBridge("sqlite", `sqlite:${join(directory, "ingest.db")}`, {});
    const result: IngestResult = {
      bare,
      sqlite,
      ratioSqlite: round(sqlite.maxThroughput.requestsPerSecond / bare.maxThroughput.requestsPerSecond),
    };
    if (options.memoryVariant) {
      log("  bridge with in-memory SQLite (diagnostic)");
      result.sqliteMemory = await runBridge("memory", "sqlite::memory:", {});
    }

    if (options.postgresUrl) {
      const postgresUrl = options.postgresUrl;
      if (await postgresAnswers(postgresUrl)) {
        log("  bridge with PostgreSQL");
        result.postgres = await withPostgresSchema(postgresUrl, (schemaUrl) => runBridge("postgres", schemaUrl, {}));
        result.ratioPostgres = round(
          result.postgres.maxThroughput.requestsPerSecond / bare.maxThroughput.requestsPerSecond,
        );
        const redisUrl = options.redisUrl && (await redisAnswers(options.redisUrl)) ? options.redisUrl : undefined;
        if (redisUrl) {
          log("  bridge with PostgreSQL + Redis");
          const prefix = `im-bridge-bench-${process.pid}-${Date.now()}`;
          result.postgresRedis = await withRedisCleanup(redisUrl, prefix, () =>
            withPostgresSchema(postgresUrl, (schemaUrl) =>
              runBridge("postgres-redis", schemaUrl, { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix }),
            ),
          );
          result.ratioPostgresRedis = round(
            result.postgresRedis.maxThroughput.requestsPerSecond / bare.maxThroughput.requestsPerSecond,
          );
        } else {
          result.redisSkipped = `Redis did not answer at ${options.redisUrl}`;
        }
      } else {
        result.postgresSkipped = `PostgreSQL did not answer at ${postgresUrl}`;
      }
    } else {
      result.postgresSkipped = "not requested";
    }
    return result;
  } finally {
    await emulator.close();
    rmSync(directory, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// 2. First-segment overhead and 3. NIM calls per reply (bridge in-process)
// ---------------------------------------------------------------------------------------------

export interface FirstSegmentOptions {
  replies: number;
  /** Time between two callbacks. */
  spacingMs: number;
  tokens: number;
  intervalMs: number;
  log?: (line: string) => void;
}

export interface FirstSegmentResult {
  replies: number;
  completed: number;
  /** First token yielded by the generator → first segment accepted by the NIM emulator. */
  overheadMs: Summary;
  /** Callback posted → first segment at NIM (includes the ack, queueing and the pre-generation reads). */
  callbackToFirstSegmentMs: Summary;
  concurrencyApprox: number;
  /** Event-loop delay of this process (bridge + emulator + generator + callback posting share it). */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  processCpu: number;
  /** Machine CPU not used by this process: competing work, in cores. */
  otherCpu: number | undefined;
}

export async function firstSegmentScenario(options: FirstSegmentOptions): Promise<FirstSegmentResult> {
  const emulator = await startEmulator();
  const directory = temporaryDirectory();
  const firstTokenAt = new Map<string, number>();
  const firstSegmentAt = new Map<string, number>();
  const postedAt = new Map<string, number>();
  const done = new Set<string>();
  const unsubscribe = emulator.state.onMessage((message) => {
    const at = wallClock();
    const body = parseStreamBody(message.body);
    if (!body?.reply_to) return;
    if (!firstSegmentAt.has(body.reply_to)) firstSegmentAt.set(body.reply_to, at);
    if (body.done) done.add(body.reply_to);
  });
  const users = Array.from({ length: options.replies }, (_, index) => `u_first_${index}`);
  addAccounts(emulator, users);
  const port = await freePort();
  const config = loadConfig(
    bridgeEnvironment({
      nimApiBase: emulator.classicApiBase,
      databaseUrl: `sqlite:${join(directory, "first.db")}`,
      port,
    }),
  );
  const bridge = await createBridge(config, {
    generator: createTokenGenerator({
      tokens: options.tokens,
      intervalMs: options.intervalMs,
      token: (index) => (index === 0 ? "Hello" : ` token${index}`),
      // The user text is the msgidServer, so the generator knows which reply it serves.
      onToken: (request, index, at) => {
        if (index === 0) firstTokenAt.set(request.message, at);
      },
    }),
  });
  const delay = monitorEventLoopDelay({ resolution: 1 });
  try {
    const url = await bridge.start();
    delay.enable();
    const machine = machineCpuMeter();
    const ownCpu = process.cpuUsage();
    const startedAt = wallClock();
    const posts: Promise<unknown>[] = [];
    for (let index = 0; index < options.replies; index += 1) {
      const msgidServer = newMessageIdServer();
      const request = signedTextCallback({ from: users[index]!, text: msgidServer, msgidServer });
      postedAt.set(msgidServer, wallClock());
      posts.push(postCallback(url, request));
      await sleep(options.spacingMs);
    }
    await Promise.all(posts);
    const deadline = Date.now() + 30_000;
    while (done.size < options.replies && Date.now() < deadline) await sleep(20);
    delay.disable();
    const machineCores = machine.stop();
    const own = process.cpuUsage(ownCpu);
    const ownCores = (own.user + own.system) / 1000 / (wallClock() - startedAt);
    const overhead: number[] = [];
    const endToEnd: number[] = [];
    for (const [replyTo, segmentAt] of firstSegmentAt) {
      const tokenAt = firstTokenAt.get(replyTo);
      if (tokenAt !== undefined) overhead.push(segmentAt - tokenAt);
      const posted = postedAt.get(replyTo);
      if (posted !== undefined) endToEnd.push(segmentAt - posted);
    }
    const replyDurationMs = (options.tokens - 1) * options.intervalMs;
    return {
      replies: options.replies,
      completed: done.size,
      overheadMs: roundSummary(summarize(overhead)),
      callbackToFirstSegmentMs: roundSummary(summarize(endToEnd)),
      concurrencyApprox: round(Math.max(1, replyDurationMs / options.spacingMs), 1),
      eventLoopDelayMs: {
        p50: round(Math.max(0, delay.percentile(50) / 1e6 - 1)),
        p99: round(Math.max(0, delay.percentile(99) / 1e6 - 1)),
        max: round(Math.max(0, delay.max / 1e6 - 1)),
      },
      processCpu: round(ownCores),
      otherCpu: machineCores === undefined ? undefined : round(Math.max(0, machineCores - ownCores)),
    };
  } finally {
    unsubscribe();
    await bridge.close();
    await emulator.close();
    rmSync(directory, { recursive: true, force: true });
  }
}

export interface CallsPerReplyOptions {
  replies: number;
  tokens: number;
  intervalMs: number;
  pacingMs: number;
}

export interface CallsPerReplyResult {
  tokens: number;
  intervalMs: number;
  pacingMs: number;
  perReply: Array<{ calls: number; segments: number; finals: number; generationSpanMs: number }>;
  /** The most sendMsg calls any one reply took (messages NIM accepted for it). */
  maxCalls: number;
  /** Every sendMsg request the emulator saw, divided by the number of replies (retries included). */
  requestsPerReply: number;
  perTokenBaseline: number;
  target: number;
}

export async function callsPerReplyScenario(options: CallsPerReplyOptions): Promise<CallsPerReplyResult> {
  const emulator = await startEmulator();
  const directory = temporaryDirectory();
  const tokenTimes = new Map<string, { first: number; last: number }>();
  const users = Array.from({ length: options.replies }, (_, index) => `u_calls_${index}`);
  addAccounts(emulator, users);
  const port = await freePort();
  const config = loadConfig(
    bridgeEnvironment({
      nimApiBase: emulator.classicApiBase,
      databaseUrl: `sqlite:${join(directory, "calls.db")}`,
      port,
      extra: { REPLY_PACING_MS: String(options.pacingMs) },
    }),
  );
  const bridge = await createBridge(config, {
    generator: createTokenGenerator({
      tokens: options.tokens,
      intervalMs: options.intervalMs,
      token: (index) => `${index % 10 === 0 ? " " : ""}tok`,
      onToken: (request, index, at) => {
        const times = tokenTimes.get(request.message) ?? { first: at, last: at };
        if (index === 0) times.first = at;
        times.last = at;
        tokenTimes.set(request.message, times);
      },
    }),
  });
  try {
    const url = await bridge.start();
    const requestsBefore = emulator.state.requests.filter((record) => record.path === "msg/sendMsg.action").length;
    const ids: string[] = [];
    await Promise.all(
      users.map((user) => {
        const msgidServer = newMessageIdServer();
        ids.push(msgidServer);
        return postCallback(url, signedTextCallback({ from: user, text: msgidServer, msgidServer }));
      }),
    );
    const timeoutMs = options.tokens * options.intervalMs + 20_000;
    await Promise.all(
      ids.map((id) =>
        emulator.state.waitForMessages({
          from: BOT,
          count: 1,
          timeoutMs,
          where: (message) => {
            const body = parseStreamBody(message.body);
            return body?.reply_to === id && body.done === true;
          },
        }),
      ),
    );
    const perReply = ids.map((id) => {
      const bodies = emulator.state.messages
        .filter((message) => message.from === BOT)
        .map((message) => parseStreamBody(message.body))
        .filter((body): body is ParsedStreamMessage => body?.reply_to === id);
      const finals = bodies.filter((body) => body.done || body.part !== undefined).length;
      const times = tokenTimes.get(id);
      return {
        calls: bodies.length,
        segments: bodies.length - finals,
        finals,
        generationSpanMs: times ? round(times.last - times.first, 1) : Number.NaN,
      };
    });
    const requests =
      emulator.state.requests.filter((record) => record.path === "msg/sendMsg.action").length - requestsBefore;
    return {
      tokens: options.tokens,
      intervalMs: options.intervalMs,
      pacingMs: options.pacingMs,
      perReply,
      maxCalls: Math.max(...perReply.map((entry) => entry.calls)),
      requestsPerReply: round(requests / options.replies, 1),
      perTokenBaseline: options.tokens + 1,
      target: 1 + Math.round((options.tokens * options.intervalMs) / options.pacingMs),
    };
  } finally {
    await bridge.close();
    await emulator.close();
    rmSync(directory, { recursive: true, force: true });
  }
}

// 4. Concurrent streams, burst, fair pacing, CPU per message, scale-out: stream-scenarios.ts
// ---------------------------------------------------------------------------------------------
// 5. /im/register against the emulator
// ---------------------------------------------------------------------------------------------

export interface RegisterOptions {
  durationSeconds: number;
  warmupSeconds: number;
  connections: number;
  profileDirectory?: string | undefined;
  log?: (line: string) => void;
}

export interface RegisterResult extends LoadRun {
  accountsCreatedAtNim: number;
}

export async function registerScenario(options: RegisterOptions): Promise<RegisterResult> {
  const emulator = await startEmulator();
  const directory = temporaryDirectory();
  const port = await freePort();
  const child = await startChild({
    script: "bridge-child.ts",
    env: {
      ...bridgeEnvironment({
        nimApiBase: emulator.classicApiBase,
        databaseUrl: `sqlite:${join(directory, "register.db")}`,
        port,
      }),
      BENCH_MODE: "ingest",
    },
    ...(options.profileDirectory
      ? { cpuProfileDirectory: options.profileDirectory, cpuProfileName: "register.cpuprofile" }
      : {}),
  });
  let counter = 0;
  const run = `${process.pid}_${Date.now()}`;
  const next = () => ({
    headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY },
    body: JSON.stringify({ user_id: `bench_${run}_${counter++}`, name: "Bench User" }),
  });
  try {
    const common = { url: child.ready.url, path: "/im/register", next, child };
    if (options.warmupSeconds > 0) {
      await load({ ...common, connections: options.connections, durationSeconds: options.warmupSeconds });
    }
    const accountsBefore = emulator.state.accounts.size;
    const result = await load({
      ...common,
      connections: options.connections,
      durationSeconds: options.durationSeconds,
      label: "register",
    });
    return { ...result, accountsCreatedAtNim: emulator.state.accounts.size - accountsBefore };
  } finally {
    await child.stop();
    await emulator.close();
    rmSync(directory, { recursive: true, force: true });
  }
}

export function roundSummary(summary: Summary): Summary {
  return {
    count: summary.count,
    min: round(summary.min),
    mean: round(summary.mean),
    p50: round(summary.p50),
    p90: round(summary.p90),
    p99: round(summary.p99),
    max: round(summary.max),
  };
}

export function ensureDirectory(path: string): string {
  if (!existsSync(path)) mkdirSync(path, { recursive: true });
  return path;
}

export function latestProfile(directory: string, name: string): string | undefined {
  if (!existsSync(directory)) return undefined;
  return readdirSync(directory).includes(name) ? join(directory, name) : undefined;
}

// ---------------------------------------------------------------------------------------------
// 6. Idle RSS of the compiled build (goal 7)
// ---------------------------------------------------------------------------------------------

export interface IdleRssOptions {
  /** How long the server idles after it answered /healthz before its RSS is read. */
  idleSeconds: number;
  log?: (line: string) => void;
}

export interface IdleRssResult {
  /** `node dist/cli/serve.js`, or why it could not run. */
  command: string;
  missing?: string;
  /** VmRSS after the idle time (the last of several samples), MB. */
  rssMb?: number;
  /** The largest sample during the idle time, MB. */
  rssPeakMb?: number;
  startupMs?: number;
}

/**
 * `npm run serve` as a user runs it: plain `node` on the compiled build, a minimal SQLite
 * environment against the emulator, no tsx and none of the bench's overrides. Only REPLY_THREAD
 * is passed through from the bench's environment, to compare both ways.
 */
export async function idleRssScenario(options: IdleRssOptions): Promise<IdleRssResult> {
  const script = join(REPO_ROOT, "dist", "cli", "serve.js");
  const command = `node ${relative(REPO_ROOT, script)}`;
  if (!existsSync(script)) return { command, missing: `${command}: not built (npm run build)` };
  const emulator = await startEmulator();
  const directory = temporaryDirectory();
  const port = await freePort();
  const environment: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    NIM_APP_KEY: APP_KEY,
    NIM_APP_SECRET: APP_SECRET,
    NIM_BOT_ACCID: BOT,
    NIM_API_BASE: emulator.classicApiBase,
    DATABASE_URL: `sqlite:${join(directory, "idle.db")}`,
    PORT: String(port),
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    ...(process.env.REPLY_THREAD ? { REPLY_THREAD: process.env.REPLY_THREAD } : {}),
  };
  const startedAt = performance.now();
  const server = spawn(process.execPath, [script], {
    cwd: REPO_ROOT,
    env: environment,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (data: Buffer) => {
    output = (output + data.toString()).slice(-4000);
  };
  server.stdout.on("data", keep);
  server.stderr.on("data", keep);
  const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  try {
    const deadline = Date.now() + 30_000;
    let healthy = false;
    while (!healthy && Date.now() < deadline && server.exitCode === null) {
      healthy = await fetch(`http://127.0.0.1:${port}/healthz`)
        .then(async (response) => {
          await response.arrayBuffer();
          return response.ok;
        })
        .catch(() => false);
      if (!healthy) await sleep(100);
    }
    if (!healthy) {
      return { command, missing: `${command} did not answer /healthz within 30 s: ${output.split("\n")[0] ?? ""}` };
    }
    const startupMs = round(performance.now() - startedAt, 0);
    options.log?.(`  ${command} up in ${startupMs} ms; idling ${options.idleSeconds} s`);
    const resident = sampleResident(server.pid!, 250);
    await sleep(options.idleSeconds * 1000);
    const { peak, last } = resident.stop();
    return { command, rssMb: round(last / MB, 1), rssPeakMb: round(peak / MB, 1), startupMs };
  } finally {
    if (server.exitCode === null) server.kill("SIGTERM");
    const killTimer = setTimeout(() => server.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killTimer);
    await emulator.close();
    rmSync(directory, { recursive: true, force: true });
  }
}
