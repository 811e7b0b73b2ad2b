/**
 * What the process and its reply thread say to each other (reply-thread.ts, reply-thread-entry.ts).
 * Imports no implementation.
 *
 * @module
 */
import type { Config } from "../config/index.ts";
import type { ReplyObserver } from "../reply/observer.ts";

/** What the thread is started with (`workerData`): plain data, so it can be cloned. */
export interface ReplyThreadData {
  config: Config;
  /** BridgeOverrides.generatorModule, when one is given. */
  generatorModule: string | undefined;
}

export type ObserverMethod = keyof ReplyObserver;

/** One call of the thread's observer, replayed on the process's observer (metrics, console, tests). */
export interface ObservedCall {
  method: ObserverMethod;
  args: unknown[];
}

export type ToReplyThread =
  | { type: "job"; msgidServer: string }
  | { type: "cancel"; replyTo: string; reason: "stopped" | "recalled" }
  | { type: "stop" };

export type FromReplyThread =
  | { type: "ready" }
  | { type: "observed"; calls: ObservedCall[] }
  | { type: "depth"; depth: number }
  | { type: "stopped" }
  | { type: "failed"; message: string };
