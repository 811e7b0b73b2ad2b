import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../http/logger.ts";
import { createRateLimit } from "../limits/index.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories, type InboxMessage, type Repositories } from "../storage/repositories.ts";
import { createAdmission } from "./admission.ts";
import { systemClock } from "./clock.ts";
import { blockedText, nothingToStopText, resetConfirmationText } from "./messages.ts";

describe("admission", () => {
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

  async function message(text: string, extra: { payload?: string; antispam?: boolean } = {}): Promise<InboxMessage> {
    counter += 1;
    const msgidServer = `a${counter}`;
    await repositories.inbox.accept({
      msgidServer,
      fromAccid: "u_x",
      toAccid: "bot",
      text,
      msgTimestamp: counter,
      now: 1,
      ...extra,
    });
    return (await repositories.inbox.get(msgidServer)) as InboxMessage;
  }

  const base = { clock: systemClock, logger: createLogger({ level: "silent" }) };

  it("plans an answer for ordinary text", async () => {
    const decide = createAdmission({ repositories, ...base });
    expect(await decide(await message("hello"))).toEqual({ action: "answer" });
  });

  it("plans reset, stop notes and skips for commands and recalls", async () => {
    const decide = createAdmission({ repositories, ...base });
    expect(await decide(await message(" /RESET "))).toEqual({ action: "reset", text: resetConfirmationText });
    expect(await decide(await message("停止"))).toEqual({ action: "say", status: "ok", text: nothingToStopText });
    expect(await decide(await message("/stop", { payload: '{"stopped":"a1"}' }))).toEqual({
      action: "skip",
      reason: "stop command",
    });
    const recalled = await message("hello");
    await repositories.inbox.markRecalled(recalled.msgid_server, 2);
    expect(await decide((await repositories.inbox.get(recalled.msgid_server)) as InboxMessage)).toEqual({
      action: "skip",
      reason: "recalled",
    });
  });

  it("refuses blocked input, NIM-flagged input and input over the limits, and audits each", async () => {
    const decide = createAdmission({
      repositories,
      ...base,
      respectNimAntispam: true,
      moderator: {
        checkInput: async (text) => (text.includes("bad") ? { allowed: false, reason: "keyword" } : { allowed: true }),
        checkOutput: async () => ({ allowed: true }),
      },
      replyLimits: createRateLimit({ points: 1, durationSeconds: 60, keyPrefix: "admission-test" }),
    });
    expect(await decide(await message("fine", { antispam: true }))).toEqual({
      action: "say",
      status: "blocked",
      text: blockedText,
    });
    expect(await decide(await message("bad words"))).toEqual({ action: "say", status: "blocked", text: blockedText });
    const limited = await decide(await message("one more"));
    expect(limited).toMatchObject({ action: "say", status: "limited" });
    expect(await repositories.audit.list({ event: "reply.blocked" })).toHaveLength(2);
    expect(await repositories.audit.list({ event: "reply.limited" })).toHaveLength(1);
  });
});
