/**
 * What a bot is to the rest of im-bridge. Types only: the reply pipeline, the register route and
 * the team-mention helpers import this without pulling in the file reader or the generators.
 *
 * @module
 */
import type { GeneratorKind } from "../config/index.ts";

/** The generator settings of one bot, in the shape `createGenerator` (src/generators) takes. */
export interface BotGeneratorSettings {
  kind: GeneratorKind;
  openaiBaseUrl: string | undefined;
  openaiApiKey: string | undefined;
  openaiModel: string;
  httpUrl: string | undefined;
}

/** Per-bot reply limits (per asker), defaulting to REPLY_LIMIT_PER_MINUTE / REPLY_LIMIT_PER_DAY. */
export interface BotLimits {
  replyPerMinute: number;
  replyPerDay: number;
}

/** One bot, with every setting resolved (file entry first, then the environment). */
export interface BotDefinition {
  /** Lower-cased, as NIM stores accids. */
  accid: string;
  /** What users call it: shown in the demo, matched after `@` in team texts. Defaults to the accid. */
  name: string;
  systemPrompt: string;
  generator: BotGeneratorSettings;
  limits: BotLimits;
  /**
   * Tokens this bot may use per day (`daily_token_budget`; operator console, src/usage/budget.ts).
   * Absent: BOT_DAILY_TOKEN_BUDGET applies.
   */
  dailyTokenBudget?: number;
  /** BOTS_FILE `vision`: pictures go to this bot's model as image input; default BOT_VISION. */
  vision?: boolean;
}

/** What `/im/register` returns in `bots`: nothing secret. */
export interface BotSummary {
  accid: string;
  name: string;
}
