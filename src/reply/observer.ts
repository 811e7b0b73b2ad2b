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
  /** The reply ended: ok, error, blocked, limited, or failed (could not be delivered). */
  finished?(replyTo: string, status: string): void;
}
