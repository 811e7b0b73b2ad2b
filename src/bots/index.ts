/**
 * The bots of a deployment: from `BOTS_FILE` when set, else the single bot `NIM_BOT_ACCID` with the
 * environment's generator and prompt (contract: "Several bots"). The composition root calls
 * `loadBots(config)` once at start and `createBotGenerators(registry)` for one generator per bot.
 *
 * @example
 * const registry = loadBots(config);               // throws ConfigurationError naming every problem
 * const generators = createBotGenerators(registry); // Map accid → ReplyGenerator
 * generators.get(registry.default.accid);
 */
import { type Config, ConfigurationError } from "../config/index.ts";
import { createGenerator, type GeneratorSettings, type ReplyGenerator } from "../generators/index.ts";
import { type BotDefaults, readBotsFile } from "./file.ts";
import { BotRegistry } from "./registry.ts";
import type { BotDefinition } from "./types.ts";

export {
  BOT_NAME_MAX_LENGTH,
  BOTS_FILE_MAX_BYTES,
  BOTS_MAX,
  type BotDefaults,
  parseBotsFile,
  readBotsFile,
} from "./file.ts";
export { BotRegistry } from "./registry.ts";
export type { BotDefinition, BotGeneratorSettings, BotLimits, BotSummary } from "./types.ts";

export interface LoadBotsOptions {
  /** Where a relative BOTS_FILE is resolved; default the working directory. */
  cwd?: string;
}

/** The environment's settings every bot falls back to. */
export function botDefaultsOf(config: Config): BotDefaults {
  return {
    generator: config.generator,
    limits: { replyPerMinute: config.limits.replyPerMinute, replyPerDay: config.limits.replyPerDay },
    defaultAccid: config.nim.botAccid,
  };
}

/** The registry for this configuration; throws ConfigurationError when there is no usable bot. */
export function loadBots(config: Config, options: LoadBotsOptions = {}): BotRegistry {
  const defaults = botDefaultsOf(config);
  if (config.conversation.botsFile !== undefined) {
    const parsed = readBotsFile(config.conversation.botsFile, defaults, options.cwd);
    return new BotRegistry(parsed.bots, parsed.defaultAccid);
  }
  const accid = config.nim.botAccid;
  if (accid === undefined) {
    throw new ConfigurationError(["NIM_BOT_ACCID: required when BOTS_FILE is not set (the one bot's accid)"]);
  }
  const { systemPrompt, ...generator } = config.generator;
  const bot: BotDefinition = {
    accid: accid.toLowerCase(),
    name: accid.toLowerCase(),
    systemPrompt,
    generator,
    limits: defaults.limits,
  };
  return new BotRegistry([bot], bot.accid);
}

/** The `createGenerator` settings of one bot; `extra` adds what is shared (timeouts, fetch, demo delay). */
export function generatorSettingsOf(
  bot: BotDefinition,
  extra: Omit<GeneratorSettings, "kind" | "openaiBaseUrl" | "openaiApiKey" | "openaiModel" | "httpUrl"> = {},
): GeneratorSettings {
  return { ...extra, ...bot.generator };
}

/** One generator per bot, keyed by lower-cased accid, each built by `factory` (default `createGenerator`). */
export function createBotGenerators(
  registry: BotRegistry,
  extra: Parameters<typeof generatorSettingsOf>[1] = {},
  factory: (settings: GeneratorSettings) => ReplyGenerator = createGenerator,
): Map<string, ReplyGenerator> {
  return new Map(registry.all.map((bot) => [bot.accid, factory(generatorSettingsOf(bot, extra))]));
}
