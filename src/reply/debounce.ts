/**
 * REPLY_DEBOUNCE_MS: people type a question as a burst of short messages ("hi" · "I have a
 * question" · "about my order"). With a window set, the first message of a burst waits until no
 * further message of its conversation arrived for that long, and the burst is answered as one turn:
 * one generator request with the texts joined, one reply (to the first message). The later
 * messages are recorded as merged into it and get no reply of their own. A command (/stop, /reset)
 * or a recalled message ends the burst; it is handled on its own afterwards, and so does a message
 * from another member of a shared team conversation.
 *
 * @module
 */
import type { InboxMessage, Repositories } from "../storage/repositories.ts";
import { isResetCommand, isStopCommand } from "../turns/commands.ts";
import type { Clock } from "./clock.ts";

export interface Burst {
  /** The first message's text and every merged one, joined by newlines. */
  text: string;
  /** msgidServers merged into the first message's reply, in order. */
  merged: string[];
}

export interface GatherBurstOptions {
  repositories: Repositories;
  clock: Clock;
  debounceMs: number;
  signal: AbortSignal;
}

/** A plain text message that may start or join a burst. */
export function isMergeable(message: InboxMessage): boolean {
  return (
    message.message_type === "text" &&
    message.recalled === 0 &&
    !isStopCommand(message.text) &&
    !isResetCommand(message.text)
  );
}

/** Waits out the window (abortable) and returns the burst starting at `first`. */
export async function gatherBurst(first: InboxMessage, options: GatherBurstOptions): Promise<Burst> {
  const { clock, repositories } = options;
  for (;;) {
    const followers = takeWhileMergeable(first, await repositories.inbox.acceptedAfter(first));
    const lastArrival = Math.max(first.received_at, ...followers.map((message) => message.received_at));
    const wait = lastArrival + options.debounceMs - clock.now();
    if (wait <= 0 || options.signal.aborted) {
      return {
        text: [first.text, ...followers.map((message) => message.text)].join("\n"),
        merged: followers.map((message) => message.msgid_server),
      };
    }
    await sleep(clock, wait, options.signal);
  }
}

/**
 * A burst is one person typing: in a shared team conversation (TEAM_SESSION=team) another member's
 * message ends it, else it would be answered inside someone else's reply, which mentions only them.
 */
function takeWhileMergeable(first: InboxMessage, messages: InboxMessage[]): InboxMessage[] {
  const taken: InboxMessage[] = [];
  for (const message of messages) {
    if (!isMergeable(message) || message.from_accid !== first.from_accid) break;
    taken.push(message);
  }
  return taken;
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clock.clearTimeout(handle);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const handle = clock.setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
