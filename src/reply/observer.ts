/**
 * Hooks the reply pipeline calls at each step of a turn, so metrics and tests can watch a reply
 * without the pipeline knowing about Prometheus. Imports no implementation.
 */
export interface ReplyObserver {
  /**
   * The pipeline began a reply. `acceptedAt` (epoch ms, the pipeline's clock) is when the callback
   * was accepted (the inbox row's received_at), so first-segment latency includes queueing; without
   * it latencies count from this call.
   */
  started?(replyTo: string, acceptedAt?: number): void;
  /** Milliseconds from the start of generation to its first text piece. */
  firstToken?(replyTo: string, milliseconds: number): void;
  /** The first NIM message of the reply was accepted by NIM. */
  firstSegment?(replyTo: string): void;
  /** One NIM send finished: outcome "ok" or NIM's code. */
  sent?(kind: string, outcome: string, milliseconds: number): void;
  generatorError?(kind: string): void;
  /**
   * The reply ended: ok, error, blocked, limited, stopped, skipped, or failed (could not be
   * delivered). `bot` is the answering bot; `conversationId` names its conversation (the operator
   * console's live view).
   */
  finished?(replyTo: string, status: string, bot?: string, conversationId?: string): void;
  /**
   * NIM accepted a message of the reply that added `text` to it (a segment, or a say/apology
   * delta): the operator console shows replies live from this. Called after the outbox row is
   * marked sent, so the console never shows text the user has not been sent.
   */
  delta?(replyTo: string, conversationId: string, text: string): void;
}

/** Every hook of {@link ReplyObserver}: what a combined or relayed observer passes on. */
export const OBSERVER_METHODS = [
  "started",
  "firstToken",
  "firstSegment",
  "sent",
  "generatorError",
  "finished",
  "delta",
] as const satisfies ReadonlyArray<keyof ReplyObserver>;

/** An observer whose every hook calls `forward(name, args)`. */
export function forwardingObserver(
  forward: (name: keyof ReplyObserver, args: unknown[]) => void,
): Required<ReplyObserver> {
  const observer: Record<string, (...args: unknown[]) => void> = {};
  for (const name of OBSERVER_METHODS) observer[name] = (...args) => forward(name, args);
  return observer as unknown as Required<ReplyObserver>;
}

/** Calls hook `name` of `observer` with `args`, if it has that hook. */
export function callObserver(observer: ReplyObserver, name: keyof ReplyObserver, args: unknown[]): void {
  (observer[name] as ((...values: unknown[]) => void) | undefined)?.apply(observer, args);
}

/** One observer that calls each of `observers` in turn (metrics, tests). */
export function combineObservers(...observers: Array<ReplyObserver | undefined>): ReplyObserver {
  const present = observers.filter((observer): observer is ReplyObserver => observer !== undefined);
  return forwardingObserver((name, args) => {
    for (const observer of present) callObserver(observer, name, args);
  });
}
