/**
 * What the reply pipeline needs from usage accounting. Imports no implementation.
 *
 * @module
 */

/** What one answered reply cost, ready to be stored. */
export interface ReplyUsage {
  replyTo: string;
  conversationId: string;
  botAccid: string;
  userAccid: string;
  promptTokens: number;
  completionTokens: number;
  /** True when the generator reported nothing and the numbers are src/usage/estimate.ts's. */
  estimated: boolean;
  at: number;
}

export interface UsageRecorder {
  record(usage: ReplyUsage): Promise<void>;
}

/** A spent daily budget: who ran out, so the note and the audit row can say which. */
export interface BudgetExhausted {
  scope: "user" | "bot";
  limit: number;
  spent: number;
}

/** Checked by admission before a message is answered (src/reply/admission.ts `budget`). */
export interface TokenBudget {
  /** Undefined when the message may be answered; otherwise which budget is spent. */
  exhausted(input: { userAccid: string; botAccid: string; now: number }): Promise<BudgetExhausted | undefined>;
}
