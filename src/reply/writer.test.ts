/**
 * The writer against the real storage (SQLite, and PostgreSQL when it answers) with every
 * statement counted: what one streamed segment costs the database, and that folding a delivered
 * message's "sent" mark (and the native transport's in-flight marker) into the next commit keeps
 * the outbox's promises across a crash: a resent message is identical (custom) or continues in a
 * replacement stream message (native), and exactly one final arrives.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { POSTGRES_URL, services } from "../../test/services.ts";
import { createLogger } from "../http/logger.ts";
import type { NimClient, NimSendMessageRequest } from "../nim/types.ts";
import type { NimV2Client } from "../nim/v2-client.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories, type Reply, type Repositories } from "../storage/repositories.ts";
import { freshPostgresSchema } from "../testing/postgres-schema.ts";
import { StatementLog } from "../testing/statement-log.ts";
import { systemClock } from "./clock.ts";
import { createCustomTransport } from "./transport/custom.ts";
import { messageClientIdOf, NativeStreamTransport } from "./transport/native.ts";
import type { ReplyAddress, ReplyTransport } from "./transport/types.ts";
import { ReplyWriter } from "./writer.ts";

const logger = createLogger({ level: "silent" });

/** Records what the custom transport hands NIM. */
class CustomNim {
  readonly sent: NimSendMessageRequest[] = [];
  readonly client = {
    sendMessage: async (request: NimSendMessageRequest) => {
      this.sent.push(request);
      return { msgid: String(this.sent.length), timetag: 1 };
    },
  } as unknown as NimClient;

  bodies(): Array<{ seq: number; done: boolean; body: string }> {
    return this.sent.map((request) => {
      const text = typeof request.body === "string" ? request.body : JSON.stringify(request.body);
      const body = JSON.parse(text) as { seq: number; done: boolean };
      return { seq: body.seq, done: body.done, body: text };
    });
  }
}

interface WireStream {
  clientId: string;
  serverId: string;
  chunks: Array<{ index: number; text: string; finish: number }>;
}

/**
 * NIM's stream messages as far as the writer can get them wrong: chunk 0 opens a stream message
 * under its client id, later chunks name its server id; a repeated client id or a chunk whose index
 * is not the next one is recorded as a violation (undefined behaviour at NIM).
 */
class StreamNim {
  readonly streams: WireStream[] = [];
  readonly violations: string[] = [];
  readonly client: NimV2Client = {
    sendStreamMessageChunk: async (_conversationId, requestText) => {
      const request = JSON.parse(requestText) as {
        message: {
          message_client_id?: string;
          message_server_id?: number;
          attachment: { text: string; index: number; finish: number };
        };
      };
      const { attachment } = request.message;
      let stream: WireStream | undefined;
      if (request.message.message_client_id !== undefined) {
        const clientId = request.message.message_client_id;
        if (this.streams.some((known) => known.clientId === clientId))
          this.violations.push(`client id ${clientId} reused`);
        stream = { clientId, serverId: String(5000 + this.streams.length), chunks: [] };
        this.streams.push(stream);
      } else {
        stream = this.streams.find((known) => known.serverId === String(request.message.message_server_id));
        if (!stream) throw new Error("unknown stream message");
      }
      const expected = stream.chunks.length;
      if (attachment.index !== expected) this.violations.push(`index ${attachment.index} where ${expected} was next`);
      stream.chunks.push({ index: attachment.index, text: attachment.text, finish: attachment.finish });
      return { messageServerId: stream.serverId };
    },
  };

  textOf(stream: WireStream): string {
    return stream.chunks.map((chunk) => chunk.text).join("");
  }
}

const backends = [
  { name: "sqlite", enabled: true, url: async () => "sqlite::memory:" },
  { name: "postgres", enabled: services.postgres, url: () => freshPostgresSchema(POSTGRES_URL) },
];

for (const backend of backends) {
  describe.runIf(backend.enabled)(`reply writer on ${backend.name}`, () => {
    let database: Database;
    let repositories: Repositories;
    const log = new StatementLog();

    beforeEach(async () => {
      database = await openDatabase(await backend.url(), { onStatement: log.record });
      repositories = createRepositories(database);
    });
    afterEach(async () => {
      await database.close();
    });

    /** One commit is one transaction on SQLite and one autocommitted statement on PostgreSQL. */
    function expectCommitsAsTransactions(count: number) {
      if (database.dialect === "sqlite") expect(log.transactions).toBe(count);
    }

    async function newReply(): Promise<Reply> {
      return repositories.replies.getOrCreate(
        {
          replyTo: "m1",
          streamId: "stream-1",
          userAccid: "alice",
          conversationId: "p2p:bot:alice",
          plan: '{"action":"answer"}',
        },
        0,
      );
    }

    /** A writer for the reply row as it is stored now (a restarted worker reads it afresh). */
    async function writerFor(transport: ReplyTransport): Promise<ReplyWriter> {
      const reply = (await repositories.replies.get("m1")) ?? (await newReply());
      const address: ReplyAddress = {
        botAccid: "bot",
        scope: "p2p",
        to: "alice",
        askerAccid: "alice",
        replyTo: "m1",
        streamId: reply.stream_id,
      };
      return new ReplyWriter({
        address,
        reply,
        transport,
        repositories,
        clock: systemClock,
        logger,
        deliverySignal: new AbortController().signal,
        onDeliveryFailed: () => {},
      });
    }

    async function outboxStates() {
      return (await repositories.replies.outbox("stream-1")).map((row) => [row.seq, row.state]);
    }

    describe("custom segments", () => {
      it("costs one transaction per segment; the final adds its commit and its sent mark", async () => {
        const nim = new CustomNim();
        const writer = await writerFor(createCustomTransport({ nim: nim.client }));
        log.clear();
        const segments = 6;
        for (let index = 0; index < segments; index += 1) await writer.writeSegment(`part ${index} `);
        expect(log.commits).toBe(segments);
        expectCommitsAsTransactions(segments);
        expect(await writer.writeFinal("ok")).toBe(true);
        // Before folding: two commits per segment (the commit, then the mark), 2 × 6 + 2 in all.
        expect(log.commits).toBe(segments + 2);
        expect(nim.sent).toHaveLength(segments + 1);
        expect((await outboxStates()).every(([, state]) => state === "sent")).toBe(true);
        // The outbox keeps NIM's id of every message, folded or not.
        const ids = (await repositories.replies.outbox("stream-1")).map((row) => row.nim_msgid);
        expect(ids).toEqual(nim.sent.map((_, index) => String(index + 1)));
      });

      it("after a crash between a delivery and its folded mark, resends that segment identically once, then one final", async () => {
        const nim = new CustomNim();
        const transport = createCustomTransport({ nim: nim.client });
        const first = await writerFor(transport);
        for (const delta of ["Hello", " there", ", friend"]) await first.writeSegment(delta);
        // The process dies here: seq 2 reached NIM, its mark was owed to the next commit.
        expect(await outboxStates()).toEqual([
          [0, "sent"],
          [1, "sent"],
          [2, "pending"],
        ]);

        const restarted = await writerFor(transport);
        await restarted.resendPending();
        expect(await restarted.writeFinal("ok")).toBe(true);

        const sent = nim.bodies();
        expect(sent.map((entry) => entry.seq)).toEqual([0, 1, 2, 2, 3]);
        // The resend carries exactly the committed body (clients drop the repeated (stream_id, seq)).
        expect(sent[3]?.body).toBe(sent[2]?.body);
        expect(sent.filter((entry) => entry.done)).toHaveLength(1);
        expect(JSON.parse(sent.at(-1)?.body ?? "{}")).toMatchObject({ done: true, text: "Hello there, friend" });
        expect((await outboxStates()).every(([, state]) => state === "sent")).toBe(true);
      });

      it("a reply whose final was marked sent resends nothing after a restart", async () => {
        const nim = new CustomNim();
        const transport = createCustomTransport({ nim: nim.client });
        const first = await writerFor(transport);
        await first.writeSegment("Done soon");
        expect(await first.writeFinal("ok")).toBe(true);
        const restarted = await writerFor(transport);
        await restarted.resendPending();
        expect(nim.sent).toHaveLength(2);
        expect(nim.bodies().filter((entry) => entry.done)).toHaveLength(1);
      });

      it("settle writes the marks still owed in one statement (a reply handed back at shutdown)", async () => {
        const nim = new CustomNim();
        const transport = createCustomTransport({ nim: nim.client });
        const writer = await writerFor(transport);
        await writer.writeSegment("one");
        await writer.writeSegment("two");
        log.clear();
        await writer.settle();
        expect(log.data).toHaveLength(1);
        expect(log.commits).toBe(1);
        expect(await outboxStates()).toEqual([
          [0, "sent"],
          [1, "sent"],
        ]);
        // The next worker has nothing to resend.
        await (await writerFor(transport)).resendPending();
        expect(nim.sent).toHaveLength(2);
        log.clear();
        await writer.settle();
        expect(log.statements).toHaveLength(0);
      });
    });

    describe("native stream messages", () => {
      it("stores the in-flight marker with the chunk's commit: one commit per chunk", async () => {
        const nim = new StreamNim();
        const writer = await writerFor(new NativeStreamTransport({ nim: nim.client }));
        log.clear();
        await writer.writeSegment("chunk 0 ");
        // Chunk 0's answer names the stream message: that server id is stored at once, the later
        // chunks need it after a restart.
        expect(log.commits).toBe(2);
        const chunks = 5;
        for (let index = 1; index < chunks; index += 1) await writer.writeSegment(`chunk ${index} `);
        // Before folding: the commit, the in-flight marker and the mark, three per chunk.
        expect(log.commits).toBe(chunks + 1);
        expect(await writer.writeFinal("ok")).toBe(true);
        expect(log.commits).toBe(chunks + 3);
        expect(nim.violations).toEqual([]);
        expect(nim.streams).toHaveLength(1);
        expect(nim.streams[0]?.chunks.map((chunk) => chunk.finish)).toEqual([0, 0, 0, 0, 0, 1]);
        const state = JSON.parse((await repositories.replies.get("m1"))?.transport_state ?? "{}") as Record<
          string,
          string
        >;
        expect(state["native.inflight"]).toBe(String(chunks));
        expect((await outboxStates()).every(([, rowState]) => rowState === "sent")).toBe(true);
      });

      it("after a crash with a delivered chunk still unmarked, continues in a replacement, never repeating an index", async () => {
        const nim = new StreamNim();
        const transport = new NativeStreamTransport({ nim: nim.client });
        const first = await writerFor(transport);
        for (const delta of ["one ", "two ", "three "]) await first.writeSegment(delta);
        // Dies here: chunk 2 reached NIM; its mark was owed, its in-flight marker is stored.
        expect((await outboxStates()).at(-1)).toEqual([2, "pending"]);

        const restarted = await writerFor(new NativeStreamTransport({ nim: nim.client }));
        await restarted.resendPending();
        await restarted.writeSegment("four");
        expect(await restarted.writeFinal("ok")).toBe(true);

        expect(nim.violations).toEqual([]);
        expect(nim.streams.map((stream) => stream.clientId)).toEqual([
          messageClientIdOf("stream-1", 0),
          messageClientIdOf("stream-1", 1),
        ]);
        const [abandoned, replacement] = nim.streams;
        expect(nim.textOf(abandoned!)).toBe("one two three ");
        expect(abandoned!.chunks.every((chunk) => chunk.finish === 0)).toBe(true);
        // The replacement repeats what the uncertain chunk's stream message held, so it is whole.
        expect(nim.textOf(replacement!)).toBe("one two three four");
        expect(replacement!.chunks.filter((chunk) => chunk.finish === 1)).toHaveLength(1);
        expect((await outboxStates()).every(([, state]) => state === "sent")).toBe(true);
      });

      it("a chunk committed whose call died goes into a replacement after a restart, no index repeated", async () => {
        const nim = new StreamNim();
        const failing: NimV2Client = {
          sendStreamMessageChunk: async (conversationId, requestText, options) => {
            if (nim.streams.flatMap((stream) => stream.chunks).length === 2) throw new Error("process died");
            return nim.client.sendStreamMessageChunk(conversationId, requestText, options);
          },
        };
        const first = await writerFor(new NativeStreamTransport({ nim: failing }));
        await first.writeSegment("a");
        await first.writeSegment("b");
        await expect(first.writeSegment("c")).rejects.toThrow("process died");

        const restarted = await writerFor(new NativeStreamTransport({ nim: nim.client }));
        await restarted.resendPending();
        expect(await restarted.writeFinal("ok")).toBe(true);
        expect(nim.violations).toEqual([]);
        expect(nim.textOf(nim.streams.at(-1)!)).toBe("abc");
        expect(nim.streams.at(-1)!.chunks.at(-1)?.finish).toBe(1);
      });
    });
  });
}
