/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, and self
 * time per origin (a package in node_modules, im-bridge's src/, Node's internals, GC …).
 *
 * Usage: `npx tsx bench/profile-summary.ts bench/results/profiles/concurrency-2000.cpuprofile [top]`
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  location: string;
  selfMs: number;
  percent: number;
}

/** A time window in the profiled process's CLOCK_MONOTONIC µs (see bridge-child.ts `mark`). */
export interface ProfileWindow {
  fromMicros: number;
  toMicros: number;
  label?: string;
}

export interface ProfileSummary {
  file: string;
  window?: ProfileWindow;
  totalMs: number;
  top: ProfileEntry[];
  byOrigin: Array<{ origin: string; selfMs: number; percent: number }>;
  /**
   * Inclusive time of im-bridge's own functions (src/): self time plus everything they called
   * synchronously. Work continued after an `await` is not included (V8 stacks end at the microtask).
   */
  sourceInclusive: ProfileEntry[];
}

function originOf(url: string, functionName: string): string {
  if (url === "") {
    if (functionName === "(garbage collector)") return "(garbage collector)";
    if (functionName === "(idle)") return "(idle)";
    if (functionName === "(program)") return "(program)";
    return "(native / V8)";
  }
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1]!;
  if (url.startsWith("node:")) {
    if (url.includes("deps/undici")) return "node: undici (fetch)";
    if (url.includes("webstreams")) return "node: web streams (fetch bodies)";
    if (url.includes("abort_controller") || url.includes("js_transferable")) return "node: AbortSignal";
    if (url.includes("crypto")) return "node: crypto";
    if (/node:(net|_http|http|internal\/(http|stream|streams|net))/.test(url)) return "node: net, http, streams";
    if (url.includes("timers")) return "node: timers";
    return "node: other internals";
  }
  const source = /\/(src|bench|test)\/(.+?)(?:\?.*)?$/.exec(url);
  if (source) return `${source[1]}/${source[2]!.split("/")[0]}`;
  return url;
}

function shortLocation(url: string, line: number): string {
  if (url === "") return "";
  const trimmed = url.replace(/^file:\/\/.*?\/(node_modules|src|bench|test)\//, "$1/");
  return `${trimmed}:${line + 1}`;
}

/** Self time per function; with `window`, only the samples taken inside it (e.g. the measured run). */
export function summarizeProfile(file: string, top = 15, window?: ProfileWindow): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byId.set(node.id, node);
  const selfMicros = new Map<number, number>();
  let timestamp = profile.startTime;
  for (let index = 0; index < profile.samples.length; index += 1) {
    const delta = profile.timeDeltas[index] ?? 0;
    timestamp += delta;
    if (window && (timestamp < window.fromMicros || timestamp > window.toMicros)) continue;
    const id = profile.samples[index]!;
    selfMicros.set(id, (selfMicros.get(id) ?? 0) + delta);
  }
  const functions = new Map<string, { name: string; location: string; micros: number }>();
  const origins = new Map<string, number>();
  let total = 0;
  for (const [id, micros] of selfMicros) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    total += micros;
    const name = functionName || "(anonymous)";
    const key = `${name}|${url}|${lineNumber}`;
    const entry = functions.get(key) ?? { name, location: shortLocation(url, lineNumber), micros: 0 };
    entry.micros += micros;
    functions.set(key, entry);
    const origin = originOf(url, functionName);
    origins.set(origin, (origins.get(origin) ?? 0) + micros);
  }
  const percent = (micros: number) => Math.round((micros / total) * 1000) / 10;

  // Inclusive time: every distinct src/ frame on the sampled stack gets the sample's time.
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map<string, { name: string; location: string; micros: number }>();
  for (const [id, micros] of selfMicros) {
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const frame = byId.get(current)?.callFrame;
      if (!frame || !/\/src\//.test(frame.url)) continue;
      const name = frame.functionName || "(anonymous)";
      const key = `${name}|${frame.url}|${frame.lineNumber}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const entry = inclusive.get(key) ?? { name, location: shortLocation(frame.url, frame.lineNumber), micros: 0 };
      entry.micros += micros;
      inclusive.set(key, entry);
    }
  }
  return {
    file,
    ...(window ? { window } : {}),
    totalMs: Math.round(total / 1000),
    top: [...functions.values()]
      .sort((left, right) => right.micros - left.micros)
      .slice(0, top)
      .map((entry) => ({
        name: entry.name,
        location: entry.location,
        selfMs: Math.round(entry.micros / 1000),
        percent: percent(entry.micros),
      })),
    byOrigin: [...origins.entries()]
      .sort((left, right) => right[1] - left[1])
      .slice(0, top)
      .map(([origin, micros]) => ({ origin, selfMs: Math.round(micros / 1000), percent: percent(micros) })),
    sourceInclusive: [...inclusive.values()]
      .sort((left, right) => right.micros - left.micros)
      .slice(0, top)
      .map((entry) => ({
        name: entry.name,
        location: entry.location,
        selfMs: Math.round(entry.micros / 1000),
        percent: percent(entry.micros),
      })),
  };
}

export function formatProfileSummary(summary: ProfileSummary): string {
  const scope = summary.window
    ? `${summary.window.label ?? "window"}: ${Math.round((summary.window.toMicros - summary.window.fromMicros) / 1000)} ms`
    : "whole process";
  // The bench names a thread's profile x.thread-<id>.cpuprofile; V8's own name ends .<pid>.<id>.<n>.cpuprofile.
  const thread =
    /\.thread-(\d+)\.cpuprofile$/.exec(summary.file) ?? /\.\d+\.(\d+)\.\d+\.cpuprofile$/.exec(summary.file);
  const which = thread && thread[1] !== "0" ? `thread ${thread[1]}` : "main thread";
  const lines = [`CPU profile ${summary.file} (${which}; ${scope}, ${summary.totalMs} ms sampled)`, "  top self time:"];
  for (const entry of summary.top) {
    lines.push(
      `    ${String(entry.percent).padStart(5)}%  ${String(entry.selfMs).padStart(6)} ms  ${entry.name}  ${entry.location}`,
    );
  }
  lines.push("  inclusive time of im-bridge functions (synchronous part):");
  for (const entry of summary.sourceInclusive) {
    lines.push(
      `    ${String(entry.percent).padStart(5)}%  ${String(entry.selfMs).padStart(6)} ms  ${entry.name}  ${entry.location}`,
    );
  }
  lines.push("  self time by origin:");
  for (const entry of summary.byOrigin) {
    lines.push(`    ${String(entry.percent).padStart(5)}%  ${String(entry.selfMs).padStart(6)} ms  ${entry.origin}`);
  }
  return lines.join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]");
    process.exit(1);
  }
  console.log(formatProfileSummary(summarizeProfile(file, Number(process.argv[3] ?? 15))));
}
