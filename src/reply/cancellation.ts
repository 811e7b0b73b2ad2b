/**
 * One abort signal per running reply, and the registry that finds it. A reply is cancelled when
 * its delivery fails, its lease is lost, the process shuts down, or the user stops it or recalls
 * the question; the reason decides what happens next (see `CancelReason`). Every unit that works
 * for the reply (generator, writer, sends) watches the same signal, so a cancelled reply closes its
 * upstream connection and starts no new NIM call.
 *
 * @module
 */

/**
 * - `delivery-failed`, `lease-lost`: stop working on it; the reply row says how far it got.
 * - `shutdown`: hand it back at once (release the lease) so another instance or the next start
 *   continues it within seconds.
 * - `stopped`, `recalled`: end it now with status `stopped` and the text sent so far.
 * - `blocked`: output moderation refused what the generator wrote.
 */
export type CancelReason = "delivery-failed" | "lease-lost" | "shutdown" | "stopped" | "recalled" | "blocked";

export class ReplyCancelledError extends Error {
  override readonly name = "ReplyCancelledError";
  constructor(readonly reason: CancelReason) {
    super(`reply cancelled: ${reason}`);
  }
}

/** The reason a signal was aborted with, when it was one of ours. */
export function cancelReasonOf(signal: AbortSignal): CancelReason | undefined {
  const reason: unknown = signal.reason;
  return reason instanceof ReplyCancelledError ? reason.reason : undefined;
}

export interface RunningReply {
  readonly replyTo: string;
  readonly conversationId: string;
  readonly controller: AbortController;
}

export class ReplyCancellations {
  private readonly byReply = new Map<string, RunningReply>();

  /** Registers a reply this process starts working on; returns its controller. */
  open(replyTo: string, conversationId: string): AbortController {
    const controller = new AbortController();
    this.byReply.set(replyTo, { replyTo, conversationId, controller });
    return controller;
  }

  has(replyTo: string): boolean {
    return this.byReply.has(replyTo);
  }

  close(replyTo: string): void {
    this.byReply.delete(replyTo);
  }

  /** Cancels one reply; false when this process is not working on it. */
  cancel(replyTo: string, reason: CancelReason): boolean {
    const running = this.byReply.get(replyTo);
    if (!running) return false;
    abort(running.controller, reason);
    return true;
  }

  /** Cancels the reply of a conversation that this process is producing, if any; returns its replyTo. */
  cancelConversation(conversationId: string, reason: CancelReason): string | undefined {
    for (const running of this.byReply.values()) {
      if (running.conversationId === conversationId) {
        abort(running.controller, reason);
        return running.replyTo;
      }
    }
    return undefined;
  }

  cancelAll(reason: CancelReason): number {
    for (const running of this.byReply.values()) abort(running.controller, reason);
    return this.byReply.size;
  }

  get size(): number {
    return this.byReply.size;
  }
}

/** Aborts with a typed reason; the first reason wins. */
export function abort(controller: AbortController, reason: CancelReason): void {
  if (!controller.signal.aborted) controller.abort(new ReplyCancelledError(reason));
}
