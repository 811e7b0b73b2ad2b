/**
 * Starts a benchmark process (bridge-child.ts, bare-child.ts or the load client client-child.ts) in
 * its own Node process, so the load generator and the server never share an event loop, and talks to
 * it over the IPC channel.
 */
import { type ChildProcess, fork } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./common.ts";

export interface ChildReady {
  url: string;
  pid: number;
  queue?: string;
  database?: string;
  redisConfigured?: boolean;
}

export interface ChildStats {
  monotonicMicros: number;
  eventLoopDelayMs: { p50: number; p99: number; max: number; mean: number };
  rss: number;
  heapUsed: number;
  /** Peaks since the last reset, sampled every 250 ms inside the child. */
  peaks: { heapTotal: number; heapUsed: number; external: number };
  sends: { count: number; p50: number; p99: number; max: number; outcomes: Record<string, number> };
}

export interface BenchChild {
  readonly ready: ChildReady;
  readonly process: ChildProcess;
  output(): string;
  /** The child's CLOCK_MONOTONIC in µs (the time base of its CPU profile). */
  mark(): Promise<number>;
  /** Restarts the event-loop-delay histogram and the send statistics; returns the child's monotonic µs. */
  reset(): Promise<{ monotonicMicros: number }>;
  stats(): Promise<ChildStats>;
  /** Sends a command with a payload (the load client's commands) and waits for its answer. */
  call<T>(type: string, payload: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /**
   * Asks for a clean exit (so a CPU profile is written); kills it (by its own pid) after 15 s.
   * Resolves with the CPU profiles written, one per thread (see {@link StartChildOptions.cpuProfileName}).
   */
  stop(): Promise<string[]>;
}

export interface StartChildOptions {
  script: "bridge-child.ts" | "bare-child.ts" | "client-child.ts";
  env: Record<string, string>;
  /** Writes V8 CPU profiles of the child into this directory on exit. */
  cpuProfileDirectory?: string;
  /**
   * The main thread's profile (`x.cpuprofile`); every other thread's goes beside it as
   * `x.thread-<id>.cpuprofile` (the reply thread, tsx's loader-hooks thread).
   */
  cpuProfileName?: string;
}

/**
 * `--cpu-prof` names a file `CPU.<date>.<time>.<pid>.<thread id>.<sequence>.cpuprofile`; thread 0
 * is the main thread.
 */
export function profileThreadId(fileName: string, pid: number): number | undefined {
  const match = new RegExp(`\\.${pid}\\.(\\d+)\\.\\d+\\.cpuprofile$`).exec(fileName);
  return match ? Number(match[1]) : undefined;
}

/** Where the profile of thread `threadId` goes, given the main thread's name. */
export function threadProfileName(mainName: string, threadId: number): string {
  return threadId === 0 ? mainName : mainName.replace(/\.cpuprofile$/, `.thread-${threadId}.cpuprofile`);
}

export async function startChild(options: StartChildOptions): Promise<BenchChild> {
  const execArgv = ["--import", "tsx"];
  // Every thread writes its own profile (tsx's loader hooks and the reply thread are worker
  // threads): they go to a scratch directory and are moved to names by thread on exit.
  const scratch = options.cpuProfileDirectory ? mkdtempSync(join(options.cpuProfileDirectory, ".scratch-")) : undefined;
  if (scratch) execArgv.push("--cpu-prof", `--cpu-prof-dir=${scratch}`);
  const child = fork(join(REPO_ROOT, "bench", options.script), [], {
    cwd: REPO_ROOT,
    execArgv,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  let output = "";
  child.stdout?.on("data", (data: Buffer) => {
    output = (output + data.toString()).slice(-20_000);
  });
  child.stderr?.on("data", (data: Buffer) => {
    output = (output + data.toString()).slice(-20_000);
  });

  let nextId = 1;
  const pending = new Map<number, (value: unknown) => void>();
  const ready = await new Promise<ChildReady>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${options.script} did not start in 30 s:\n${output}`)), 30_000);
    child.on("message", (message: { id?: number; type?: string } & Partial<ChildReady>) => {
      if (message.type === "ready") {
        clearTimeout(timer);
        resolve(message as ChildReady);
        return;
      }
      if (message.id !== undefined) {
        pending.get(message.id)?.(message);
        pending.delete(message.id);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${options.script} exited with ${code} before it was ready:\n${output}`));
    });
  });

  const request = <T>(type: string, timeoutMs = 10_000, payload: Record<string, unknown> = {}): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (child.exitCode !== null) {
        reject(new Error(`${options.script} already exited:\n${output}`));
        return;
      }
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`${options.script} did not answer ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, (value) => {
        clearTimeout(timer);
        resolve(value as T);
      });
      child.send({ ...payload, id, type });
    });

  return {
    ready,
    process: child,
    output: () => output,
    mark: async () => (await request<{ monotonicMicros: number }>("mark")).monotonicMicros,
    reset: () => request<{ monotonicMicros: number }>("reset"),
    stats: () => request<ChildStats>("stats"),
    call: <T>(type: string, payload: Record<string, unknown>, timeoutMs = 120_000) =>
      request<T>(type, timeoutMs, payload),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        child.send({ id: nextId++, type: "stop" });
        const killTimer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(killTimer);
      }
      const written: string[] = [];
      if (scratch && options.cpuProfileDirectory && child.pid !== undefined && existsSync(scratch)) {
        const mainName = options.cpuProfileName ?? `bridge-${child.pid}.cpuprofile`;
        for (const name of readdirSync(scratch).sort()) {
          const threadId = profileThreadId(name, child.pid);
          if (threadId === undefined) continue;
          const target = join(options.cpuProfileDirectory, threadProfileName(mainName, threadId));
          renameSync(join(scratch, name), target);
          written.push(target);
        }
        rmSync(scratch, { recursive: true, force: true });
      }
      return written;
    },
  };
}
