/**
 * The reply processor with fakes at its edges (a recording transport, scripted generators) and the
 * real storage on SQLite. Each test here reproduces one fault of the first pipeline (see issue 10)
 * and proves the second design fixes it: crashes are simulated by a transport that throws an
 * unexpected error (the process "dies" with its lease held) and a second processor that takes the
 * reply over once the lease ran out.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { GenerationRequest, ReplyGenerator } from "../generators/types.ts";
import { createLogger } from "../http/logger.ts";
import type { Moderator } from "../moderation/types.ts";
import { NimError } from "../nim/errors.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories, type Repositories } from "../storage/repositories.ts";
import { systemClock } from "./clock.ts";
import { REGENERATED_MARKER } from "./generation.ts";
import { ManualClock, settlePromises } from "./manual-clock.ts";
import { apologyText, blockedText, resetConfirmationText } from "./messages.ts";
import type { ReplyObserver } from "./observer.ts";
import { createReplyProcessor, type ReplyProcessorOptions } from "./processor.ts";
import { createCustomTransport } from "./transport/custom.ts";
import type { OutboundMessage, ReplyAddress, ReplyTransport } from "./transport/types.ts";

const BOT = "advisor_bot";

/** Blocks any text containing `word`, input and output alike. */
function blockingModerator(word: string): Moderator {
  const check = async (text: string) =>
    text.includes(word) ? { allowed: false as const, reason: `keyword:${word}` } : { allowed: true as const };
  return { checkInput: check, checkOutput: check };
}
const logger = createLogger({ level: "silent" });

/** Stands for the process dying mid-reply: nothing catches it, the lease stays held. */
class SimulatedCrash extends Error {}

interface Sent {
  replyTo: string;
  message: OutboundMessage;
}

/** The custom transport's encoding with delivery recorded instead of sent; faults on demand. */
class RecordingTransport implements ReplyTransport {
  readonly mode = "custom" as const;
  readonly sent: Sent[] = [];
  private readonly inner = createCustomTransport({
    nim: {
      sendMessage: async () => ({ msgid: "1", timetag: 1 }),
    } as never,
  });
  /** Called before each delivery; may throw (a crash, a NIM refusal) or wait. */
  fault: ((message: OutboundMessage, count: number) => Promise<void> | void) | undefined;
  private deliveries = 0;

  maxDeltaCharacters(address: ReplyAddress) {
    return this.inner.maxDeltaCharacters(address);
  }
  encodeSegment(address: ReplyAddress, input: Parameters<ReplyTransport["encodeSegment"]>[1]) {
    return this.inner.encodeSegment(address, input);
  }
  encodeFinal(address: ReplyAddress, input: Parameters<ReplyTransport["encodeFinal"]>[1]) {
    return this.inner.encodeFinal(address, input);
  }
  async deliver(address: ReplyAddress, message: OutboundMessage) {
    this.deliveries += 1;
    await this.fault?.(message, this.deliveries);
    this.sent.push({ replyTo: address.replyTo, message });
    return { nimMessageId: String(this.deliveries) };
  }
  finals(replyTo: string) {
    return this.sent.filter((entry) => entry.replyTo === replyTo && entry.message.done).map((entry) => entry.message);
  }
  status(replyTo: string) {
    const final = this.finals(replyTo).at(-1);
    return final ? (JSON.parse(final.body) as { status: string }).status : undefined;
  }
  text(replyTo: string) {
    const seen = new Map<number, string>();
    for (const entry of this.sent) if (entry.replyTo === replyTo) seen.set(entry.message.seq, entry.message.delta);
    return [...seen.entries()]
      .sort(([left], [right]) => left - right)
      .map(([, delta]) => delta)
      .join("");
  }
}

/** Yields `pieces` one by one, `delayMs` apart; records requests, pieces consumed and its signal. */
class ScriptedGenerator implements ReplyGenerator {
  readonly name = "scripted";
  readonly requests: GenerationRequest[] = [];
  consumed = 0;
  lastSignal: AbortSignal | undefined;
  constructor(
    public pieces: string[],
    private readonly delayMs = 0,
  ) {}
  async *generate(request: GenerationRequest, signal: AbortSignal) {
    this.requests.push(request);
    this.lastSignal = signal;
    for (const piece of this.pieces) {
      if (signal.aborted) return;
      if (this.delayMs) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      this.consumed += 1;
      yield piece;
    }
  }
}

describe("reply processor", () => {
  let database: Database;
  let repositories: Repositories;
  let transport: RecordingTransport;
  let generator: ScriptedGenerator;
  let enqueued: string[];

  beforeEach(async () => {
    database = await openDatabase("sqlite::memory:");
    repositories = createRepositories(database);
    transport = new RecordingTransport();
    generator = new ScriptedGenerator(["Hello", " there", "."]);
    enqueued = [];
  });
  afterEach(async () => {
    await database.close();
  });

  function processor(overrides: Partial<ReplyProcessorOptions> = {}, workerId = "worker-a") {
    return createReplyProcessor({
      repositories,
      transport,
      bot: (accid) => (accid === BOT ? { accid: BOT, systemPrompt: "be brief", generator } : undefined),
      pacingMs: 0,
      idleTimeoutMs: 10_000,
      totalTimeoutMs: 20_000,
      historyTurns: 20,
      historyCharacters: 8_000,
      maxAttempts: 5,
      clock: systemClock,
      logger,
      workerId,
      leaseMs: 30_000,
      enqueue: async (job) => {
        enqueued.push(job.msgidServer);
      },
      ...overrides,
    });
  }

  async function accept(msgidServer: string, text: string, msgTimestamp = 1, from = "u_alice") {
    await repositories.inbox.accept({ msgidServer, fromAccid: from, toAccid: BOT, text, msgTimestamp, now: 1 });
  }

  /** Lets another worker take the reply over, as if the crashed one's lease ran out. */
  async function expireLease(msgidServer: string) {
    const row = await repositories.inbox.get(msgidServer);
    if (row?.lease_owner) await repositories.inbox.renewLease(msgidServer, row.lease_owner, -1_000);
  }

  it("answers, records both turns and schedules the conversation's next message", async () => {
    await accept("m1", "hi", 1);
    await accept("m2", "again", 2);
    await processor().process({ msgidServer: "m1" });
    expect(transport.status("m1")).toBe("ok");
    expect(transport.text("m1")).toBe("Hello there.");
    expect(await repositories.inbox.get("m1")).toMatchObject({ status: "done", lease_owner: null });
    expect(enqueued).toEqual(["m2"]);
    await processor().process({ msgidServer: "m2" });
    // The later message's request holds the earlier exchange.
    expect(generator.requests[1]?.history).toEqual([
      { role: "user", content: "hi" },
      { role: "assistant", content: "Hello there." },
    ]);
  });

  it("does not start a later message of a conversation while an earlier one is unanswered", async () => {
    await accept("m1", "first", 1);
    await accept("m2", "second", 2);
    await processor().process({ msgidServer: "m2" });
    expect(transport.sent).toHaveLength(0);
    expect(generator.requests).toHaveLength(0);
    expect(await repositories.inbox.get("m2")).toMatchObject({ status: "accepted", attempts: 0 });
  });

  it("a reply resumed after a crash follows its refusal plan: never generates an answer to blocked input", async () => {
    const moderator = blockingModerator("forbidden");
    await accept("m1", "tell me the forbidden thing");
    transport.fault = (message) => {
      if (message.kind === "segment") throw new SimulatedCrash("process died after the refusal's first segment");
    };
    await expect(processor({ moderator }).process({ msgidServer: "m1" })).rejects.toThrow(SimulatedCrash);
    transport.fault = undefined;
    await expireLease("m1");
    // The next worker has no moderator at all: it must not decide again, only follow the plan.
    await processor({}, "worker-b").process({ msgidServer: "m1" });
    expect(generator.requests).toHaveLength(0);
    expect(transport.status("m1")).toBe("blocked");
    expect(transport.text("m1")).toBe(blockedText);
  });

  it("a /reset resumed after a crash sends its confirmation once", async () => {
    await accept("m1", "/reset");
    transport.fault = (message) => {
      if (message.kind === "segment") throw new SimulatedCrash("died");
    };
    await expect(processor().process({ msgidServer: "m1" })).rejects.toThrow(SimulatedCrash);
    transport.fault = undefined;
    await expireLease("m1");
    await processor({}, "worker-b").process({ msgidServer: "m1" });
    const segments = transport.sent.filter((entry) => entry.message.kind === "segment");
    expect(new Set(segments.map((entry) => entry.message.seq)).size).toBe(1);
    expect(transport.text("m1")).toBe(resetConfirmationText);
    expect(transport.status("m1")).toBe("ok");
  });

  it("a resumed answer that regenerates differently continues after a visible marker", async () => {
    await accept("m1", "hi");
    generator.pieces = ["First ", "try"];
    transport.fault = (message, count) => {
      if (message.kind === "segment" && count === 2) throw new SimulatedCrash("died mid-answer");
    };
    await expect(processor().process({ msgidServer: "m1" })).rejects.toThrow(SimulatedCrash);
    transport.fault = undefined;
    await expireLease("m1");
    generator.pieces = ["Another answer"];
    await processor({}, "worker-b").process({ msgidServer: "m1" });
    const finalText = (JSON.parse(transport.finals("m1")[0]?.body ?? "{}") as { text: string }).text;
    expect(finalText.startsWith("First ")).toBe(true);
    expect(finalText).toContain(`${REGENERATED_MARKER}Another answer`);
    expect(transport.text("m1")).toBe(finalText);
  });

  it("stops the generator at once when NIM refuses a segment for good", async () => {
    generator = new ScriptedGenerator(
      Array.from({ length: 50 }, (_, index) => `p${index} `),
      5,
    );
    await accept("m1", "hi");
    transport.fault = (message) => {
      if (message.kind === "segment") throw new NimError("api", 403, "forbidden", false, "msg/sendMsg.action");
    };
    await processor().process({ msgidServer: "m1" });
    expect(generator.lastSignal?.aborted).toBe(true);
    expect(generator.consumed).toBeLessThan(10);
    expect(await repositories.inbox.get("m1")).toMatchObject({ status: "failed" });
    expect(await repositories.audit.list({ event: "reply.send_failed" })).not.toHaveLength(0);
  });

  it("stops the generator when the lease is taken over, and sends nothing more", async () => {
    generator = new ScriptedGenerator(
      Array.from({ length: 50 }, (_, index) => `p${index} `),
      20,
    );
    await accept("m1", "hi");
    const running = processor({ leaseMs: 300 }).process({ msgidServer: "m1" });
    await new Promise((resolve) => setTimeout(resolve, 150));
    // Another worker takes the row (as after a long pause of this one): the renewal finds it gone.
    await expireLease("m1");
    expect(await repositories.inbox.claim("m1", "worker-thief", 60_000)).toBeDefined();
    await running;
    expect(generator.lastSignal?.aborted).toBe(true);
    expect(generator.consumed).toBeLessThan(50);
    expect(transport.finals("m1")).toHaveLength(0);
  });

  it("at shutdown aborts generation and releases the lease at once for another worker", async () => {
    generator = new ScriptedGenerator(
      Array.from({ length: 200 }, (_, index) => `p${index} `),
      10,
    );
    await accept("m1", "hi");
    const shutdown = new AbortController();
    const running = processor().process({ msgidServer: "m1" }, shutdown.signal);
    while (transport.sent.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    shutdown.abort();
    await running;
    expect(generator.lastSignal?.aborted).toBe(true);
    // Released and the attempt refunded: no waiting for a lease to run out.
    expect(await repositories.inbox.get("m1")).toMatchObject({ status: "processing", lease_owner: null, attempts: 0 });
    // Every delivered segment is marked sent before the hand-over, also the last one, whose mark
    // would otherwise have waited for a next commit.
    const delivered = new Set(transport.sent.map((entry) => entry.message.seq));
    const streamId = (await repositories.replies.get("m1"))?.stream_id ?? "";
    const rows = await repositories.replies.outbox(streamId);
    expect(rows.filter((row) => delivered.has(row.seq)).map((row) => row.state)).toEqual(
      [...delivered].map(() => "sent"),
    );
    generator = new ScriptedGenerator(["done"]);
    await processor({}, "worker-b").process({ msgidServer: "m1" });
    expect(transport.finals("m1")).toHaveLength(1);
    expect(transport.status("m1")).toBe("ok");
    // So the next worker resent nothing that had been delivered.
    const seqs = transport.sent.map((entry) => entry.message.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it("a /stop ends the running reply with status stopped and keeps the text so far in history", async () => {
    generator = new ScriptedGenerator(
      Array.from({ length: 200 }, (_, index) => `p${index} `),
      10,
    );
    await accept("m1", "hi");
    const reply = processor();
    const running = reply.process({ msgidServer: "m1" });
    while (transport.sent.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(reply.cancellations.cancel("m1", "stopped")).toBe(true);
    await running;
    expect(generator.lastSignal?.aborted).toBe(true);
    expect(transport.status("m1")).toBe("stopped");
    const text = transport.text("m1");
    expect(text.length).toBeGreaterThan(0);
    expect(await repositories.conversations.recent("p2p:advisor_bot:u_alice", 10, 10_000)).toEqual([
      { role: "user", content: "hi" },
      { role: "assistant", content: text },
    ]);
  });

  it("a message recalled before it was answered gets no reply at all", async () => {
    await accept("m1", "hi");
    await repositories.inbox.markRecalled("m1", 2);
    await processor().process({ msgidServer: "m1" });
    expect(transport.sent).toHaveLength(0);
    expect(generator.requests).toHaveLength(0);
    expect(await repositories.inbox.get("m1")).toMatchObject({ status: "done" });
  });

  it("gives up on a poison message after REPLY_MAX_ATTEMPTS with the error apology", async () => {
    await accept("m1", "hi");
    // A moderation hook that crashes on this answer: every attempt fails the job, unexpectedly.
    const crashing: Moderator = {
      checkInput: async () => ({ allowed: true }),
      checkOutput: async () => {
        throw new SimulatedCrash("moderation hook crashed");
      },
    };
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      await expect(processor({ maxAttempts: 3, moderator: crashing }).process({ msgidServer: "m1" })).rejects.toThrow(
        SimulatedCrash,
      );
      await expireLease("m1");
    }
    expect(generator.requests).toHaveLength(3);
    await processor({ maxAttempts: 3, moderator: crashing }, "worker-b").process({ msgidServer: "m1" });
    expect(generator.requests).toHaveLength(3); // no fourth LLM call
    expect(transport.status("m1")).toBe("error");
    expect(transport.text("m1")).toBe(apologyText("error"));
    expect(await repositories.audit.list({ event: "reply.gave_up" })).toHaveLength(1);
    expect(await repositories.inbox.get("m1")).toMatchObject({ status: "done" });
  });

  it("counts an output-moderation block as blocked, not as a generator error", async () => {
    generator = new ScriptedGenerator(["This is ", "forbidden", " text and more"]);
    const moderator = blockingModerator("forbidden");
    const errors: string[] = [];
    const observer: ReplyObserver = { generatorError: (kind) => errors.push(kind) };
    await accept("m1", "hi");
    await processor({ moderator, observer }).process({ msgidServer: "m1" });
    expect(transport.status("m1")).toBe("blocked");
    expect(transport.text("m1")).not.toContain("forbidden");
    expect(errors).toEqual([]);
    expect(await repositories.audit.list({ event: "reply.blocked" })).toHaveLength(1);
  });
});

describe("reply processor with REPLY_DEBOUNCE_MS", () => {
  it("answers a burst of short messages as one turn, and not the merged ones again", async () => {
    const database = await openDatabase("sqlite::memory:");
    const repositories = createRepositories(database);
    const transport = new RecordingTransport();
    const generator = new ScriptedGenerator(["One answer."]);
    const clock = new ManualClock(1_000);
    const accept = (msgidServer: string, text: string, at: number) =>
      repositories.inbox.accept({ msgidServer, fromAccid: "u_b", toAccid: BOT, text, msgTimestamp: at, now: at });
    await accept("b1", "hi", 1_000);
    await accept("b2", "I have a question", 1_100);
    const reply = createReplyProcessor({
      repositories,
      transport,
      bot: () => ({ accid: BOT, systemPrompt: "", generator }),
      pacingMs: 0,
      idleTimeoutMs: 10_000,
      totalTimeoutMs: 20_000,
      historyTurns: 20,
      historyCharacters: 8_000,
      maxAttempts: 5,
      clock,
      logger,
      workerId: "w",
      leaseMs: 30_000,
      enqueue: async () => {},
      debounceMs: 500,
    });
    const running = reply.process({ msgidServer: "b1" });
    await settlePromises();
    clock.advance(300); // 1 300: inside the window of b2
    await accept("b3", "about my order", 1_300);
    await settlePromises();
    clock.advance(400); // 1 700: b3's window still open
    await settlePromises();
    expect(generator.requests).toHaveLength(0);
    await accept("b4", "/reset", 1_750); // a command ends the burst and stays on its own
    clock.advance(200); // 1 900: past 1 300 + 500
    await running;
    expect(generator.requests).toHaveLength(1);
    expect(generator.requests[0]?.message).toBe("hi\nI have a question\nabout my order");
    expect(transport.text("b1")).toBe("One answer.");
    for (const merged of ["b2", "b3"]) {
      expect(await repositories.inbox.get(merged)).toMatchObject({ status: "done" });
      expect(transport.finals(merged)).toHaveLength(0);
    }
    expect(await repositories.inbox.get("b4")).toMatchObject({ status: "accepted" });
    await database.close();
  });
});

describe("reply processor, recall of a reply resumed after a crash", () => {
  it("ends it with status stopped instead of answering on", async () => {
    const database = await openDatabase("sqlite::memory:");
    const repositories = createRepositories(database);
    const transport = new RecordingTransport();
    const generator = new ScriptedGenerator(["Part one. ", "Part two."]);
    await repositories.inbox.accept({
      msgidServer: "r1",
      fromAccid: "u_r",
      toAccid: BOT,
      text: "q",
      msgTimestamp: 1,
      now: 1,
    });
    const options = {
      repositories,
      transport,
      bot: () => ({ accid: BOT, systemPrompt: "", generator }),
      pacingMs: 0,
      idleTimeoutMs: 10_000,
      totalTimeoutMs: 20_000,
      historyTurns: 20,
      historyCharacters: 8_000,
      maxAttempts: 5,
      clock: systemClock,
      logger,
      leaseMs: 30_000,
      enqueue: async () => {},
    };
    transport.fault = (message, count) => {
      if (message.kind === "segment" && count === 2) throw new SimulatedCrash("died");
    };
    await expect(createReplyProcessor({ ...options, workerId: "a" }).process({ msgidServer: "r1" })).rejects.toThrow(
      SimulatedCrash,
    );
    transport.fault = undefined;
    await repositories.inbox.markRecalled("r1", 2);
    const row = await repositories.inbox.get("r1");
    await repositories.inbox.renewLease("r1", row?.lease_owner ?? "", -1_000);
    await createReplyProcessor({ ...options, workerId: "b" }).process({ msgidServer: "r1" });
    expect(generator.requests).toHaveLength(1);
    expect(transport.status("r1")).toBe("stopped");
    await database.close();
  });
});
