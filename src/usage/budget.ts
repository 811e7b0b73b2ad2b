/**
 * Daily token budgets: USER_DAILY_TOKEN_BUDGET for every user, and a per-bot budget
 * (`budgetFor(botAccid)`: BOT_DAILY_TOKEN_BUDGET for the default bot, `daily_token_budget` of a
 * bot in BOTS_FILE). A budget is spent when the day's stored usage has reached it; the message
 * that finds it spent is answered with status `limited` (src/reply/admission.ts).
 *
 * The check reads the sums before answering, so the reply that crosses a budget is still answered
 * in full: budgets stop the next question, never cut an answer in the middle.
 *
 * @module
 */
import { dayOf } from "./day.ts";
import type { UsageRepository } from "./repository.ts";
import type { BudgetExhausted, TokenBudget } from "./types.ts";

export interface TokenBudgetOptions {
  usage: Pick<UsageRepository, "spent">;
  /** Tokens per user per day; 0 or undefined: no user budget. */
  userDailyTokens?: number | undefined;
  /** Tokens per bot per day; undefined or 0: no budget for that bot. */
  budgetFor?: ((botAccid: string) => number | undefined) | undefined;
  timeZone: string;
}

/** Undefined when no budget is configured at all, so admission skips the check. */
export function createTokenBudget(options: TokenBudgetOptions): TokenBudget | undefined {
  const userLimit = options.userDailyTokens ?? 0;
  if (userLimit <= 0 && !options.budgetFor) return undefined;
  return {
    async exhausted({ userAccid, botAccid, now }): Promise<BudgetExhausted | undefined> {
      const day = dayOf(now, options.timeZone);
      if (userLimit > 0) {
        const spent = await options.usage.spent({ userAccid }, day);
        if (spent >= userLimit) return { scope: "user", limit: userLimit, spent };
      }
      const botLimit = options.budgetFor?.(botAccid) ?? 0;
      if (botLimit > 0) {
        const spent = await options.usage.spent({ botAccid }, day);
        if (spent >= botLimit) return { scope: "bot", limit: botLimit, spent };
      }
      return undefined;
    },
  };
}

/** What a user whose budget (or whose bot's) is spent is told, with status `limited`. */
export const budgetSpentText =
  "今天的用量额度已用完，请明天再来。\nToday's usage budget is used up; please come back tomorrow.";
