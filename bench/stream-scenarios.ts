/**
 * The streaming scenarios: many replies at once through bridge child processes, the emulator and
 * the observer of what reaches NIM in this process, the callbacks posted and timed by the load
 * client (client-child.ts) in a process of its own.
 *
 * One run ({@link streamRun}) serves every goal that streams:
 * - concurrency (goals 2 and 4): N streams, probe callbacks timed while they run;
 * - burst (goal 4): 400 users at once on the default settings, first segment − ack;
 * - fair pacing (goal 5): a send budget and N streams, the longest gap of every stream;
 * - CPU per NIM message (goal 1): one run, then the anchor client at the same rate and body size;
 * - scale-out (goal 6): PostgreSQL + Redis, one http process and 1 or 2 worker processes.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { RunningNimEmulator } from "../src/emulator/index.ts";
import { type BenchChild, startChild } from "./children.ts";
import {
  APP_KEY,
  APP_SECRET,
  BOT,
  bridgeEnvironment,
  cpuMilliseconds,
  freePort,
  machineCpuMeter,
  round,
  type SignedRequest,
  type Summary,
  sampleResident,
  signedTextCallback,
  sleep,
  summarize,
  tokenTimestamps,
  wallClock,
} from "./common.ts";
import type { ProfileWindow } from "./profile-summary.ts";
import {
  addAccounts,
  parseStreamBody,
  roundSummary,
  startEmulator,
  temporaryDirectory,
  withPostgresSchema,
  withRedisCleanup,
} from "./scenarios.ts";

const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The load client
// ---------------------------------------------------------------------------------------------

async function startClient(): Promise<BenchChild> {
  return startChild({ script: "client-child.ts", env: {} });
}

/** A command to the load client; its failure comes back as `error`. */
async function clientCall<T>(client: BenchChild, type: string, payload: Record<string, unknown>): Promise<T> {
  const answer = await client.call<T & { error?: string }>(type, payload, 300_000);
  if (answer.error) throw new Error(`load client ${type}: ${answer.error}`);
  return answer;
}

// ---------------------------------------------------------------------------------------------
// One stream run
// ---------------------------------------------------------------------------------------------

/** The bridge processes of a run: where callbacks go, whose CPU counts, whose statistics are shown. */
export interface StreamTopology {
  url: string;
  /** Reports event-loop delay, heap and sends, and is the one profiled. */
  main: BenchChild;
  processes: Array<{ role: string; child: BenchChild }>;
}

/** Starts the bridge processes of a run; `streamEnv` is what a process that streams needs. */
export type StartTopology = (input: {
  emulator: RunningNimEmulator;
  streamEnv: Record<string, string>;
  directory: string;
}) => Promise<StreamTopology>;

export interface StreamRunOptions {
  streams: number;
  tokens: number;
  intervalMs: number;
  /** Callbacks posted in parallel per batch; 0 posts them all at once. */
  batch: number;
  /** How long to wait, after the callbacks were acked, for the end condition. */
  doneTimeoutMs: number;
  /**
   * `done`: until every reply finished; `first-segment`: until every reply's first segment arrived;
   * `window`: for `windowMs` after the callbacks were acked, then stop (replies left unfinished).
   */
  until?: "done" | "first-segment" | "window";
  windowMs?: number;
  /** Probe callbacks per second while the streams run, their acks timed; 0 or absent: none. */
  probeRatePerSecond?: number;
  /** Streams whose longest gap between two messages exceeds this are counted. */
  gapLimitMs?: number;
  /**
   * The steady-state rate is counted once every stream has started, and at least this long after
   * the burst was acked (default 2 s).
   */
  settleMs?: number;
  /** Label of the run in logs and the profile window. */
  label?: string;
  log?: ((line: string) => void) | undefined;
}

export interface ConcurrencyResult {
  label: string;
  streams: number;
  completed: number;
  tokensPerReply: number;
  replySpanMs: number;
  rssIdleMb: number;
  rssPeakMb: number;
  heapUsedEndMb: number;
  heapTotalPeakMb: number;
  heapUsedPeakMb: number;
  externalPeakMb: number;
  /** Open file descriptors of the main bridge process at their peak. */
  descriptorsPeak: number;
  /** Most replies streaming at the same moment, as seen at NIM (first segment seen, done not yet). */
  peakActiveStreams: number;
  /** Every callback's POST → 200: the burst and the probes. */
  ackMs: Summary;
  /** The burst of `streams` callbacks that start the streams. */
  burstAckMs: Summary;
  /** Probe callbacks posted at a steady rate while the streams ran (see probeRatePerSecond). */
  probeAckMs: Summary;
  probes: { posted: number; failed: number; ratePerSecond: number };
  /** Event-loop delay of the main bridge process's main thread (the intake loop). */
  eventLoopDelayMs: { p50: number; p99: number; max: number; mean: number };
  /** Token yielded by the generator (in the bridge) → the segment carrying it accepted by NIM. */
  segmentLagMs: Summary;
  /** A reply's first segment at NIM − its callback's ack (both wall clocks), over the arrived ones. */
  firstSegmentAfterAckMs: Summary;
  /** Replies whose first segment had not arrived by the end of the run. */
  firstSegmentsMissing: number;
  /**
   * p99 of first segment − ack over every reply, a missing one counting as infinitely late; null
   * when more than 1 % are missing (the p99 lies beyond the run).
   */
  firstSegmentAfterAckP99Ms: number | null;
  /** Per stream, the longest time between two of its messages at NIM; summarised over the streams. */
  longestGapMs: Summary;
  gapLimitMs?: number;
  /** Streams whose longest gap exceeded gapLimitMs. */
  streamsOverGapLimit?: number;
  /**
   * NIM sendMsg round trip as the main bridge process saw it (observer.sent). Empty when the replies
   * run in a reply thread: the observer is a function and does not cross into the thread.
   */
  sendMs: { count: number; p50: number; p99: number; max: number; outcomes: Record<string, number> };
  /** Every bot_stream message NIM accepted, repeats and probe replies included. */
  nimMessages: number;
  /** Messages NIM accepted twice (same reply and seq): sends retried after a timeout. */
  duplicateMessages: number;
  nimMessagesPerSecond: number;
  /**
   * Distinct messages per second while every stream was running: from when the last stream's first
   * message arrived (at least settleMs after the burst was acked; without it, when not every stream
   * started) to the first `done`, or the end. What the bridge delivers under the offered load.
   */
  steadyMessagesPerSecond: number;
  /** Burst acked → every stream's first message at NIM; null when not every stream started. */
  allStartedAfterMs: number | null;
  /** Mean size of a segment's body (the anchor sends bodies of this size). */
  meanSegmentBodyCharacters: number;
  postSeconds: number;
  /** From the first callback posted to the last done message (or the end of the run). */
  wallSeconds: number;
  /** CPU of every bridge process (all threads, from /proc), in cores. */
  bridgeCpu: number | undefined;
  /** The same, per process. */
  processCpu: Array<{ role: string; cores: number }>;
  /** Bridge CPU time (all processes) per NIM message accepted, ms. */
  bridgeCpuMsPerNimMessage: number | undefined;
  emulatorProcessCpu: number;
  loadClientCpu: number;
  machineCpu: number | undefined;
  otherCpu: number | undefined;
  /** The main thread's CPU profile of the main process (with a profile directory). */
  profile?: string;
  /** Its profiles, one per thread, main thread first. */
  profiles?: string[];
  profileWindow: ProfileWindow;
}

/**
 * Streams `options.streams` replies through the processes `start` brings up and measures them from
 * outside (what NIM receives, /proc) and inside (the main process's IPC statistics).
 */
/** Messages per second that arrived between two instants; NaN for an empty interval. */
function rateBetween(arrivals: number[], from: number, to: number): number {
  if (!(to > from)) return Number.NaN;
  return round(arrivals.filter((at) => at >= from && at <= to).length / ((to - from) / 1000), 0);
}

/** The warm-up reply of every stream run: each bridge's REPLY_CONCURRENCY leaves room for it. */
const WARMUP_REPLIES = 1;

export async function streamRun(options: StreamRunOptions, start: StartTopology): Promise<ConcurrencyResult> {
  const log = options.log ?? (() => {});
  const label = options.label ?? `${options.streams} streams`;
  const until = options.until ?? "done";
  const probeRate = options.probeRatePerSecond ?? 0;
  const emulator = await startEmulator();
  const directory = temporaryDirectory();
  const users = Array.from({ length: options.streams }, (_, index) => `u_stream_${index}`);
  // Enough probe senders for the longest the run may last; each probe is a new conversation.
  const probeUsers = Array.from(
    { length: probeRate > 0 ? Math.ceil((probeRate * (options.doneTimeoutMs + 60_000)) / 1000) : 0 },
    (_, index) => `u_probe_${index}`,
  );
  addAccounts(emulator, [...users, ...probeUsers]);

  const mainIds = new Set<string>();
  const lags: number[] = [];
  const partial = new Map<string, string>();
  const done = new Set<string>();
  const started = new Set<string>();
  const seen = new Set<string>();
  const firstAt = new Map<string, number>();
  const lastAt = new Map<string, number>();
  const longestGap = new Map<string, number>();
  const arrivals: number[] = [];
  let segmentBodyCharacters = 0;
  let segmentBodies = 0;
  let duplicates = 0;
  let peakActive = 0;
  let messages = 0;
  let lastDoneAt = 0;
  let firstMainDoneAt = 0;
  let allStartedAt = 0;
  // One reply (WARMUP_REPLIES) before the measured ones: the reply thread starts with the first job (its start,
  // under tsx a transpile of the reply side, is not what a running service pays per reply).
  const warmupUser = "u_stream_warmup";
  addAccounts(emulator, [warmupUser]);
  const warmup = signedTextCallback({ from: warmupUser, text: "warm-up" });
  let warmupDone = false;
  const unsubscribe = emulator.state.onMessage((message) => {
    const at = wallClock();
    const body = parseStreamBody(message.body);
    if (!body?.reply_to) return;
    if (body.reply_to === warmup.msgidServer) {
      // Its first segment shows the thread is up; the rest of it streams alongside (one stream).
      warmupDone = true;
      return;
    }
    messages += 1;
    // A send that timed out at the bridge but reached NIM is sent again with the same seq (clients
    // drop the repeat): count each (reply, seq) once.
    if (body.seq !== undefined) {
      const key = `${body.reply_to}#${body.seq}`;
      if (seen.has(key)) {
        duplicates += 1;
        return;
      }
      seen.add(key);
    }
    arrivals.push(at);
    if (!mainIds.has(body.reply_to)) return;
    const replyTo = body.reply_to;
    if (!started.has(replyTo)) {
      started.add(replyTo);
      firstAt.set(replyTo, at);
      peakActive = Math.max(peakActive, started.size - done.size);
      if (started.size === options.streams) allStartedAt = at;
    }
    const previous = lastAt.get(replyTo);
    if (previous !== undefined) longestGap.set(replyTo, Math.max(longestGap.get(replyTo) ?? 0, at - previous));
    lastAt.set(replyTo, at);
    if (body.done) {
      done.add(replyTo);
      lastDoneAt = at;
      if (firstMainDoneAt === 0) firstMainDoneAt = at;
      return;
    }
    if (body.part !== undefined || !body.delta) return;
    segmentBodyCharacters += message.body.length;
    segmentBodies += 1;
    // A token cut across two segments counts when its end arrives.
    const { timestamps, rest } = tokenTimestamps((partial.get(replyTo) ?? "") + body.delta, true);
    partial.set(replyTo, rest);
    for (const yieldedAt of timestamps) lags.push(at - yieldedAt);
  });

  let topology: StreamTopology | undefined;
  let client: BenchChild | undefined;
  let result: ConcurrencyResult;
  let profiles: string[] = [];
  try {
    [topology, client] = await Promise.all([
      start({
        emulator,
        directory,
        streamEnv: {
          BENCH_MODE: "stream",
          BENCH_TOKENS: String(options.tokens),
          BENCH_TOKEN_INTERVAL_MS: String(options.intervalMs),
        },
      }),
      startClient(),
    ]);
    const main = topology.main;
    const pids = topology.processes.map(({ child }) => child.ready.pid);
    await clientCall(client, "callbacks", {
      url: topology.url,
      requests: [{ headers: warmup.headers, body: warmup.body }],
      batch: 1,
    });
    const warmupDeadline = wallClock() + 30_000;
    while (!warmupDone && wallClock() < warmupDeadline) await sleep(20);
    if (!warmupDone) throw new Error(`${label}: the warm-up reply did not start within 30 s`);
    await sleep(300);
    const idle = await main.stats();
    const { monotonicMicros: fromMicros } = await main.reset();

    // Signed before the clock starts: signing is the load generator's work, not the bridge's.
    const requests: SignedRequest[] = users.map((user) => {
      const signed = signedTextCallback({ from: user, text: "hi" });
      mainIds.add(signed.msgidServer);
      return { headers: signed.headers, body: signed.body };
    });
    const ids = [...mainIds];

    const resident = sampleResident(main.ready.pid);
    const cpuStart = pids.map((pid) => cpuMilliseconds(pid) ?? 0);
    const clientCpuStart = cpuMilliseconds(client.ready.pid) ?? 0;
    const machine = machineCpuMeter();
    const ownCpu = process.cpuUsage();
    const startedAt = wallClock();
    const burst = await clientCall<{ acks: number[]; ackedAt: number[]; statuses: number[] }>(client, "callbacks", {
      url: topology.url,
      requests,
      batch: options.batch,
    });
    const refused = burst.statuses.filter((status) => status !== 200).length;
    if (refused > 0) throw new Error(`${refused} callbacks were not acknowledged with 200`);
    const burstAckedAt = wallClock();
    const postSeconds = (burstAckedAt - startedAt) / 1000;
    log(`  ${label}: ${options.streams} callbacks acked in ${round(postSeconds)} s`);
    if (probeRate > 0) {
      await clientCall(client, "probe-start", { url: topology.url, ratePerSecond: probeRate, users: probeUsers });
    }

    const deadline = burstAckedAt + (until === "window" ? (options.windowMs ?? 10_000) : options.doneTimeoutMs);
    const finished = () =>
      until === "done"
        ? done.size >= options.streams
        : until === "first-segment"
          ? firstAt.size >= options.streams
          : false;
    while (!finished() && wallClock() < deadline) await sleep(50);
    const endedAt = wallClock();
    const probes =
      probeRate > 0
        ? await clientCall<{ acks: number[]; failed: number; posted: number }>(client, "probe-stop", {})
        : { acks: [], failed: 0, posted: 0 };
    const stats = await main.stats();
    const rss = resident.stop();
    const cpuEnd = pids.map((pid) => cpuMilliseconds(pid) ?? 0);
    const clientCpu = (cpuMilliseconds(client.ready.pid) ?? 0) - clientCpuStart;
    const machineCores = machine.stop();
    const own = process.cpuUsage(ownCpu);
    const elapsedMs = wallClock() - startedAt;
    const ownCores = (own.user + own.system) / 1000 / elapsedMs;
    const processCpu = topology.processes.map(({ role }, index) => ({
      role,
      cores: round((cpuEnd[index]! - cpuStart[index]!) / elapsedMs),
    }));
    const bridgeCpuMs = cpuEnd.reduce((sum, value, index) => sum + value - cpuStart[index]!, 0);
    const bridgeCores = bridgeCpuMs / elapsedMs;
    const loadClientCores = clientCpu / elapsedMs;

    const firstAfterAck: number[] = [];
    ids.forEach((id, index) => {
      const first = firstAt.get(id);
      if (first !== undefined) firstAfterAck.push(first - burst.ackedAt[index]!);
    });
    // A ramp (claims, plans, first segments) is not the steady state: it starts once all have started.
    const steadyFrom = Math.max(burstAckedAt + (options.settleMs ?? 2000), allStartedAt);
    const steadyTo = Math.min(firstMainDoneAt || endedAt, endedAt);
    const steadyCount = arrivals.filter((at) => at >= steadyFrom && at <= steadyTo).length;
    const gaps = [...longestGap.values()];
    const wallSeconds = ((until === "done" && lastDoneAt ? lastDoneAt : endedAt) - startedAt) / 1000;
    result = {
      label,
      streams: options.streams,
      completed: done.size,
      tokensPerReply: options.tokens,
      replySpanMs: (options.tokens - 1) * options.intervalMs,
      rssIdleMb: round(idle.rss / MB, 1),
      rssPeakMb: round(rss.peak / MB, 1),
      heapUsedEndMb: round(stats.heapUsed / MB, 1),
      heapTotalPeakMb: round(stats.peaks.heapTotal / MB, 1),
      heapUsedPeakMb: round(stats.peaks.heapUsed / MB, 1),
      externalPeakMb: round(stats.peaks.external / MB, 1),
      descriptorsPeak: rss.peakDescriptors,
      peakActiveStreams: peakActive,
      ackMs: roundSummary(summarize([...burst.acks, ...probes.acks])),
      burstAckMs: roundSummary(summarize(burst.acks)),
      probeAckMs: roundSummary(summarize(probes.acks)),
      probes: { posted: probes.posted, failed: probes.failed, ratePerSecond: probeRate },
      eventLoopDelayMs: {
        p50: round(stats.eventLoopDelayMs.p50),
        p99: round(stats.eventLoopDelayMs.p99),
        max: round(stats.eventLoopDelayMs.max),
        mean: round(stats.eventLoopDelayMs.mean),
      },
      segmentLagMs: roundSummary(summarize(lags)),
      firstSegmentAfterAckMs: roundSummary(summarize(firstAfterAck)),
      firstSegmentsMissing: options.streams - firstAfterAck.length,
      firstSegmentAfterAckP99Ms: p99WithMissing(firstAfterAck, options.streams),
      longestGapMs: roundSummary(summarize(gaps)),
      ...(options.gapLimitMs !== undefined
        ? {
            gapLimitMs: options.gapLimitMs,
            streamsOverGapLimit: gaps.filter((gap) => gap > options.gapLimitMs!).length,
          }
        : {}),
      sendMs: {
        count: stats.sends.count,
        p50: round(stats.sends.p50),
        p99: round(stats.sends.p99),
        max: round(stats.sends.max),
        outcomes: stats.sends.outcomes,
      },
      nimMessages: messages,
      duplicateMessages: duplicates,
      nimMessagesPerSecond: round(messages / Math.max(0.001, wallSeconds), 0),
      // Without a steady window (a stream started after the first finished), the rate after the ramp.
      steadyMessagesPerSecond:
        steadyTo > steadyFrom
          ? round(steadyCount / ((steadyTo - steadyFrom) / 1000), 0)
          : rateBetween(arrivals, burstAckedAt + (options.settleMs ?? 2000), endedAt),
      allStartedAfterMs: allStartedAt ? round(allStartedAt - burstAckedAt, 0) : null,
      meanSegmentBodyCharacters: round(segmentBodyCharacters / Math.max(1, segmentBodies), 0),
      postSeconds: round(postSeconds),
      wallSeconds: round(wallSeconds),
      bridgeCpu: round(bridgeCores),
      processCpu,
      bridgeCpuMsPerNimMessage: round(bridgeCpuMs / Math.max(1, messages), 3),
      emulatorProcessCpu: round(ownCores),
      loadClientCpu: round(loadClientCores),
      machineCpu: machineCores === undefined ? undefined : round(machineCores),
      otherCpu:
        machineCores === undefined
          ? undefined
          : round(Math.max(0, machineCores - bridgeCores - ownCores - loadClientCores)),
      profileWindow: { fromMicros, toMicros: stats.monotonicMicros, label },
    };
  } finally {
    unsubscribe();
    profiles = await stopTopology(topology);
    await client?.stop();
    await emulator.close();
    rmSync(directory, { recursive: true, force: true });
  }
  return profiles.length > 0 ? { ...result, profile: profiles[0]!, profiles } : result;
}

/** Nearest-rank p99 of `total` values of which only `values` are known, the rest infinitely large. */
export function p99WithMissing(values: number[], total: number): number | null {
  const rank = Math.ceil(0.99 * total);
  if (rank > values.length || total === 0) return null;
  return round(Float64Array.from(values).sort()[rank - 1]!);
}

async function stopTopology(topology: StreamTopology | undefined): Promise<string[]> {
  if (!topology) return [];
  const written = await Promise.all(topology.processes.map(({ child }) => child.stop()));
  const mainIndex = topology.processes.findIndex(({ child }) => child === topology.main);
  return written[mainIndex] ?? [];
}

/** The all-in-one default: one process, HTTP and replies, SQLite in a temp dir, no REDIS_URL. */
export function allInOne(input: {
  /** Keep the bridge's default limits (REPLY_CONCURRENCY, NIM_SEND_RATE_PER_SECOND, REPLY_LIMIT_*). */
  defaults?: boolean;
  extraEnv?: Record<string, string>;
  profileDirectory?: string | undefined;
  profileName?: string;
}): StartTopology {
  return async ({ emulator, streamEnv, directory }) => {
    const port = await freePort();
    const child = await startChild({
      script: "bridge-child.ts",
      env: {
        ...bridgeEnvironment({
          nimApiBase: emulator.classicApiBase,
          databaseUrl: `sqlite:${join(directory, "streams.db")}`,
          port,
          ...(input.defaults ? { defaults: true } : {}),
          extra: input.extraEnv ?? {},
        }),
        ...streamEnv,
      },
      ...(input.profileDirectory
        ? { cpuProfileDirectory: input.profileDirectory, cpuProfileName: input.profileName ?? "streams.cpuprofile" }
        : {}),
    });
    return { url: child.ready.url, main: child, processes: [{ role: "all-in-one", child }] };
  };
}

// ---------------------------------------------------------------------------------------------
// Concurrency (goals 2 and 4), burst (goal 4), fair pacing (goal 5)
// ---------------------------------------------------------------------------------------------

export interface ConcurrencyOptions {
  streams: number;
  tokens: number;
  intervalMs: number;
  /** Callbacks posted in parallel per batch. */
  batch: number;
  doneTimeoutMs: number;
  /** Probe callbacks per second while the streams run (acks timed); default 10. */
  probeRatePerSecond?: number;
  /** More environment for the bridge (e.g. REPLY_PACING_MS, NIM_SEND_RATE_PER_SECOND experiments). */
  extraEnv?: Record<string, string>;
  profileDirectory?: string | undefined;
  log?: (line: string) => void;
}

/** N streams at once on the all-in-one default, REPLY_CONCURRENCY = N, other limits raised. */
export async function concurrencyScenario(options: ConcurrencyOptions): Promise<ConcurrencyResult> {
  const profileName = `concurrency-${options.streams}.cpuprofile`;
  return streamRun(
    { ...options, probeRatePerSecond: options.probeRatePerSecond ?? 10, label: `${options.streams} streams` },
    allInOne({
      extraEnv: { REPLY_CONCURRENCY: String(Math.max(50, options.streams + WARMUP_REPLIES)), ...options.extraEnv },
      profileDirectory: options.profileDirectory,
      profileName,
    }),
  );
}

export interface BurstOptions {
  users: number;
  tokens: number;
  intervalMs: number;
  /** How long to wait for every first segment after the burst was acked. */
  timeoutMs: number;
  log?: (line: string) => void;
}

/**
 * `users` people write at once to a bridge on its default settings (no REPLY_CONCURRENCY,
 * NIM_SEND_RATE_PER_SECOND or REPLY_LIMIT_* override): how long after its ack each reply's first
 * segment reaches NIM. Stops when every first segment arrived (replies are not awaited).
 */
export async function burstScenario(options: BurstOptions): Promise<ConcurrencyResult> {
  return streamRun(
    {
      streams: options.users,
      tokens: options.tokens,
      intervalMs: options.intervalMs,
      batch: 0,
      doneTimeoutMs: options.timeoutMs,
      until: "first-segment",
      label: `burst of ${options.users} (defaults)`,
      log: options.log,
    },
    allInOne({ defaults: true }),
  );
}

export interface FairPacingOptions {
  streams: number;
  ratePerSecond: number;
  tokens: number;
  intervalMs: number;
  batch: number;
  doneTimeoutMs: number;
  probeRatePerSecond: number;
  log?: (line: string) => void;
}

export interface FairPacingResult extends ConcurrencyResult {
  ratePerSecond: number;
  /** streams / rate: how long a stream waits for its turn when the budget is shared evenly. */
  fairShareMs: number;
}

/** NIM_SEND_RATE_PER_SECOND = rate and N streams: every stream's longest gap against 2 × its fair share. */
export async function fairPacingScenario(options: FairPacingOptions): Promise<FairPacingResult> {
  const fairShareMs = (options.streams / options.ratePerSecond) * 1000;
  const result = await streamRun(
    {
      streams: options.streams,
      tokens: options.tokens,
      intervalMs: options.intervalMs,
      batch: options.batch,
      doneTimeoutMs: options.doneTimeoutMs,
      probeRatePerSecond: options.probeRatePerSecond,
      gapLimitMs: 2 * fairShareMs,
      label: `fair pacing: ${options.streams} streams at ${options.ratePerSecond}/s`,
      log: options.log,
    },
    allInOne({
      extraEnv: {
        NIM_SEND_RATE_PER_SECOND: String(options.ratePerSecond),
        REPLY_CONCURRENCY: String(Math.max(50, options.streams + WARMUP_REPLIES)),
      },
    }),
  );
  return { ...result, ratePerSecond: options.ratePerSecond, fairShareMs: round(fairShareMs, 0) };
}

// ---------------------------------------------------------------------------------------------
// CPU per NIM message against the anchor (goal 1)
// ---------------------------------------------------------------------------------------------

export interface CpuPerMessageOptions {
  streams: number;
  tokens: number;
  intervalMs: number;
  batch: number;
  doneTimeoutMs: number;
  /** Sockets the anchor client keeps open (the bridge's pool is bounded too). */
  anchorSockets: number;
  /**
   * The anchor runs at the bridge's rate, faster only when that would take longer than this
   * (default 10 s); it sends as many messages as the bridge did, at least 200 and at most 5,000.
   */
  anchorMaxSeconds?: number;
  profileDirectory?: string | undefined;
  log?: (line: string) => void;
}

export interface AnchorResult {
  client: string;
  messages: number;
  failed: number;
  ratePerSecond: number;
  bodyCharacters: number;
  meanFormBytes: number;
  cpuMs: number;
  cpuMsPerMessage: number;
}

export interface CpuPerMessageResult {
  bridge: ConcurrencyResult;
  anchor: AnchorResult;
  /** Bridge CPU per NIM message ÷ the anchor's. */
  ratio: number;
}

/**
 * The all-in-one SQLite default streams N replies (limits raised, REPLY_CONCURRENCY = N); its CPU
 * (all threads, /proc) over the run ÷ NIM messages accepted. Then the anchor: the load client posts
 * as many sendMsg forms of the same body size at the same rate to a fresh emulator, and its own CPU
 * per message is the floor.
 */
export async function cpuPerMessageScenario(options: CpuPerMessageOptions): Promise<CpuPerMessageResult> {
  const log = options.log ?? (() => {});
  const bridge = await streamRun(
    {
      streams: options.streams,
      tokens: options.tokens,
      intervalMs: options.intervalMs,
      batch: options.batch,
      doneTimeoutMs: options.doneTimeoutMs,
      label: `CPU per message: ${options.streams} streams`,
      log,
    },
    allInOne({
      extraEnv: { REPLY_CONCURRENCY: String(Math.max(50, options.streams + WARMUP_REPLIES)) },
      profileDirectory: options.profileDirectory,
      profileName: `cpu-${options.streams}.cpuprofile`,
    }),
  );
  const messages = Math.min(5000, Math.max(200, bridge.nimMessages));
  const anchor = await anchorRun({
    messages,
    ratePerSecond: Math.max(bridge.nimMessagesPerSecond, messages / (options.anchorMaxSeconds ?? 10)),
    bodyCharacters: bridge.meanSegmentBodyCharacters || 200,
    sockets: options.anchorSockets,
  });
  log(
    `  anchor: ${anchor.messages} sendMsg over ${anchor.client}, ${anchor.cpuMsPerMessage} ms CPU/msg (bridge ${bridge.bridgeCpuMsPerNimMessage})`,
  );
  return {
    bridge,
    anchor,
    ratio: round((bridge.bridgeCpuMsPerNimMessage ?? Number.NaN) / anchor.cpuMsPerMessage, 1),
  };
}

export async function anchorRun(input: {
  messages: number;
  ratePerSecond: number;
  bodyCharacters: number;
  sockets: number;
  /** Messages sent before the measured ones (JIT warm-up); default 300. */
  warmup?: number;
}): Promise<AnchorResult> {
  const emulator = await startEmulator();
  const recipients = Array.from({ length: 50 }, (_, index) => `u_anchor_${index}`);
  addAccounts(emulator, [BOT, ...recipients]);
  const client = await startClient();
  try {
    const answer = await clientCall<{
      client: string;
      sent: number;
      failed: number;
      cpuMs: number;
      meanFormBytes: number;
    }>(client, "anchor", {
      apiBase: emulator.classicApiBase,
      appKey: APP_KEY,
      appSecret: APP_SECRET,
      from: BOT,
      recipients,
      bodyCharacters: input.bodyCharacters,
      warmup: input.warmup ?? 300,
      count: input.messages,
      ratePerSecond: input.ratePerSecond,
      sockets: input.sockets,
    });
    return {
      client: answer.client,
      messages: answer.sent,
      failed: answer.failed,
      ratePerSecond: round(input.ratePerSecond, 0),
      bodyCharacters: input.bodyCharacters,
      meanFormBytes: round(answer.meanFormBytes, 0),
      cpuMs: round(answer.cpuMs, 0),
      cpuMsPerMessage: round(answer.cpuMs / Math.max(1, answer.sent), 3),
    };
  } finally {
    await client.stop();
    await emulator.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Scale-out on PostgreSQL + Redis (goal 6)
// ---------------------------------------------------------------------------------------------

export interface ScaleOutOptions {
  postgresUrl: string;
  redisUrl: string;
  /** Streams offered to both configurations: more than one worker can carry. */
  streams: number;
  tokens: number;
  intervalMs: number;
  batch: number;
  /** How long each configuration is measured after its burst was acked. */
  windowMs: number;
  /** The delivered rate is counted from this long after the burst was acked (default 2 s). */
  settleMs?: number;
  log?: (line: string) => void;
}

export interface ScaleOutConfiguration {
  workers: number;
  run: ConcurrencyResult;
}

export interface ScaleOutResult {
  one: ScaleOutConfiguration;
  two: ScaleOutConfiguration;
  /** What the streams ask for at full pace: one message per pacing interval each. */
  offeredMessagesPerSecond: number;
  /** Delivered distinct messages per second, two workers ÷ one. */
  ratio: number;
}

/**
 * One http process + W worker processes (SERVE_ROLE) on a fresh PostgreSQL schema and Redis prefix.
 * Each worker's REPLY_CONCURRENCY is its share of the streams, so the streams are spread evenly and
 * all of them run at once in both configurations.
 */
function splitRoles(input: { postgresUrl: string; redisUrl: string; workers: number; streams: number }): {
  start: StartTopology;
  run<T>(body: (start: StartTopology) => Promise<T>): Promise<T>;
} {
  let schemaUrl = "";
  const prefix = `im-bridge-bench-${process.pid}-${Date.now()}-${input.workers}`;
  const start: StartTopology = async ({ emulator, streamEnv }) => {
    const environment = async () =>
      bridgeEnvironment({
        nimApiBase: emulator.classicApiBase,
        databaseUrl: schemaUrl,
        port: await freePort(),
        extra: {
          REDIS_URL: input.redisUrl,
          REDIS_KEY_PREFIX: prefix,
          REPLY_CONCURRENCY: String(Math.ceil(input.streams / input.workers) + WARMUP_REPLIES),
        },
      });
    // The http process first: it migrates the schema before the workers open it.
    const http = await startChild({
      script: "bridge-child.ts",
      env: { ...(await environment()), SERVE_ROLE: "http", BENCH_MODE: "ingest" },
    });
    const processes: StreamTopology["processes"] = [{ role: "http", child: http }];
    try {
      const workers = await Promise.all(
        Array.from({ length: input.workers }, async () =>
          startChild({
            script: "bridge-child.ts",
            env: { ...(await environment()), SERVE_ROLE: "worker", ...streamEnv },
          }),
        ),
      );
      for (const [index, child] of workers.entries()) processes.push({ role: `worker ${index + 1}`, child });
      return { url: http.ready.url, main: workers[0]!, processes };
    } catch (error) {
      await http.stop();
      throw error;
    }
  };
  return {
    start,
    run: (body) =>
      withRedisCleanup(input.redisUrl, prefix, () =>
        withPostgresSchema(input.postgresUrl, async (url) => {
          schemaUrl = url;
          return body(start);
        }),
      ),
  };
}

export async function scaleOutScenario(options: ScaleOutOptions): Promise<ScaleOutResult> {
  const measure = async (workers: number): Promise<ScaleOutConfiguration> => {
    const topology = splitRoles({ ...options, workers });
    const run = await topology.run((start) =>
      streamRun(
        {
          streams: options.streams,
          tokens: options.tokens,
          intervalMs: options.intervalMs,
          batch: options.batch,
          doneTimeoutMs: options.windowMs,
          until: "window",
          windowMs: options.windowMs,
          ...(options.settleMs !== undefined ? { settleMs: options.settleMs } : {}),
          label: `scale-out: http + ${workers} worker${workers > 1 ? "s" : ""}, ${options.streams} streams`,
          log: options.log,
        },
        start,
      ),
    );
    return { workers, run };
  };
  const one = await measure(1);
  const two = await measure(2);
  return {
    one,
    two,
    offeredMessagesPerSecond: round(options.streams * (1000 / 200), 0),
    ratio: round(two.run.steadyMessagesPerSecond / one.run.steadyMessagesPerSecond),
  };
}
