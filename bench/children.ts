/**
 * Starts a benchmark server (bridge-child.ts or bare-child.ts) in its own Node process, so the load
 * generator and the server never share an event loop, and talks to it over the IPC channel.
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
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
  /** Asks for a clean exit (so a CPU profile is written); kills it (by its own pid) after 15 s. */
  stop(): Promise<void>;
}

export interface StartChildOptions {
  script: "bridge-child.ts" | "bare-child.ts";
  env: Record<string, string>;
  /** Writes a V8 CPU profile of the child into this directory on exit. */
  cpuProfileDirectory?: string;
  cpuProfileName?: string;
}

export async function startChild(options: StartChildOptions): Promise<BenchChild> {
  const execArgv = ["--import", "tsx"];
  // Every thread writes its own profile (tsx's loader hooks run on a worker thread): they go to a
  // scratch directory and the main thread's (thread id 0) is moved to the requested name on exit.
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

  const request = <T>(type: string, timeoutMs = 10_000): Promise<T> =>
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
      child.send({ id, type });
    });

  return {
    ready,
    process: child,
    output: () => output,
    mark: async () => (await request<{ monotonicMicros: number }>("mark")).monotonicMicros,
    reset: () => request<{ monotonicMicros: number }>("reset"),
    stats: () => request<ChildStats>("stats"),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.send({ id: nextId++, type: "stop" });
      const killTimer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(killTimer);
      if (scratch && options.cpuProfileDirectory) {
        const main = readdirSync(scratch).find((name) => name.endsWith(`.${child.pid}.0.001.cpuprofile`));
        if (main) {
          renameSync(
            join(scratch, main),
            join(options.cpuProfileDirectory, options.cpuProfileName ?? `bridge-${child.pid}.cpuprofile`),
          );
        }
        rmSync(scratch, { recursive: true, force: true });
      }
    },
  };
}
