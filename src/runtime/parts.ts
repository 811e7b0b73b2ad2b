/**
 * Parts that both the process (`createBridge`) and the reply thread build from the configuration,
 * in one place so the two cannot drift apart.
 *
 * @module
 */
import { type BotRegistry, createBotGenerators } from "../bots/index.ts";
import type { Config } from "../config/index.ts";
import type { ReplyGenerator } from "../generators/types.ts";
import type { Logger } from "../http/logger.ts";
import { createModerator, type Moderator } from "../moderation/index.ts";
import { createNimClient, type NimClassicClient } from "../nim/client.ts";
import type { NimHttpSender } from "../nim/http.ts";

/** NIM's classic API client with the configured timeouts and retry policy. */
export function nimClientFromConfig(
  config: Config,
  transport: { http: NimHttpSender } | { fetch: typeof fetch },
  logger: Logger,
): NimClassicClient {
  const { appKey, appSecret } = config.nim;
  if (!appKey || !appSecret) throw new Error("NIM_APP_KEY and NIM_APP_SECRET are required");
  return createNimClient({
    appKey,
    appSecret,
    apiBase: config.nim.apiBase,
    timeoutMs: config.nim.requestTimeoutMs,
    retry: { maxAttempts: config.nim.retryMaxAttempts, deadlineMs: config.nim.retryDeadlineMs },
    ...transport,
    logger,
  });
}

/** The keyword file and HTTP hook moderators (MODERATION_*); undefined when none is configured. */
export function moderatorFromConfig(config: Config, logger: Logger): Moderator | undefined {
  return createModerator({
    keywordFile: config.moderation.keywordFile,
    httpUrl: config.moderation.httpUrl,
    httpTimeoutMs: config.moderation.httpTimeoutMs,
    failOpen: config.moderation.failOpen,
    logger,
  });
}

/** Each bot's generator: one given generator for every bot, or each bot's own (BOTS_FILE). */
export function botGenerators(
  registry: BotRegistry,
  override: ReplyGenerator | undefined,
): ReadonlyMap<string, ReplyGenerator> {
  return override ? new Map(registry.all.map((bot) => [bot.accid, override])) : createBotGenerators(registry);
}
