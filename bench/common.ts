/**
 * Shared pieces of the benchmarks: credentials, the bridge's environment, a wall clock that means
 * the same thing in every process, percentiles, the token generator and pre-signed callbacks.
 */
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleepFor } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { signCallback } from "../src/callback/sign.ts";
import type { GenerationRequest, ReplyGenerator } from "../src/generators/types.ts";

export const APP_KEY = "bench-app-key";
export const APP_SECRET = "bench-app-secret-never-logged";
export const BOT = "advisor_bot";
export const SERVICE_KEY = "bench-service-key";
/** The text of the callbacks that time acks while streams run (token-generator-module.ts answers them briefly). */
export const PROBE_TEXT = "probe";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const RESULTS_DIR = join(REPO_ROOT, "bench", "results");

/**
 * Epoch milliseconds with sub-millisecond precision. Every process derives it from the same system
 * clock, so a timestamp taken in the bridge child and one taken in the emulator process compare.
 */
export function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** The settings {@link bridgeEnvironment} raises out of the way unless asked for the defaults. */
export const RAISED_LIMITS: Readonly<Record<string, string>> = {
  REGISTER_LIMIT_PER_IP_PER_MINUTE: "100000000",
  REGISTER_LIMIT_PER_USER_PER_MINUTE: "100000000",
  REPLY_LIMIT_PER_MINUTE: "100000000",
  REPLY_LIMIT_PER_DAY: "100000000",
  NIM_SEND_RATE_PER_SECOND: "100000000",
};

/**
 * The bridge's environment for a benchmark. Every limit that would turn load into refusals
 * (reply/register limits, the NIM send budget) is raised far out of the way, both for the settings
 * already wired and for those being wired concurrently: the benchmarks measure cost, not policy.
 * With `defaults`, they keep their defaults: only what the bridge needs to reach the emulator is set.
 */
export function bridgeEnvironment(input: {
  nimApiBase: string;
  databaseUrl: string;
  port: number;
  extra?: Record<string, string>;
  defaults?: boolean;
}): Record<string, string> {
  return {
    NIM_APP_KEY: APP_KEY,
    NIM_APP_SECRET: APP_SECRET,
    NIM_BOT_ACCID: BOT,
    NIM_API_BASE: input.nimApiBase,
    DATABASE_URL: input.databaseUrl,
    PORT: String(input.port),
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    BOT_GENERATOR: "demo",
    IM_SERVICE_API_KEY: SERVICE_KEY,
    ...(input.defaults ? {} : RAISED_LIMITS),
    ...input.extra,
  };
}

export interface Summary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles of a sample (sorted in place). */
export function summarize(values: number[] | Float64Array): Summary {
  const sorted = Float64Array.from(values).sort();
  const count = sorted.length;
  if (count === 0)
    return {
      count: 0,
      min: Number.NaN,
      mean: Number.NaN,
      p50: Number.NaN,
      p90: Number.NaN,
      p99: Number.NaN,
      max: Number.NaN,
    };
  const at = (q: number) => sorted[Math.min(count - 1, Math.max(0, Math.ceil(q * count) - 1))]!;
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    count,
    min: sorted[0]!,
    mean: sum / count,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: sorted[count - 1]!,
  };
}

export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/**
 * A token carrying the wall-clock time it was yielded, so the receiver can compute its lag. It ends
 * in ";" because the segmenter rightly holds back a trailing digit (it may still become a keycap
 * emoji), which would split a token that ended in one across two segments.
 */
export function timestampToken(at: number): string {
  return ` t${at.toFixed(1)};`;
}

const TOKEN_TIMESTAMP = /t(\d{10,}\.\d);/g;

/** Every timestamp carried by the complete timestamp tokens in `text`, and the text after the last. */
export function tokenTimestamps(text: string): number[];
export function tokenTimestamps(text: string, withRest: true): { timestamps: number[]; rest: string };
export function tokenTimestamps(text: string, withRest?: true): number[] | { timestamps: number[]; rest: string } {
  const timestamps: number[] = [];
  let end = 0;
  for (const match of text.matchAll(TOKEN_TIMESTAMP)) {
    timestamps.push(Number(match[1]));
    end = match.index + match[0].length;
  }
  return withRest ? { timestamps, rest: text.slice(end) } : timestamps;
}

export interface TokenGeneratorOptions {
  tokens: number;
  /** Token i is due at start + i × intervalMs (an absolute schedule: timer drift does not add up). */
  intervalMs: number;
  /** The text of token i; default a timestamp token. */
  token?: (index: number, at: number) => string;
  /** Called right before token `index` is yielded, with the wall-clock time. */
  onToken?: (request: GenerationRequest, index: number, at: number) => void;
}

/**
 * A generator that costs nothing but timers: `tokens` pieces, the first at once, then one every
 * `intervalMs`. Stands in for an LLM whose streaming parse cost is not what is measured here.
 */
export function createTokenGenerator(options: TokenGeneratorOptions): ReplyGenerator {
  const token = options.token ?? ((_index: number, at: number) => timestampToken(at));
  return {
    name: "bench-tokens",
    async *generate(request: GenerationRequest, signal: AbortSignal): AsyncIterable<string> {
      const start = wallClock();
      for (let index = 0; index < options.tokens; index += 1) {
        const wait = start + index * options.intervalMs - wallClock();
        if (wait >= 1) await sleepFor(Math.round(wait), undefined, { signal });
        const at = wallClock();
        options.onToken?.(request, index, at);
        yield token(index, at);
      }
    },
  };
}

export interface SignedRequest {
  headers: Record<string, string>;
  body: string;
}

/** A correctly signed user→bot TEXT message copy with a fresh msgidServer, as NIM would POST it. */
export function signedTextCallback(input: {
  from: string;
  text: string;
  msgidServer?: string;
  curTime?: number;
}): SignedRequest & { msgidServer: string } {
  const msgidServer = input.msgidServer ?? newMessageIdServer();
  const body = JSON.stringify(buildMessageCopy({ from: input.from, to: BOT, body: input.text, msgidServer }));
  const signature = signCallback({ appSecret: APP_SECRET, body, curTime: input.curTime ?? Date.now() });
  return {
    msgidServer,
    body,
    headers: { "content-type": "application/json", AppKey: APP_KEY, ...signature },
  };
}

/** `count` signed callbacks from `users` distinct senders, built before the load starts. */
export function signedCallbackPool(count: number, users = 1000): SignedRequest[] {
  const pool: SignedRequest[] = new Array(count);
  const curTime = Date.now();
  for (let index = 0; index < count; index += 1) {
    const { headers, body } = signedTextCallback({
      from: `u_bench_${index % users}`,
      text: `你好, benchmark message ${index}`,
      curTime,
    });
    pool[index] = { headers, body };
  }
  return pool;
}

/** Resident set size of a process in bytes, from /proc (Linux). */
export function residentBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc (Linux; 100 ticks per second). */
export function cpuMilliseconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Open file descriptors of a process (sockets included), from /proc (Linux). */
export function openDescriptors(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/**
 * Samples a process's RSS and open descriptors every `everyMs` until stopped; reports the peaks and
 * the last RSS.
 */
export function sampleResident(
  pid: number,
  everyMs = 200,
): { stop(): { peak: number; last: number; peakDescriptors: number } } {
  let peak = residentBytes(pid) ?? 0;
  let last = peak;
  let peakDescriptors = openDescriptors(pid) ?? 0;
  const sample = () => {
    const value = residentBytes(pid);
    if (value !== undefined) {
      last = value;
      if (value > peak) peak = value;
    }
    peakDescriptors = Math.max(peakDescriptors, openDescriptors(pid) ?? 0);
  };
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peak, last, peakDescriptors };
    },
  };
}

/** CPU use of a process over an interval, as a fraction of one core. */
export function cpuMeter(pid: number): { stop(): number | undefined } {
  const startedAt = performance.now();
  const startCpu = cpuMilliseconds(pid);
  return {
    stop() {
      const endCpu = cpuMilliseconds(pid);
      if (startCpu === undefined || endCpu === undefined) return undefined;
      return (endCpu - startCpu) / (performance.now() - startedAt);
    },
  };
}

function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((sum, value) => sum + value, 0);
    // idle and iowait are not busy
    return { busy: total - fields[3]! - fields[4]!, total };
  } catch {
    return undefined;
  }
}

/**
 * CPU busy on the whole machine over an interval, in cores. Subtracting what the benchmark's own
 * processes used tells how much other work (other engineers' test runs …) competed for the cores.
 */
export function machineCpuMeter(cores = cpus().length): { stop(): number | undefined } {
  const start = machineTicks();
  return {
    stop() {
      const end = machineTicks();
      if (!start || !end || end.total === start.total) return undefined;
      return ((end.busy - start.busy) / (end.total - start.total)) * cores;
    },
  };
}

/** Sum of CPU used by every process named `name` (e.g. PostgreSQL's backends), in ms. */
export function cpuMillisecondsOfProcessesNamed(name: string): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== name) continue;
    } catch {
      continue;
    }
    total += cpuMilliseconds(Number(entry)) ?? 0;
  }
  return total;
}

export function loadAverage(): number[] {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
  } catch {
    return [];
  }
}
