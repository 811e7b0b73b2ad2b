/**
 * The `reply_usage` table (migration 0004_usage): one row per answered reply with its tokens,
 * user, bot and day, and the sums the usage page, the CSV export and the daily budgets read.
 *
 * @module
 */
import { sql } from "kysely";
import { type Database, runWrite } from "../storage/database.ts";
import type { ReplyUsage } from "./types.ts";

export interface DailyUsage {
  day: string;
  replies: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Replies whose numbers are estimates. */
  estimatedReplies: number;
}

export interface UserUsage {
  userAccid: string;
  replies: number;
  totalTokens: number;
}

/** One line of the CSV export: a day, a bot and a user. */
export interface UsageLine {
  day: string;
  botAccid: string;
  userAccid: string;
  replies: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  estimatedReplies: number;
}

export class UsageRepository {
  constructor(private readonly database: Database) {}

  /**
   * Adds what one generation cost. A reply generated again after a crash costs again, so a
   * second record for the same reply adds to its row instead of replacing it.
   */
  async record(usage: ReplyUsage, day: string): Promise<void> {
    const total = usage.promptTokens + usage.completionTokens;
    await runWrite(
      this.database,
      this.database.kysely
        .insertInto("reply_usage")
        .values({
          reply_to: usage.replyTo,
          conversation_id: usage.conversationId,
          bot_accid: usage.botAccid,
          user_accid: usage.userAccid,
          day,
          prompt_tokens: usage.promptTokens,
          completion_tokens: usage.completionTokens,
          total_tokens: total,
          estimated: usage.estimated ? 1 : 0,
          created_at: usage.at,
          updated_at: usage.at,
        })
        .onConflict((conflict) =>
          conflict.column("reply_to").doUpdateSet({
            prompt_tokens: sql`reply_usage.prompt_tokens + ${usage.promptTokens}`,
            completion_tokens: sql`reply_usage.completion_tokens + ${usage.completionTokens}`,
            total_tokens: sql`reply_usage.total_tokens + ${total}`,
            estimated: usage.estimated ? 1 : sql`reply_usage.estimated`,
            updated_at: usage.at,
          }),
        ),
    );
  }

  /** Tokens spent on `day` by a user or by a bot. */
  async spent(filter: { userAccid?: string; botAccid?: string }, day: string): Promise<number> {
    let query = this.database.kysely
      .selectFrom("reply_usage")
      .select((expression) =>
        expression.fn.coalesce(expression.fn.sum<number>("total_tokens"), sql<number>`0`).as("sum"),
      )
      .where("day", "=", day);
    if (filter.userAccid !== undefined) query = query.where("user_accid", "=", filter.userAccid);
    if (filter.botAccid !== undefined) query = query.where("bot_accid", "=", filter.botAccid);
    const row = await query.executeTakeFirst();
    return Number(row?.sum ?? 0);
  }

  /** Sums per day from `fromDay` to `toDay` (inclusive), oldest first; days without use are absent. */
  async perDay(fromDay: string, toDay: string, botAccid?: string): Promise<DailyUsage[]> {
    let query = this.database.kysely
      .selectFrom("reply_usage")
      .select((expression) => [
        "day",
        expression.fn.countAll<number>().as("replies"),
        expression.fn.sum<number>("prompt_tokens").as("prompt"),
        expression.fn.sum<number>("completion_tokens").as("completion"),
        expression.fn.sum<number>("total_tokens").as("total"),
        expression.fn.sum<number>("estimated").as("estimated"),
      ])
      .where("day", ">=", fromDay)
      .where("day", "<=", toDay);
    if (botAccid) query = query.where("bot_accid", "=", botAccid);
    const rows = await query.groupBy("day").orderBy("day").execute();
    return rows.map((row) => ({
      day: row.day,
      replies: Number(row.replies),
      promptTokens: Number(row.prompt),
      completionTokens: Number(row.completion),
      totalTokens: Number(row.total),
      estimatedReplies: Number(row.estimated),
    }));
  }

  /** The users who spent the most tokens in the range, most first. */
  async topUsers(fromDay: string, toDay: string, limit: number, botAccid?: string): Promise<UserUsage[]> {
    let query = this.database.kysely
      .selectFrom("reply_usage")
      .select((expression) => [
        "user_accid",
        expression.fn.countAll<number>().as("replies"),
        expression.fn.sum<number>("total_tokens").as("total"),
      ])
      .where("day", ">=", fromDay)
      .where("day", "<=", toDay);
    if (botAccid) query = query.where("bot_accid", "=", botAccid);
    const rows = await query
      .groupBy("user_accid")
      .orderBy(sql`sum(total_tokens)`, "desc")
      .orderBy("user_accid")
      .limit(limit)
      .execute();
    return rows.map((row) => ({
      userAccid: row.user_accid,
      replies: Number(row.replies),
      totalTokens: Number(row.total),
    }));
  }

  /** Per day, bot and user: what the CSV export lists. */
  async lines(fromDay: string, toDay: string): Promise<UsageLine[]> {
    const rows = await this.database.kysely
      .selectFrom("reply_usage")
      .select((expression) => [
        "day",
        "bot_accid",
        "user_accid",
        expression.fn.countAll<number>().as("replies"),
        expression.fn.sum<number>("prompt_tokens").as("prompt"),
        expression.fn.sum<number>("completion_tokens").as("completion"),
        expression.fn.sum<number>("total_tokens").as("total"),
        expression.fn.sum<number>("estimated").as("estimated"),
      ])
      .where("day", ">=", fromDay)
      .where("day", "<=", toDay)
      .groupBy(["day", "bot_accid", "user_accid"])
      .orderBy("day")
      .orderBy("bot_accid")
      .orderBy("user_accid")
      .execute();
    return rows.map((row) => ({
      day: row.day,
      botAccid: row.bot_accid,
      userAccid: row.user_accid,
      replies: Number(row.replies),
      promptTokens: Number(row.prompt),
      completionTokens: Number(row.completion),
      totalTokens: Number(row.total),
      estimatedReplies: Number(row.estimated),
    }));
  }

  /** The usage rows of some replies (the conversation page shows tokens per reply). */
  async forReplies(replyTos: readonly string[]) {
    if (replyTos.length === 0) return [];
    return this.database.kysely.selectFrom("reply_usage").selectAll().where("reply_to", "in", replyTos).execute();
  }
}
