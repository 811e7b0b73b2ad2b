/**
 * Admission's operator-console checks: pauses (skip or note) and daily token budgets.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../http/logger.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories, type InboxMessage, type Repositories } from "../storage/repositories.ts";
import type { TokenBudget } from "../usage/types.ts";
import { createAdmission } from "./admission.ts";
import { systemClock } from "./clock.ts";

describe("admission with the operator console", () => {
  let database: Database;
  let repositories: Repositories;
  let counter = 0;
  beforeEach(async () => {
    database = await openDatabase("sqlite::memory:");
    repositories = createRepositories(database);
  });
  afterEach(async () => {
    await database.close();
  });

  async function message(text: string): Promise<InboxMessage> {
    counter += 1;
    const msgidServer = `c${counter}`;
    await repositories.inbox.accept({
      msgidServer,
      fromAccid: "u_x",
      toAccid: "bot",
      text,
      msgTimestamp: counter,
      now: 1,
    });
    return (await repositories.inbox.get(msgidServer)) as InboxMessage;
  }

  const base = { clock: systemClock, logger: createLogger({ level: "silent" }) };

  it("skips a paused conversation's message but keeps it in the history, once", async () => {
    const decide = createAdmission({ repositories, ...base, paused: async () => ({}) });
    const paused = await message("is anyone there?");
    expect(await decide(paused)).toEqual({ action: "skip", reason: "paused" });
    expect(await decide(paused)).toEqual({ action: "skip", reason: "paused" });
    const history = await repositories.conversations.recent(paused.conversation_id, 10, 10_000);
    expect(history).toEqual([{ role: "user", content: "is anyone there?" }]);
    // A burst (REPLY_DEBOUNCE_MS) is judged as one text, but only this message's own text is kept.
    const first = await message("first of a burst");
    expect(await decide({ ...first, text: "first of a burst\nsecond of a burst" })).toEqual({
      action: "skip",
      reason: "paused",
    });
    const burstHistory = await repositories.conversations.recent(first.conversation_id, 10, 10_000);
    expect(burstHistory.at(-1)).toEqual({ role: "user", content: "first of a burst" });
  });

  it("answers with the pause note in note mode, and pauses even commands", async () => {
    const decide = createAdmission({ repositories, ...base, paused: async () => ({ note: "paused" }) });
    expect(await decide(await message("hello"))).toEqual({ action: "say", status: "ok", text: "paused" });
    expect(await decide(await message("/reset"))).toEqual({ action: "say", status: "ok", text: "paused" });
  });

  it("answers `limited` with the budget note once a daily budget is spent, and audits which", async () => {
    let spent = false;
    const budget: TokenBudget = {
      exhausted: async ({ userAccid, botAccid }) => {
        expect([userAccid, botAccid]).toEqual(["u_x", "bot"]);
        return spent ? { scope: "user", limit: 100, spent: 120 } : undefined;
      },
    };
    const decide = createAdmission({ repositories, ...base, budget, budgetSpentText: "budget used up" });
    expect(await decide(await message("first"))).toEqual({ action: "answer" });
    spent = true;
    const refused = await message("second");
    expect(await decide(refused)).toEqual({ action: "say", status: "limited", text: "budget used up" });
    const [row] = await repositories.audit.list({ event: "reply.limited", subject: refused.msgid_server });
    expect(JSON.parse(row?.detail ?? "{}")).toMatchObject({
      reason: "token-budget",
      scope: "user",
      limit: 100,
      spent: 120,
    });
    // Commands are not charged against budgets.
    expect((await decide(await message("/reset"))).action).toBe("reset");
  });
});
