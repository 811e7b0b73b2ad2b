/**
 * The reply-core faults of the first version (issue 10), each reproduced end to end at the
 * boundary that failed: the callback route, the process, the database connection, the order of
 * replies in one conversation. Processor-level reproductions (resume after a crash, lease loss,
 * poison messages) are in src/reply/processor.test.ts.
 */
import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { openDatabase } from "../src/storage/database.ts";
import { BOT, type Stack, sleep, startStack } from "./harness.ts";
import { postgresUrlWithSchema } from "./multi-stack.ts";
import { POSTGRES_URL, services } from "./services.ts";

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("reply core, end to end", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it("answers two quick messages of one user one after the other, the second with the first answer in its prompt", async () => {
    stack = await startStack({
      scenario: { kind: "text", text: "One two three four five six seven eight.", pieces: 8, delayMs: 40 },
    });
    const accid = await stack.register("orderly");
    const first = await stack.send(accid, "first question");
    const second = await stack.send(accid, "second question");
    await stack.waitForReply(first);
    await stack.waitForReply(second);
    const arrivals = stack.emulator.state
      .messagesMatching({ from: BOT, type: 100 })
      .map((message) => JSON.parse(message.body) as { reply_to: string; done: boolean });
    const lastOfFirst = arrivals.map((body) => body.reply_to).lastIndexOf(first);
    const firstOfSecond = arrivals.findIndex((body) => body.reply_to === second);
    expect(firstOfSecond).toBeGreaterThan(lastOfFirst); // not interleaved
    const secondRequest = stack.openai.requests[1]?.body?.messages ?? [];
    expect(secondRequest.map((message) => message.content)).toEqual(
      expect.arrayContaining(["first question", "One two three four five six seven eight.", "second question"]),
    );
  });

  it("/stop closes the generator's connection and ends the reply with status stopped", async () => {
    stack = await startStack({ scenario: { kind: "stall", text: "Let me think about that" } });
    const accid = await stack.register("stopper");
    const asked = await stack.send(accid, "a long question");
    await until(() => stack!.delivered(asked).segments.length > 0, 10_000, "the first segment");
    const stop = await stack.send(accid, "/stop");
    const reply = await stack.waitForReply(asked, 5_000);
    expect(reply.status).toBe("stopped");
    expect(reply.finalText).toBe("Let me think about that");
    await until(() => stack!.openai.requests[0]?.disconnected === true, 2_000, "the upstream to be closed");
    // The command itself is answered by nothing: its reply was the stopped one.
    await until(
      async () => (await stack!.bridge!.repositories.inbox.get(stop))?.status === "done",
      5_000,
      "the /stop row",
    );
    expect(stack.delivered(stop).messages).toHaveLength(0);
  });

  it("answers 503 when the message cannot be stored, and answers NIM's redelivery once the database is back", async () => {
    stack = await startStack({ scenario: { kind: "text", text: "Back again." } });
    const accid = await stack.register("durable");
    const kysely = stack.bridge!.database.kysely;
    await sql`alter table inbox rename to inbox_away`.execute(kysely);
    const body = JSON.stringify(
      buildMessageCopy({ from: accid, to: BOT, body: "hello", msgidServer: newMessageIdServer() }),
    );
    const refused = await stack.postCallback(body);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: { code: "storage_unavailable" } });
    await sql`alter table inbox_away rename to inbox`.execute(kysely);
    const redelivered = await stack.postCallback(body);
    expect(redelivered.status).toBe(200);
    const msgidServer = (JSON.parse(body) as { msgidServer: string }).msgidServer;
    expect((await stack.waitForReply(msgidServer)).finalText).toBe("Back again.");
  });

  it("survives an audit write that fails on a refused callback (no floating promise)", async () => {
    stack = await startStack({ env: { CALLBACK_ALLOWED_IPS: "10.0.0.0/8" } });
    await sql`drop table audit_events`.execute(stack.bridge!.database.kysely);
    const response = await stack.postCallback("{}");
    expect(response.status).toBe(403);
    // Still serving: an unhandled rejection would have failed this test run (vitest reports it).
    await sleep(100);
    expect((await fetch(`${stack.bridgeUrl}/healthz`)).status).toBe(200);
  });

  it("audits forged callbacks at a bounded rate", async () => {
    stack = await startStack({ env: { AUDIT_REJECTED_PER_MINUTE: "5" } });
    for (let index = 0; index < 40; index += 1) {
      const response = await fetch(`${stack.bridgeUrl}/im/callback`, {
        method: "POST",
        headers: { "content-type": "application/json", CurTime: String(Date.now()), MD5: "0", CheckSum: "0" },
        body: "{}",
      });
      expect(response.status).toBe(401);
    }
    const rows = await stack.bridge!.repositories.audit.list({ event: "callback.rejected" });
    expect(rows).toHaveLength(5);
  });

  it("names in audit rows the same client address the allow-list judged (behind a trusted proxy)", async () => {
    stack = await startStack({ env: { TRUSTED_PROXIES: "127.0.0.1, ::1" } });
    const response = await fetch(`${stack.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-forwarded-for": "203.0.113.9",
        CurTime: String(Date.now()),
        MD5: "0",
        CheckSum: "0",
      },
      body: "{}",
    });
    expect(response.status).toBe(401);
    const [row] = await stack.bridge!.repositories.audit.list({ event: "callback.rejected" });
    expect(JSON.parse(row?.detail ?? "{}")).toMatchObject({ ip: "203.0.113.9" });
  });

  it("on SIGTERM exits within 10 s and hands the reply back at once; the next start finishes it", async () => {
    stack = await startStack({
      childProcess: true,
      scenario: { kind: "text", text: "x".repeat(400), pieces: 60, delayMs: 50 },
    });
    const accid = await stack.register("deploy");
    const asked = await stack.send(accid, "long answer please");
    await until(() => stack!.delivered(asked).segments.length >= 2, 15_000, "two segments");
    const child = stack.child!;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const signalledAt = Date.now();
    child.kill("SIGTERM");
    const code = await exited;
    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(10_000);
    const databaseUrl = stack.environment.DATABASE_URL as string;
    const database = await openDatabase(databaseUrl);
    const row = await database.kysely
      .selectFrom("inbox")
      .selectAll()
      .where("msgid_server", "=", asked)
      .executeTakeFirst();
    await database.close();
    expect(row).toMatchObject({ status: "processing", lease_owner: null });
    await stack.startBridge();
    const reply = await stack.waitForReply(asked, 30_000);
    expect(reply.finals.filter((body) => body.done)).toHaveLength(1);
    expect(reply.deltaText).toBe(reply.finalText);
  }, 60_000);

  it.runIf(services.postgres)("survives PostgreSQL dropping its connections and keeps answering", async () => {
    const schema = `rc_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`create schema ${schema}`);
    const application = `im_bridge_${schema}`;
    const url = new URL(postgresUrlWithSchema(POSTGRES_URL, schema));
    url.searchParams.set("application_name", application);
    try {
      stack = await startStack({
        env: { DATABASE_URL: url.toString() },
        scenario: { kind: "text", text: "Still here." },
      });
      const accid = await stack.register("pg-user");
      await stack.waitForReply(await stack.send(accid, "one"));
      // What a PostgreSQL restart does to idle pooled connections.
      const killed = await admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1",
        [application],
      );
      expect(killed.rowCount).toBeGreaterThan(0);
      await sleep(200);
      const reply = await stack.waitForReply(await stack.send(accid, "two"));
      expect(reply.finalText).toBe("Still here.");
    } finally {
      await stack?.close();
      stack = undefined;
      await admin.query(`drop schema ${schema} cascade`);
      await admin.end();
    }
  });
});
