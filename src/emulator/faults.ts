/**
 * Fault injection for the emulator: queued one-off faults (`emulator.faults.push(...)`) and a random
 * fault rate. A fault applies either **before** the request is processed (the request never reached
 * NIM: nothing is recorded) or **after** it (NIM accepted and recorded it, but the answer is lost,
 * late or replaced by an error: how real lost responses behave, and why retried sends can duplicate).
 *
 * @example
 * emulator.faults.push({ path: "msg/sendMsg.action", kind: "code", code: 500, times: 2 });
 * emulator.faults.push({ path: "msg/sendMsg.action", kind: "delay", ms: 2_000, when: "after" });
 * emulator.faults.push({ kind: "drop" }); // the next request to any path
 */
import type { NimEmulatorState } from "./state.ts";

export type FaultWhen = "before" | "after";

export type FaultAction =
  /** HTTP 200 with `{"code":code,"desc":desc}`, NIM's way of reporting an error. */
  | { kind: "code"; code: number; desc?: string }
  /** A non-2xx answer from "in front of" NIM (gateway, load balancer). Body defaults to an HTML page. */
  | { kind: "http-status"; status: number; body?: string; headers?: Record<string, string> }
  /**
   * Holds the request for `ms`. Before: if the client gave up meanwhile, the request is dropped
   * unprocessed; otherwise it is processed normally. After: processed first, answered late.
   */
  | { kind: "delay"; ms: number }
  /** Destroys the connection without an answer. */
  | { kind: "drop" };

export type FaultRule = FaultAction & {
  /** A classic path such as "msg/sendMsg.action"; omitted: any path. */
  path?: string;
  /** Default "before". */
  when?: FaultWhen;
  /** How many matching requests it hits (default 1; Infinity for all). */
  times?: number;
};

export interface RandomFaults {
  /** Probability in [0, 1] that a request gets a fault. */
  rate: number;
  /** The faults to choose from, uniformly. */
  kinds: Array<FaultAction & { when?: FaultWhen }>;
  /** Restrict to these paths; omitted: all. */
  paths?: string[];
  /** Uniform in [0, 1); pass createSeededRandom(seed) for reproducible runs. Default Math.random. */
  random?: () => number;
}

/**
 * Faults of the message-copy callback (消息抄送), NIM → bridge. Real NIM may deliver a copy twice
 * (a lost acknowledgement, a redelivery) and late, so the bridge must de-duplicate on msgidServer
 * and answer fast; these knobs make both happen on demand.
 */
export interface CallbackFaults {
  /** Probability in [0, 1] that a delivered copy is POSTed once more (same body, re-signed). */
  duplicateProbability?: number;
  /** Added before the first attempt of every copy, ms. */
  delayMs?: number;
  /** Uniform in [0, 1); default Math.random. */
  random?: () => number;
}

/** Takes the first queued fault for this path and phase, consuming one of its `times`. */
export function takeQueuedFault(state: NimEmulatorState, path: string, when: FaultWhen): FaultRule | undefined {
  const index = state.faults.findIndex(
    (fault) => (fault.path === undefined || fault.path === path) && (fault.when ?? "before") === when,
  );
  if (index < 0) return undefined;
  const fault = state.faults[index]!;
  const remaining = (fault.times ?? 1) - 1;
  if (remaining <= 0) state.faults.splice(index, 1);
  else fault.times = remaining;
  return fault;
}

/** Draws at most one random fault for a request (once, so before/after are decided together). */
export function drawRandomFault(
  state: NimEmulatorState,
  path: string,
): (FaultAction & { when?: FaultWhen }) | undefined {
  const settings = state.settings.randomFaults;
  if (!settings || settings.kinds.length === 0 || settings.rate <= 0) return undefined;
  if (settings.paths && !settings.paths.includes(path)) return undefined;
  const random = settings.random ?? Math.random;
  if (random() >= settings.rate) return undefined;
  return settings.kinds[Math.min(settings.kinds.length - 1, Math.floor(random() * settings.kinds.length))];
}

/** mulberry32: a tiny deterministic PRNG, so a flaky-looking random-fault run can be replayed. */
export function createSeededRandom(seed: number): () => number {
  let value = seed >>> 0;
  return () => {
    value = (value + 0x6d2b79f5) >>> 0;
    let mixed = value;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** NIM's usual desc for a code, when a fault does not name one. */
export function defaultDescription(code: number): string {
  switch (code) {
    case 408:
      return "request timeout";
    case 414:
      return "parameter error";
    case 416:
      return "frequency control";
    case 431:
      return "HTTP request repeated";
    case 500:
      return "server error";
    case 503:
      return "server busy";
    case 514:
      return "service unavailable";
    default:
      return "error";
  }
}

/**
 * The fault that hits a request before NIM processes it: a queued one first, else the random
 * draw when it is a "before" fault. The random draw that is an "after" fault is returned too, so
 * the caller applies it once the request is processed.
 */
export function selectFaults(
  state: NimEmulatorState,
  path: string,
): {
  before: FaultRule | (FaultAction & { when?: FaultWhen }) | undefined;
  randomAfter: (FaultAction & { when?: FaultWhen }) | undefined;
} {
  const randomFault = drawRandomFault(state, path);
  const randomIsBefore = (randomFault?.when ?? "before") === "before";
  return {
    before: takeQueuedFault(state, path, "before") ?? (randomIsBefore ? randomFault : undefined),
    randomAfter: randomIsBefore ? undefined : randomFault,
  };
}
