/**
 * The bot accounts must exist at NIM before they can send. Creating them at every start is
 * idempotent: NIM answers "already register" when one exists. A failure is logged, not fatal, so a
 * NIM outage at start does not stop the callback intake (replies resume once NIM answers).
 */
import type { Logger } from "pino";
import { isAlreadyRegisteredError } from "./errors.ts";
import type { NimClient } from "./types.ts";

export async function ensureBotAccounts(
  nim: NimClient,
  bots: ReadonlyArray<{ accid: string; name?: string }>,
  logger: Pick<Logger, "info" | "warn">,
): Promise<void> {
  for (const bot of bots) {
    try {
      await nim.createAccount({ accid: bot.accid, name: bot.name ?? "AI Bot" }, { deadlineMs: 10_000 });
      logger.info({ bot: bot.accid }, "bot account created at NIM");
    } catch (error) {
      if (isAlreadyRegisteredError(error)) continue;
      logger.warn({ bot: bot.accid, err: error }, "could not make sure the bot account exists at NIM");
    }
  }
}
