/**
 * The bots of this deployment, looked up by accid. Built once at start (src/bots/index.ts) and
 * shared by the callback route (is this message to, or from, a bot?), the reply pipeline (whose
 * prompt and generator?), the team mention helpers and `/im/register` (its `bots` list).
 *
 * @example
 * const registry = new BotRegistry(bots, "advisor_bot");
 * registry.find("Advisor_Bot")?.systemPrompt; // accids are case-insensitive, as at NIM
 * registry.summaries();                       // [{ accid: "advisor_bot", name: "顾问" }, …]
 */
import type { BotDefinition, BotSummary } from "./types.ts";

export class BotRegistry {
  /** Every bot, in the order they were declared. */
  readonly all: readonly BotDefinition[];
  /** NIM_BOT_ACCID, else the first bot: the `bot` of `/im/register` and the demo page's first choice. */
  readonly default: BotDefinition;
  private readonly byAccid: ReadonlyMap<string, BotDefinition>;

  constructor(bots: readonly BotDefinition[], defaultAccid?: string) {
    if (bots.length === 0) throw new Error("BotRegistry: at least one bot is needed");
    const byAccid = new Map<string, BotDefinition>();
    for (const bot of bots) {
      const accid = bot.accid.toLowerCase();
      if (byAccid.has(accid)) throw new Error(`BotRegistry: accid ${accid} is declared twice`);
      byAccid.set(accid, { ...bot, accid });
    }
    this.byAccid = byAccid;
    this.all = Object.freeze([...byAccid.values()]);
    const wanted = defaultAccid === undefined ? this.all[0] : byAccid.get(defaultAccid.toLowerCase());
    if (!wanted) throw new Error(`BotRegistry: the default bot ${defaultAccid} is not one of the bots`);
    this.default = wanted;
  }

  /** The bot with this accid, compared case-insensitively; undefined for anyone else. */
  find(accid: string | undefined): BotDefinition | undefined {
    return accid === undefined ? undefined : this.byAccid.get(accid.toLowerCase());
  }

  /** Whether this accid is one of the bots (a message *from* a bot is never answered). */
  isBot(accid: string | undefined): boolean {
    return this.find(accid) !== undefined;
  }

  /** Every bot's accid, lower-cased, in declaration order (to ensure each account at start). */
  accids(): string[] {
    return this.all.map((bot) => bot.accid);
  }

  /** `/im/register`'s `bots`: accid and name only, never a prompt, URL or key. */
  summaries(): BotSummary[] {
    return this.all.map((bot) => ({ accid: bot.accid, name: bot.name }));
  }
}
