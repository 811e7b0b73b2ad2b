/**
 * The reply thread's observer: its calls go to the process (reply-thread.ts replays them there).
 *
 * @module
 */
import { forwardingObserver, type ReplyObserver } from "../reply/observer.ts";
import type { ObservedCall } from "./reply-thread-messages.ts";

/**
 * An observer whose calls go to the process in batches: one message per turn of this thread's
 * event loop rather than one per call (a busy thread makes thousands of calls a second).
 */
export function createRelayObserver(send: (calls: ObservedCall[]) => void): ReplyObserver & { flush(): void } {
  let pending: ObservedCall[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending.length === 0) return;
    const calls = pending;
    pending = [];
    send(calls);
  };
  const observer = forwardingObserver((method, args) => {
    pending.push({ method, args });
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
  return Object.assign(observer, { flush });
}
