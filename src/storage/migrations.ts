/**
 * Migrations written once for both dialects: only portable column types (text, integer, bigint),
 * epoch-ms timestamps and JSON as text. Kysely's Migrator records what ran in kysely_migration.
 */
import {
  type ColumnDefinitionBuilder,
  type Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  sql,
} from "kysely";

export type Dialect = "sqlite" | "postgres";

/** The one place the dialects differ: an auto-numbered primary key. */
function identity(dialect: Dialect) {
  return (column: ColumnDefinitionBuilder) =>
    dialect === "sqlite" ? column.primaryKey().autoIncrement() : column.primaryKey().generatedByDefaultAsIdentity();
}

const migrations = (dialect: Dialect): Record<string, Migration> => ({
  "0001_foundation": {
    async up(database: Kysely<unknown>) {
      await database.schema
        .createTable("accounts")
        .addColumn("site_user_id", "text", (column) => column.primaryKey())
        .addColumn("accid", "text", (column) => column.notNull().unique())
        .addColumn("token", "text", (column) => column.notNull())
        .addColumn("name", "text")
        .addColumn("created_at", "bigint", (column) => column.notNull())
        .addColumn("updated_at", "bigint", (column) => column.notNull())
        .execute();

      await database.schema
        .createTable("inbox")
        .addColumn("msgid_server", "text", (column) => column.primaryKey())
        .addColumn("from_accid", "text", (column) => column.notNull())
        .addColumn("to_accid", "text", (column) => column.notNull())
        .addColumn("text", "text", (column) => column.notNull())
        .addColumn("msg_timestamp", "bigint", (column) => column.notNull())
        .addColumn("received_at", "bigint", (column) => column.notNull())
        .addColumn("status", "text", (column) => column.notNull())
        .addColumn("attempts", "integer", (column) => column.notNull().defaultTo(0))
        .addColumn("lease_owner", "text")
        .addColumn("lease_until", "bigint")
        .addColumn("error", "text")
        .addColumn("updated_at", "bigint", (column) => column.notNull())
        .execute();
      await database.schema.createIndex("inbox_status").on("inbox").columns(["status", "received_at"]).execute();

      await database.schema
        .createTable("replies")
        .addColumn("reply_to", "text", (column) => column.primaryKey())
        .addColumn("stream_id", "text", (column) => column.notNull().unique())
        .addColumn("user_accid", "text", (column) => column.notNull())
        .addColumn("state", "text", (column) => column.notNull())
        .addColumn("final_status", "text")
        .addColumn("text", "text", (column) => column.notNull())
        .addColumn("next_seq", "integer", (column) => column.notNull())
        .addColumn("created_at", "bigint", (column) => column.notNull())
        .addColumn("updated_at", "bigint", (column) => column.notNull())
        .execute();

      await database.schema
        .createTable("outbox")
        .addColumn("stream_id", "text", (column) => column.notNull())
        .addColumn("seq", "integer", (column) => column.notNull())
        .addColumn("body", "text", (column) => column.notNull())
        .addColumn("kind", "text", (column) => column.notNull())
        .addColumn("state", "text", (column) => column.notNull())
        .addColumn("nim_msgid", "text")
        .addColumn("created_at", "bigint", (column) => column.notNull())
        .addColumn("updated_at", "bigint", (column) => column.notNull())
        .addPrimaryKeyConstraint("outbox_primary_key", ["stream_id", "seq"])
        .execute();

      await database.schema
        .createTable("messages")
        .addColumn("id", "integer", identity(dialect))
        .addColumn("user_accid", "text", (column) => column.notNull())
        .addColumn("role", "text", (column) => column.notNull())
        .addColumn("content", "text", (column) => column.notNull())
        .addColumn("reply_to", "text", (column) => column.notNull())
        .addColumn("created_at", "bigint", (column) => column.notNull())
        .execute();
      await database.schema.createIndex("messages_user").on("messages").columns(["user_accid", "id"]).execute();

      await database.schema
        .createTable("conversations")
        .addColumn("user_accid", "text", (column) => column.primaryKey())
        .addColumn("context_start_message_id", "integer", (column) => column.notNull())
        .addColumn("updated_at", "bigint", (column) => column.notNull())
        .execute();

      await database.schema
        .createTable("audit_events")
        .addColumn("id", "integer", identity(dialect))
        .addColumn("at", "bigint", (column) => column.notNull())
        .addColumn("event", "text", (column) => column.notNull())
        .addColumn("subject", "text")
        .addColumn("detail", "text")
        .execute();
      await database.schema.createIndex("audit_events_event").on("audit_events").columns(["event", "at"]).execute();
    },
    async down(database: Kysely<unknown>) {
      for (const table of ["audit_events", "conversations", "messages", "outbox", "replies", "inbox", "accounts"]) {
        await database.schema.dropTable(table).ifExists().execute();
      }
    },
  },
  "0002_inbox_antispam": {
    async up(database: Kysely<unknown>) {
      // NIM's own antispam verdict on the inbound copy, kept so the worker can answer `blocked`.
      await database.schema
        .alterTable("inbox")
        .addColumn("antispam", "integer", (column) => column.notNull().defaultTo(0))
        .execute();
    },
    async down(database: Kysely<unknown>) {
      await database.schema.alterTable("inbox").dropColumn("antispam").execute();
    },
  },
  /**
   * Conversations (reply core, second design): every inbox row, reply and history turn carries its
   * conversation; replies get a durable plan and a transport state; outbox rows keep `done`, the
   * delta and the delivery options as columns; PostgreSQL ids become 64-bit like SQLite's.
   * Existing rows are all P2P (the first version had no teams): their conversation is
   * `p2p:<bot>:<user>`, the bot being the inbox row's `to_accid`.
   */
  "0003_conversations": {
    async up(database: Kysely<unknown>) {
      await database.schema
        .alterTable("inbox")
        .addColumn("conversation_id", "text", (column) => column.notNull().defaultTo(""))
        .execute();
      for (const [name, type, fallback] of [
        ["bot_accid", "text", ""],
        ["scope", "text", "p2p"],
        ["message_type", "text", "text"],
      ] as const) {
        await database.schema
          .alterTable("inbox")
          .addColumn(name, type, (column) => column.notNull().defaultTo(fallback))
          .execute();
      }
      await database.schema.alterTable("inbox").addColumn("team_id", "text").execute();
      await database.schema.alterTable("inbox").addColumn("msgid_client", "text").execute();
      await database.schema.alterTable("inbox").addColumn("payload", "text").execute();
      await database.schema
        .alterTable("inbox")
        .addColumn("recalled", "integer", (column) => column.notNull().defaultTo(0))
        .execute();
      await sql`update inbox set bot_accid = to_accid, conversation_id = 'p2p:' || to_accid || ':' || from_accid`.execute(
        database,
      );
      await database.schema
        .createIndex("inbox_conversation")
        .on("inbox")
        .columns(["conversation_id", "status", "msg_timestamp", "msgid_server"])
        .execute();

      await database.schema
        .alterTable("replies")
        .addColumn("conversation_id", "text", (column) => column.notNull().defaultTo(""))
        .execute();
      await database.schema.alterTable("replies").addColumn("plan", "text").execute();
      await database.schema.alterTable("replies").addColumn("transport_state", "text").execute();
      await sql`update replies set conversation_id = coalesce((select inbox.conversation_id from inbox where inbox.msgid_server = replies.reply_to), '')`.execute(
        database,
      );

      await database.schema
        .alterTable("outbox")
        .addColumn("delta", "text", (column) => column.notNull().defaultTo(""))
        .execute();
      await database.schema
        .alterTable("outbox")
        .addColumn("done", "integer", (column) => column.notNull().defaultTo(0))
        .execute();
      await database.schema.alterTable("outbox").addColumn("options", "text").execute();
      // The first version kept `done` only inside the body; read it out once here.
      await sql`update outbox set done = 1 where kind = 'final' and body like '%"done":true%'`.execute(database);

      await database.schema
        .alterTable("messages")
        .addColumn("conversation_id", "text", (column) => column.notNull().defaultTo(""))
        .execute();
      await sql`update messages set conversation_id = coalesce((select inbox.conversation_id from inbox where inbox.msgid_server = messages.reply_to), '')`.execute(
        database,
      );
      await database.schema
        .createIndex("messages_conversation")
        .on("messages")
        .columns(["conversation_id", "id"])
        .execute();

      await database.schema
        .createTable("conversation_contexts")
        .addColumn("conversation_id", "text", (column) => column.primaryKey())
        .addColumn("context_start_message_id", "bigint", (column) => column.notNull())
        .addColumn("updated_at", "bigint", (column) => column.notNull())
        .execute();
      await sql`insert into conversation_contexts (conversation_id, context_start_message_id, updated_at)
        select distinct messages.conversation_id, conversations.context_start_message_id, conversations.updated_at
        from conversations join messages on messages.user_accid = conversations.user_accid
        where messages.conversation_id <> ''`.execute(database);
      await database.schema.dropTable("conversations").execute();

      await database.schema.createIndex("audit_events_at").on("audit_events").column("at").execute();
      if (dialect === "postgres") {
        // SQLite's integer keys are 64-bit already; PostgreSQL's identity columns were 32-bit.
        await sql`alter table messages alter column id type bigint`.execute(database);
        await sql`alter table audit_events alter column id type bigint`.execute(database);
      }
    },
    async down() {
      throw new Error("0003_conversations cannot be undone: restore a backup instead");
    },
  },
  /**
   * Operator console (src/admin, src/usage): tokens spent per reply (user, bot, day) for usage
   * pages and daily budgets, and the pauses an operator set on a bot or one conversation.
   */
  "0004_usage": {
    async up(database: Kysely<unknown>) {
      await database.schema
        .createTable("reply_usage")
        .addColumn("reply_to", "text", (column) => column.primaryKey())
        .addColumn("conversation_id", "text", (column) => column.notNull())
        .addColumn("bot_accid", "text", (column) => column.notNull())
        .addColumn("user_accid", "text", (column) => column.notNull())
        .addColumn("day", "text", (column) => column.notNull())
        .addColumn("prompt_tokens", "bigint", (column) => column.notNull())
        .addColumn("completion_tokens", "bigint", (column) => column.notNull())
        .addColumn("total_tokens", "bigint", (column) => column.notNull())
        .addColumn("estimated", "integer", (column) => column.notNull())
        .addColumn("created_at", "bigint", (column) => column.notNull())
        .addColumn("updated_at", "bigint", (column) => column.notNull())
        .execute();
      await database.schema
        .createIndex("reply_usage_user_day")
        .on("reply_usage")
        .columns(["user_accid", "day"])
        .execute();
      await database.schema
        .createIndex("reply_usage_bot_day")
        .on("reply_usage")
        .columns(["bot_accid", "day"])
        .execute();
      await database.schema.createIndex("reply_usage_day").on("reply_usage").column("day").execute();
      await database.schema
        .createTable("console_pauses")
        .addColumn("scope", "text", (column) => column.notNull())
        .addColumn("target", "text", (column) => column.notNull())
        .addColumn("mode", "text", (column) => column.notNull())
        .addColumn("created_at", "bigint", (column) => column.notNull())
        .addPrimaryKeyConstraint("console_pauses_primary_key", ["scope", "target"])
        .execute();
    },
    async down(database: Kysely<unknown>) {
      await database.schema.dropTable("console_pauses").ifExists().execute();
      await database.schema.dropTable("reply_usage").ifExists().execute();
    },
  },
  /**
   * One statement per accepted callback (issue 13): the `callback.accepted` audit row is written by
   * the inbox insert itself. PostgreSQL does that in the insert's own data-modifying CTE
   * (InboxRepository.accept); SQLite has no such CTE, so a trigger writes the row here, with the
   * same detail text as JSON.stringify({ from, conversation }). A process of an older version on
   * the same SQLite file (during an upgrade) would write a second row per callback: stop it first.
   */
  "0005_accept_audit": {
    async up(database: Kysely<unknown>) {
      if (dialect !== "sqlite") return;
      await sql`create trigger inbox_accepted_audit after insert on inbox
        begin
          insert into audit_events (at, event, subject, detail)
          values (new.received_at, 'callback.accepted', new.msgid_server,
                  json_object('from', new.from_accid, 'conversation', new.conversation_id));
        end`.execute(database);
    },
    async down(database: Kysely<unknown>) {
      if (dialect !== "sqlite") return;
      await sql`drop trigger if exists inbox_accepted_audit`.execute(database);
    },
  },
});

class StaticMigrationProvider implements MigrationProvider {
  constructor(private readonly dialect: Dialect) {}
  async getMigrations() {
    return migrations(this.dialect);
  }
}

/**
 * Runs every migration not yet applied, or (tests of a migration) only up to `target`.
 */
export async function migrateToLatest(database: Kysely<unknown>, dialect: Dialect, target?: string): Promise<void> {
  // On PostgreSQL the migration bookkeeping lives in the connection's current schema, so a
  // deployment (or a test) that sets search_path gets its own tables, not public's.
  let migrationTableSchema: string | undefined;
  if (dialect === "postgres") {
    const result = await sql<{ schema: string }>`select current_schema() as schema`.execute(database);
    migrationTableSchema = result.rows[0]?.schema;
  }
  const migrator = new Migrator({
    db: database,
    provider: new StaticMigrationProvider(dialect),
    ...(migrationTableSchema ? { migrationTableSchema } : {}),
  });
  const { error, results } = target ? await migrator.migrateTo(target) : await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((result) => result.status === "Error");
    throw new Error(`Database migration ${failed?.migrationName ?? ""} failed: ${String(error)}`, { cause: error });
  }
}

/** Used by tests to check the database answers. */
export async function ping(database: Kysely<unknown>): Promise<void> {
  await sql`select 1`.execute(database);
}
