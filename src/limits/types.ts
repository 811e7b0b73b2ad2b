/**
 * Rate limits for the HTTP layer and the reply pipeline. One interface for the in-memory backend
 * (one process) and the Redis backend (shared by every instance). Imports no implementation.
 */

/** Whether an action may go ahead; if not, how long until the key's window opens again. */
export type RateLimitDecision = { allowed: true } | { allowed: false; retryAfterMs: number };

export interface RateLimit {
  /**
   * Counts `points` (default 1) against `key` and says whether that stayed within the limit.
   * A refused call still counts in the current window (callers that keep retrying do not get
   * through sooner). Rejects only when the backing store fails, never for "over the limit".
   */
  consume(key: string, points?: number): Promise<RateLimitDecision>;
}

/** A send rate shared per group (e.g. per NIM API): callers wait for their turn instead of failing. */
export interface SendBudget {
  /**
   * Resolves when one send in `group` may go. Rejects with the signal's reason when `signal`
   * aborts, and with a timeout error when the turn would not come within the budget's maximum wait.
   */
  acquire(group: string, signal?: AbortSignal): Promise<void>;
}
