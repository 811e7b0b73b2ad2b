/**
 * The console's queries (usage, pauses, conversations) on the embedded SQLite and, when
 * reachable, on PostgreSQL: the same answers from both dialects (LIKE escapes, unions, sums).
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POSTGRES_URL, services } from "../../test/services.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories, type Repositories } from "../storage/repositories.ts";
import { createTokenBudget } from "../usage/budget.ts";
import { UsageRepository } from "../usage/repository.ts";
import { PauseRepository, pauseCheck } from "./pauses.ts";
import { ConsoleQueries } from "./queries.ts";

async function freshPostgresSchema(): Promise<string> {
  const schema = `t_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`create schema ${schema}`);
  await client.end();
  const url = new URL(POSTGRES_URL);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return url.toString();
}

const backends: Array<{ name: string; enabled: boolean; url: () => Promise<string> }> = [
  { name: "sqlite", enabled: true, url: async () => "sqlite::memory:" },
  { name: "postgres", enabled: services.postgres, url: freshPostgresSchema },
];

for (const backend of backends) {
  describe.runIf(backend.enabled)(`console storage on ${backend.name}`, () => {
    let database: Database;
    let repositories: Repositories;
    let usage: UsageRepository;
    let pauses: PauseRepository;
    let queries: ConsoleQueries;

    beforeAll(async () => {
      database = await openDatabase(await backend.url());
      repositories = createRepositories(database);
      usage = new UsageRepository(database);
      pauses = new PauseRepository(database);
      queries = new ConsoleQueries(database, usage, pauses);
    });
    afterAll(async () => {
      await database?.close();
    });

    const reply = (
      replyTo: string,
      user: string,
      bot: string,
      prompt: number,
      completion: number,
      estimated = false,
    ) => ({
      replyTo,
      conversationId: `p2p:${bot}:${user}`,
      botAccid: bot,
      userAccid: user,
      promptTokens: prompt,
      completionTokens: completion,
      estimated,
      at: 1_000,
    });

    it("adds a regenerated reply's cost to its row, and sums per user, bot and day", async () => {
      await usage.record(reply("r1", "u_a", "bot_a", 10, 5), "2026-11-01");
      await usage.record(reply("r1", "u_a", "bot_a", 10, 7, true), "2026-11-01");
      await usage.record(reply("r2", "u_b", "bot_a", 100, 50), "2026-11-01");
      await usage.record(reply("r3", "u_a", "bot_b", 1, 1), "2026-11-02");
      expect(await usage.spent({ userAccid: "u_a" }, "2026-11-01")).toBe(32);
      expect(await usage.spent({ botAccid: "bot_a" }, "2026-11-01")).toBe(182);
      expect(await usage.spent({ userAccid: "nobody" }, "2026-11-01")).toBe(0);
      expect(await usage.perDay("2026-11-01", "2026-11-02")).toEqual([
        {
          day: "2026-11-01",
          replies: 2,
          promptTokens: 120,
          completionTokens: 62,
          totalTokens: 182,
          estimatedReplies: 1,
        },
        { day: "2026-11-02", replies: 1, promptTokens: 1, completionTokens: 1, totalTokens: 2, estimatedReplies: 0 },
      ]);
      expect(await usage.topUsers("2026-11-01", "2026-11-02", 10)).toEqual([
        { userAccid: "u_b", replies: 1, totalTokens: 150 },
        { userAccid: "u_a", replies: 2, totalTokens: 34 },
      ]);
      expect((await usage.lines("2026-11-01", "2026-11-01")).map((line) => [line.botAccid, line.userAccid])).toEqual([
        ["bot_a", "u_a"],
        ["bot_a", "u_b"],
      ]);
    });

    it("finds a spent user budget first, then a spent bot budget, in the configured day", async () => {
      const noon = Date.parse("2026-11-01T04:00:00Z"); // 12:00 in Shanghai
      const budget = createTokenBudget({
        usage,
        userDailyTokens: 32,
        budgetFor: (bot) => (bot === "bot_a" ? 182 : undefined),
        timeZone: "Asia/Shanghai",
      });
      expect(await budget?.exhausted({ userAccid: "u_a", botAccid: "bot_b", now: noon })).toEqual({
        scope: "user",
        limit: 32,
        spent: 32,
      });
      expect(await budget?.exhausted({ userAccid: "u_c", botAccid: "bot_a", now: noon })).toEqual({
        scope: "bot",
        limit: 182,
        spent: 182,
      });
      expect(await budget?.exhausted({ userAccid: "u_c", botAccid: "bot_b", now: noon })).toBeUndefined();
      // The next day in Shanghai: nothing spent yet.
      expect(await budget?.exhausted({ userAccid: "u_a", botAccid: "bot_a", now: noon + 86_400_000 })).toBeUndefined();
      expect(createTokenBudget({ usage, userDailyTokens: 0, timeZone: "UTC" })).toBeUndefined();
    });

    it("keeps pauses; a conversation's own pause wins over its bot's; the hook says skip or note", async () => {
      const check = pauseCheck(pauses, "paused note");
      const message = { bot_accid: "bot_p", conversation_id: "p2p:bot_p:u_1" } as never;
      expect(await check(message)).toBeUndefined();
      await pauses.set("bot", "bot_p", "note", 1);
      expect(await check(message)).toEqual({ note: "paused note" });
      await pauses.set("conversation", "p2p:bot_p:u_1", "takeover", 2);
      expect(await check(message)).toEqual({});
      await pauses.set("conversation", "p2p:bot_p:u_1", "skip", 3);
      expect((await pauses.get("conversation", "p2p:bot_p:u_1"))?.mode).toBe("skip");
      expect(await pauses.remove("conversation", "p2p:bot_p:u_1")).toBe(true);
      expect(await pauses.remove("conversation", "p2p:bot_p:u_1")).toBe(false);
      expect(await check(message)).toEqual({ note: "paused note" });
      await pauses.remove("bot", "bot_p");
      expect(await pauses.list()).toEqual([]);
    });

    it("lists conversations by last activity and searches ids, site user ids and names literally", async () => {
      await repositories.accounts.upsert(
        { siteUserId: "Alice_1", accid: "u_alice", token: "secret-token", name: "艾丽斯" },
        1,
      );
      for (const [id, from, at] of [
        ["m1", "u_alice", 100],
        ["m2", "u_bob", 200],
        ["m3", "u_alice", 300],
      ] as const) {
        await repositories.inbox.accept({
          msgidServer: id,
          fromAccid: from,
          toAccid: "bot_q",
          text: `text ${id}`,
          msgTimestamp: at,
          now: at,
        });
      }
      await repositories.inbox.finish("m1", "done", 400);
      const all = await queries.listConversations({ limit: 10 });
      const mine = all.filter((row) => row.botAccid === "bot_q");
      expect(mine.map((row) => row.userAccid)).toEqual(["u_alice", "u_bob"]);
      expect(mine[0]).toMatchObject({
        siteUserId: "Alice_1",
        userName: "艾丽斯",
        messages: 2,
        status: "answering",
        lastText: "text m3",
      });
      expect(JSON.stringify(all)).not.toContain("secret-token");
      const byName = await queries.listConversations({ query: "艾丽", limit: 10 });
      expect(byName.map((row) => row.conversationId)).toEqual(["p2p:bot_q:u_alice"]);
      expect((await queries.listConversations({ query: "ALICE_1", limit: 10 })).length).toBe(1);
      expect((await queries.listConversations({ query: "u_bob", limit: 10 })).length).toBe(1);
      // `_` and `%` are literal: "u%b" matches nothing, "e_1" only Alice's site id.
      expect(await queries.listConversations({ query: "u%b", limit: 10 })).toEqual([]);
      expect((await queries.listConversations({ query: "e_1", limit: 10 })).map((row) => row.userAccid)).toEqual([
        "u_alice",
      ]);
      const detail = await queries.conversation("p2p:bot_q:u_alice");
      expect(detail?.exchanges.map((exchange) => exchange.msgidServer)).toEqual(["m1", "m3"]);
      expect(detail?.audit.map((row) => row.event)).toEqual(["callback.accepted", "callback.accepted"]);
      expect(await queries.conversation("not-a-conversation")).toBeUndefined();
      expect(await queries.bots()).toContain("bot_q");
    });

    it("lists audit rows by prefix with secrets redacted", async () => {
      await repositories.audit.record(
        "admin.login",
        null,
        { ip: "1.2.3.4", token: "t0ps3cret", nested: { apiKey: "k" } },
        5,
      );
      await repositories.audit.record("adminXlogin", null, {}, 6);
      const rows = await queries.audit({ prefix: "admin.", limit: 10 });
      expect(rows.map((row) => row.event)).toEqual(["admin.login"]);
      expect(rows[0]?.detail).toEqual({ ip: "1.2.3.4", token: "[redacted]", nested: { apiKey: "[redacted]" } });
    });
  });
}
