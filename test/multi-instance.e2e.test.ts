/**
 * Scale-out, end to end: two bridge processes on one PostgreSQL schema and one Redis (BullMQ queue
 * and limits under a per-run key prefix), NIM emulator and fake OpenAI in this process. Every user
 * message is delivered to both instances (one after the other, or at the same moment), one instance
 * is SIGKILLed while it streams, the other keeps taking callbacks, and the killed one comes back.
 *
 * What must hold: each message is answered exactly once (one done, the deltas equal the final text,
 * no seq with two contents; identical resends are counted and bounded), every reply completes, also
 * those the killed instance was streaming (taken over once its lease ran out), and no reply is ever
 * sent by two processes at the same time.
 */
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep } from "./harness.ts";
import { MultiStack, newMessageIdServer, type ProxiedNimCall } from "./multi-stack.ts";
import { POSTGRES_URL, REDIS_URL, services } from "./services.ts";

const LEASE_SECONDS = 2;
const SWEEP_INTERVAL_MS = 500;
// Replies of one user come one at a time (per-conversation order): enough users keep several streaming at once.
const USERS = 10;
const MESSAGES = 40;
/** Sixteen pieces ~120 ms apart: a reply streams for about two seconds. */
const ANSWER = Array.from({ length: 16 }, (_, index) => `第${index}段，多实例。Part ${index} of the answer. `).join("");

interface Delivery {
  message: number;
  instance: string;
  status: number | "unreachable";
}

describe.runIf(services.postgres && services.redis)("two instances on PostgreSQL + Redis", () => {
  let stack: MultiStack;

  beforeAll(async () => {
    stack = new MultiStack({
      labels: ["A", "B"],
      postgresUrl: POSTGRES_URL,
      redisUrl: REDIS_URL,
      scenario: { kind: "text", text: ANSWER, pieces: 16, delayMs: 120 },
      env: {
        REPLY_LEASE_SECONDS: String(LEASE_SECONDS),
        REPLY_SWEEP_INTERVAL_MS: String(SWEEP_INTERVAL_MS),
        // ~700 NIM sends in a few seconds; the shared budget would stretch the run, not test more.
        NIM_SEND_RATE_PER_SECOND: "1000",
      },
    });
    await stack.start();
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
  }, 60_000);

  it("answers every message exactly once through a SIGKILL of one instance", { timeout: 90_000 }, async () => {
    const startedAt = Date.now();
    const a = stack.instance("A");
    const b = stack.instance("B");

    // Users register on either instance; the account rows are shared.
    const users: string[] = [];
    for (let index = 0; index < USERS; index++) {
      users.push(await (index % 2 === 0 ? a : b).register(`multi-${stack.schema}-${index}`));
    }

    const messages = Array.from({ length: MESSAGES }, (_, index) => ({
      index,
      msgid: newMessageIdServer(),
      from: users[index % USERS]!,
      text: `question ${index}`,
    }));
    const byMsgid = new Map(messages.map((message) => [message.msgid, message]));
    const deliveries: Delivery[] = [];
    /** Deliveries to A that could not happen while it was down: NIM retries them later. */
    const deferredToA: number[] = [];

    async function deliver(message: number, instance: "A" | "B"): Promise<void> {
      const target = instance === "A" ? a : b;
      const { from, text, msgid } = messages[message]!;
      if (!target.alive) {
        deferredToA.push(message);
        return;
      }
      try {
        deliveries.push({ message, instance: target.label, status: await target.deliver(from, text, msgid) });
      } catch {
        // Connection refused or reset: the process died under this request.
        deliveries.push({ message, instance: target.label, status: "unreachable" });
        if (instance === "A") deferredToA.push(message);
      }
    }

    /** Both instances get every message: at once, A then B, B then A, or B late while it streams. */
    async function deliverTwice(message: number): Promise<void> {
      switch (message % 4) {
        case 0:
          await Promise.all([deliver(message, "A"), deliver(message, "B")]);
          return;
        case 1:
          await deliver(message, "A");
          await deliver(message, "B");
          return;
        case 2:
          await deliver(message, "B");
          await deliver(message, "A");
          return;
        default:
          await deliver(message, "A");
          await sleep(300);
          await deliver(message, "B");
      }
    }

    /**
     * Replies a process has sent something for, as the proxies saw it: finished (NIM confirmed the
     * done a while ago, so the process has surely recorded it) or unfinished (no done sent yet).
     */
    function progressOf(label: string): { finished: Set<string>; unfinished: Set<string> } {
      const sent = new Set<string>();
      const doneStarted = new Set<string>();
      const doneSettled = new Set<string>();
      for (const call of stack.calls) {
        if (!call.stream) continue;
        if (call.instance === label) sent.add(call.stream.reply_to);
        if (!call.stream.done) continue;
        doneStarted.add(call.stream.reply_to);
        if (call.endedAt !== undefined && call.endedAt < Date.now() - 300) doneSettled.add(call.stream.reply_to);
      }
      return {
        finished: new Set([...sent].filter((replyTo) => doneSettled.has(replyTo))),
        unfinished: new Set([...sent].filter((replyTo) => !doneStarted.has(replyTo))),
      };
    }
    const unfinishedOn = (label: string) => progressOf(label).unfinished;

    // The kill: once A has finished a reply and is streaming at least three more, and a third of
    // the messages are out; the last quarter is always sent after it (to B, and to A once it is back).
    let killedAt = 0;
    let inFlightAtKill = new Set<string>();
    let sentBeforeKill = 0;
    let finishedByABeforeKill = 0;
    const touchedByA = new Set<string>();
    const killDue = () => {
      const progress = progressOf("A");
      return progress.finished.size >= 1 && progress.unfinished.size >= 3;
    };
    async function killA(): Promise<void> {
      finishedByABeforeKill = progressOf("A").finished.size;
      inFlightAtKill = unfinishedOn("A");
      killedAt = Date.now();
      await a.kill();
      // Sends A started up to the moment it died (its done may be among them, unconfirmed).
      for (const call of stack.calls) if (call.instance === "A" && call.stream) touchedByA.add(call.stream.reply_to);
    }

    const sending: Array<Promise<void>> = [];
    const lastBeforeKill = Math.floor((MESSAGES * 3) / 4);
    for (const message of messages) {
      if (killedAt === 0 && message.index >= MESSAGES / 3) {
        // Past the last quarter's start, wait (while the replies stream) for the moment to kill.
        const deadline = Date.now() + 20_000;
        while (message.index >= lastBeforeKill && !killDue() && Date.now() < deadline) await sleep(5);
        if (killDue() || message.index >= lastBeforeKill) {
          sentBeforeKill = message.index;
          await killA();
        }
      }
      sending.push(deliverTwice(message.index));
      await sleep(75);
    }
    await Promise.all(sending);
    expect(killedAt).toBeGreaterThan(0);
    expect(inFlightAtKill.size).toBeGreaterThanOrEqual(3);

    // The survivor takes over what A was streaming; then A comes back and gets NIM's retries.
    const takenOver = () =>
      [...inFlightAtKill].every((replyTo) =>
        stack.calls.some((call) => call.stream?.reply_to === replyTo && call.instance !== "A"),
      );
    const takeoverDeadline = Date.now() + 20_000;
    while (!takenOver() && Date.now() < takeoverDeadline) await sleep(20);
    expect(takenOver()).toBe(true);
    const restartStartedAt = Date.now();
    await a.start("A2");
    const restartMs = Date.now() - restartStartedAt;
    await Promise.all([...new Set(deferredToA)].map((message) => deliver(message, "A")));

    // Every reply completes.
    const completeDeadline = Date.now() + 30_000;
    const isDone = (msgid: string) => stack.delivered(msgid).some((entry) => entry.body.done);
    while (messages.some((message) => !isDone(message.msgid)) && Date.now() < completeDeadline) await sleep(50);
    const missing = messages.filter((message) => !isDone(message.msgid)).map((message) => message.msgid);
    expect(missing, `${b.output.slice(-3000)}\n${a.output.slice(-3000)}`).toEqual([]);
    // Anything still in flight (a stale worker, a late resend) would show up now.
    await sleep(LEASE_SECONDS * 1000);

    // Exactly once, per message.
    let duplicates = 0;
    let nimMessages = 0;
    const resentReplies = new Set<string>();
    for (const message of messages) {
      const entries = stack.delivered(message.msgid);
      nimMessages += entries.length;
      const bySeq = new Map<number, string>();
      for (const entry of entries) {
        expect(entry.to).toBe(message.from);
        const earlier = bySeq.get(entry.body.seq);
        // An identical resend of a seq (a send whose answer the dead process never got) is allowed.
        if (earlier !== undefined) {
          expect(entry.raw, `seq ${entry.body.seq} of ${message.msgid} differs`).toBe(earlier);
          duplicates++;
          resentReplies.add(message.msgid);
        }
        bySeq.set(entry.body.seq, entry.raw);
      }
      const ordered = [...bySeq.entries()].sort(([left], [right]) => left - right).map(([, raw]) => JSON.parse(raw));
      expect(ordered.map((body) => body.seq)).toEqual([...ordered.keys()]);
      expect(new Set(ordered.map((body) => body.stream_id)).size).toBe(1);
      const dones = ordered.filter((body) => body.done);
      expect(dones).toHaveLength(1);
      expect(dones[0].status).toBe("ok");
      expect(ordered.at(-1).done).toBe(true);
      const deltas = ordered.map((body) => body.delta).join("");
      const finalText = ordered
        .filter((body) => body.done || body.part !== undefined)
        .map((body) => body.text ?? "")
        .join("");
      expect(deltas).toBe(finalText);
      expect(finalText).toBe(ANSWER);
    }

    // One process at a time per reply: the send windows of different processes never overlap.
    const sendsByReply = new Map<string, ProxiedNimCall[]>();
    for (const call of stack.calls) {
      if (!call.stream) continue;
      const list = sendsByReply.get(call.stream.reply_to) ?? [];
      list.push(call);
      sendsByReply.set(call.stream.reply_to, list);
    }
    const handedOver: string[] = [];
    for (const [replyTo, calls] of sendsByReply) {
      const windows = new Map<string, { from: number; to: number }>();
      for (const call of calls) {
        const window = windows.get(call.instance) ?? { from: call.startedAt, to: call.startedAt };
        window.from = Math.min(window.from, call.startedAt);
        window.to = Math.max(window.to, call.endedAt ?? call.startedAt);
        windows.set(call.instance, window);
      }
      const sorted = [...windows.values()].sort((left, right) => left.from - right.from);
      for (let index = 1; index < sorted.length; index++) {
        expect(sorted[index]!.from, `two processes sent ${replyTo} at once`).toBeGreaterThanOrEqual(
          sorted[index - 1]!.to,
        );
      }
      if (windows.size > 1) handedOver.push(replyTo);
    }
    // One reply at a time per conversation, across both instances: a user's next reply starts
    // only after the previous one's done went out, in the order NIM stamped the messages.
    const windowsByUser = new Map<string, Array<{ replyTo: string; from: number; doneAt: number }>>();
    for (const [replyTo, calls] of sendsByReply) {
      const user = byMsgid.get(replyTo)?.from;
      if (!user) continue;
      const from = Math.min(...calls.map((call) => call.startedAt));
      const doneAt = Math.min(...calls.filter((call) => call.stream?.done).map((call) => call.startedAt));
      const list = windowsByUser.get(user) ?? [];
      list.push({ replyTo, from, doneAt });
      windowsByUser.set(user, list);
    }
    for (const [user, windows] of windowsByUser) {
      windows.sort((left, right) => left.from - right.from);
      for (let index = 1; index < windows.length; index++) {
        expect(windows[index]!.from, `${user}: two replies of one conversation at once`).toBeGreaterThanOrEqual(
          windows[index - 1]!.doneAt,
        );
      }
    }
    // Only replies A was working on when it died change hands, and all it was streaming do.
    expect(handedOver.filter((replyTo) => !touchedByA.has(replyTo))).toEqual([]);
    expect([...inFlightAtKill].filter((replyTo) => !handedOver.includes(replyTo))).toEqual([]);
    // An identical resend happens only where a send was in flight at the kill: at most one per reply.
    expect([...resentReplies].filter((replyTo) => !handedOver.includes(replyTo))).toEqual([]);
    expect(duplicates).toBeLessThanOrEqual(handedOver.length);

    // Takeover: from the kill to the first NIM send of the new owner.
    const takeoverMs = handedOver.map((replyTo) => {
      const first = stack.calls
        .filter((call) => call.stream?.reply_to === replyTo && call.instance !== "A")
        .reduce((earliest, call) => Math.min(earliest, call.startedAt), Number.POSITIVE_INFINITY);
      return first - killedAt;
    });
    // The lease, BullMQ's stall check (up to one more lease) and a sweep, with room for a busy machine;
    // far below the 30 s default lease, which would not even fit in this test.
    expect(Math.max(...takeoverMs)).toBeLessThan(LEASE_SECONDS * 1000 * 3 + SWEEP_INTERVAL_MS + 8000);
    expect(Math.min(...takeoverMs)).toBeGreaterThanOrEqual(0);

    // The database agrees: every message accepted once, answered once, nothing left to do.
    const database = new pg.Client({ connectionString: stack.databaseUrl });
    await database.connect();
    let acceptedOnce: number;
    let attempts: number[];
    try {
      const inbox = await database.query<{ msgid_server: string; status: string; attempts: number }>(
        "select msgid_server, status, attempts from inbox",
      );
      expect(inbox.rows).toHaveLength(MESSAGES);
      expect(inbox.rows.every((row) => row.status === "done")).toBe(true);
      attempts = inbox.rows.map((row) => row.attempts);
      const accepted = await database.query<{ subject: string; count: string }>(
        "select subject, count(*) as count from audit_events where event = 'callback.accepted' group by subject",
      );
      acceptedOnce = accepted.rows.filter((row) => Number(row.count) === 1).length;
      expect(acceptedOnce).toBe(MESSAGES);
      const finals = await database.query<{ subject: string; count: string }>(
        "select subject, count(*) as count from audit_events where event = 'reply.final' group by subject",
      );
      expect(finals.rows.every((row) => Number(row.count) === 1)).toBe(true);
      const assistantTurns = await database.query<{ reply_to: string; count: string }>(
        "select reply_to, count(*) as count from messages where role = 'assistant' group by reply_to",
      );
      expect(assistantTurns.rows).toHaveLength(MESSAGES);
      expect(assistantTurns.rows.every((row) => Number(row.count) === 1)).toBe(true);
      const pending = await database.query("select 1 from outbox where state <> 'sent'");
      expect(pending.rows).toHaveLength(0);
    } finally {
      await database.end();
    }

    // Every key of this run lives under its prefix: the queue and the shared limits.
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      expect(await redis.exists(`${stack.redisKeyPrefix}:im-bridge-replies:meta`)).toBe(1);
      // Per bot since BOTS_FILE: im-bridge:reply:<bot>:minute:<user>.
      const limitKeys = await redis.keys(`${stack.redisKeyPrefix}:im-bridge:reply:*:minute:*`);
      expect(limitKeys.length).toBe(USERS);
    } finally {
      redis.disconnect();
    }

    // Every callback that reached a live instance was acknowledged (a redelivery too).
    expect(deliveries.filter((entry) => entry.status !== "unreachable" && entry.status !== 200)).toEqual([]);
    const counted = (status: Delivery["status"]) => deliveries.filter((entry) => entry.status === status).length;
    const sorted = [...takeoverMs].sort((left, right) => left - right);
    const summary = {
      messages: MESSAGES,
      users: USERS,
      callbacksPosted: deliveries.length,
      callbacksOk: counted(200),
      callbacksUnreachable: counted("unreachable"),
      redeliveredToRestarted: new Set(deferredToA).size,
      nimMessages,
      identicalResends: duplicates,
      messagesSentBeforeKill: sentBeforeKill,
      finishedByKilledInstance: finishedByABeforeKill,
      inFlightOnKilledInstance: inFlightAtKill.size,
      handedOver: handedOver.length,
      takeoverMs: { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted.at(-1) },
      leaseSeconds: LEASE_SECONDS,
      restartMs,
      claimsPerMessage: { max: Math.max(...attempts), total: attempts.reduce((sum, value) => sum + value, 0) },
      generatorCalls: stack.openai.requests.length,
      repliesBy: countBy([...sendsByReply.values()].map((calls) => [...new Set(calls.map((call) => call.instance))])),
      totalSeconds: (Date.now() - startedAt) / 1000,
    };
    console.log(`multi-instance figures: ${JSON.stringify(summary)}`);
    expect(byMsgid.size).toBe(MESSAGES);
  });
});

function countBy(groups: string[][]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const group of groups) {
    const key = group.join("→");
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

describe.runIf(services.postgres && services.redis)("serve roles on PostgreSQL + Redis", () => {
  let stack: MultiStack;

  beforeAll(async () => {
    stack = new MultiStack({
      labels: ["HTTP", "WORKER"],
      postgresUrl: POSTGRES_URL,
      redisUrl: REDIS_URL,
      scenario: { kind: "text", text: ANSWER, pieces: 4, delayMs: 20 },
      envByLabel: { HTTP: { SERVE_ROLE: "http" }, WORKER: { SERVE_ROLE: "worker" } },
    });
    await stack.start();
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
  }, 60_000);

  it("an http instance takes callbacks and registrations, a worker instance answers them", async () => {
    const http = stack.instance("HTTP");
    const worker = stack.instance("WORKER");
    const accid = await http.register(`roles-${stack.schema}`);
    // The worker serves no public route (only /healthz, /readyz, /metrics).
    expect((await fetch(`${worker.url}/im/callback`, { method: "POST" })).status).toBe(404);
    expect((await fetch(`${worker.url}/metrics`)).status).toBe(200);

    const msgids = Array.from({ length: 5 }, () => newMessageIdServer());
    for (const msgid of msgids) expect(await http.deliver(accid, "hi", msgid)).toBe(200);
    const deadline = Date.now() + 20_000;
    const isDone = (msgid: string) => stack.delivered(msgid).some((entry) => entry.body.done);
    while (!msgids.every(isDone) && Date.now() < deadline) await sleep(50);
    expect(msgids.filter((msgid) => !isDone(msgid))).toEqual([]);
    for (const msgid of msgids) {
      const finals = stack.delivered(msgid).filter((entry) => entry.body.done);
      expect(finals.map((entry) => entry.body.text)).toEqual([ANSWER]);
    }
    // Every NIM message of a reply came from the worker process.
    const senders = new Set(stack.calls.filter((call) => call.stream).map((call) => call.instance));
    expect(senders).toEqual(new Set(["WORKER"]));
  });
});
