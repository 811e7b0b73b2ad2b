/**
 * The queue of an HTTP-only instance without Redis: nobody in this process would ever consume an
 * in-process queue (it would only grow), so the inbox row alone carries the job and the worker
 * instances' sweeper (REPLY_SWEEP_INTERVAL_MS) picks it up.
 */
import type { ReplyQueue } from "./types.ts";

export const inboxOnlyQueue: ReplyQueue = {
  enqueue: async () => {},
  start: () => {},
  stop: async () => {},
  depth: async () => 0,
};
