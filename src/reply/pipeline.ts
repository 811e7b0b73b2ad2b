/**
 * One reply, from an accepted inbox message to the final NIM message.
 *
 *   claim (lease) → command? → history → generator → think filter → segmenter → outbox → NIM
 *
 * Every NIM message is first committed to the outbox together with the reply's next seq (one
 * transaction), then sent, then marked sent. A restart therefore resends exactly the committed
 * but unconfirmed messages (same seq, same body) and continues from the committed text, so the
 * user sees each seq once (clients drop a repeated (stream_id, seq)) and exactly one done.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { GenerationRequest, ReplyGenerator } from "../generators/types.ts";
import type { RateLimit, SendBudget } from "../limits/types.ts";
import { createOutputWindowChecker } from "../moderation/index.ts";
import type { Moderator } from "../moderation/types.ts";
import { isNimError } from "../nim/errors.ts";
import type { NimClient } from "../nim/types.ts";
import type { ReplyJob } from "../queue/types.ts";
import type { OutboxMessage, Repositories } from "../storage/repositories.ts";
import type { Clock } from "./clock.ts";
import {
  apologyText,
  blockedText,
  FINAL_OPTION,
  FINAL_PART_OPTION,
  finalBodies,
  limitedTextWithRetryAfter,
  maxDeltaBudget,
  pushContent,
  resetConfirmationText,
  SEGMENT_OPTION,
  segmentBody,
} from "./messages.ts";
import type { ReplyObserver } from "./observer.ts";
import { Segmenter } from "./segmenter.ts";
import { graphemeClusters } from "./text-units.ts";
import { createThinkFilter } from "./think-filter.ts";

export type ReplyStatus = "ok" | "error" | "blocked" | "limited";

export interface ReplyPipelineOptions {
  nim: NimClient;
  repositories: Repositories;
  generator: ReplyGenerator;
  botAccid: string;
  systemPrompt: string;
  pacingMs: number;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  historyTurns: number;
  historyCharacters: number;
  clock: Clock;
  logger: Logger;
  /** Identifies this worker in inbox leases. */
  workerId: string;
  /** How long a claim holds without renewal; renewed every third of it. */
  leaseMs: number;
  observer?: ReplyObserver;
  /** Per-user reply limits (per minute and per day); a refused message gets status `limited`. */
  replyLimits?: RateLimit;
  /** Input before generation and output in bounded windows before each segment goes out. */
  moderator?: Moderator;
  /** Treat NIM's own antispam flag on the inbound copy as blocked input. */
  respectNimAntispam?: boolean;
  /** Global NIM send budget: a burst waits here instead of running into NIM's 416. */
  sendBudget?: SendBudget;
}

/**
 * With output moderation on, this many grapheme clusters at the end of each segment wait for the
 * next one (longer than any sensible keyword), at a cost of that much extra latency.
 */
const HOLDBACK_CLUSTERS = 50;
/** Encoded room the held-back clusters may need in a segment body (escapes, emoji sequences). */
const HOLDBACK_BUDGET = 600;

/** Marks where a regenerated answer starts when a resumed generation did not repeat what was sent. */
export const REGENERATED_MARKER = "\n\n[重新生成 / regenerated]\n";

const RESET_COMMANDS = new Set(["/reset", "重置"]);

class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
}

class DeliveryFailedError extends Error {
  override readonly name = "DeliveryFailedError";
}

class BlockedOutputError extends Error {
  override readonly name = "BlockedOutputError";
}

export function isResetCommand(text: string): boolean {
  return RESET_COMMANDS.has(text.trim().toLowerCase());
}

export function createReplyProcessor(options: ReplyPipelineOptions): (job: ReplyJob) => Promise<void> {
  const { repositories, clock, logger } = options;
  const observer = options.observer;
  // claim() lets a worker re-claim a lease it holds, so a second job for the same message in this
  // process (a queue redelivery while the first run is still going) must be turned away here.
  const running = new Set<string>();

  return async function processReply(job: ReplyJob): Promise<void> {
    if (running.has(job.msgidServer)) return;
    running.add(job.msgidServer);
    try {
      await processClaimed(job);
    } finally {
      running.delete(job.msgidServer);
    }
  };

  async function processClaimed(job: ReplyJob): Promise<void> {
    const inbox = await repositories.inbox.get(job.msgidServer);
    if (!inbox || inbox.status === "done" || inbox.status === "failed") return;
    const claimed = await repositories.inbox.claim(
      inbox.msgid_server,
      options.workerId,
      clock.now(),
      clock.now() + options.leaseMs,
    );
    if (!claimed) return;
    observer?.started?.(inbox.msgid_server, inbox.received_at);

    let leaseLost = false;
    const renewal = setInterval(
      () => {
        repositories.inbox
          .renewLease(inbox.msgid_server, options.workerId, clock.now() + options.leaseMs)
          .then((renewed) => {
            if (!renewed) leaseLost = true;
          })
          .catch((error: unknown) => logger.warn({ err: error }, "lease renewal failed"));
      },
      // A third of the lease, so one late renewal does not lose it (also for leases of a few seconds).
      Math.max(100, Math.floor(options.leaseMs / 3)),
    );
    renewal.unref();

    try {
      const reply = await repositories.replies.getOrCreate(
        inbox.msgid_server,
        randomUUID(),
        inbox.from_accid,
        clock.now(),
      );
      const context: StreamContext = {
        replyTo: inbox.msgid_server,
        streamId: reply.stream_id,
        userAccid: inbox.from_accid,
        text: reply.text,
        nextSeq: reply.next_seq,
        sentAny: false,
        isLeaseLost: () => leaseLost,
      };
      // Committed but unconfirmed messages go out first, in seq order, identical to the first try.
      const delivered = await resendPending(context);
      if (reply.state === "finished") {
        await complete(context, (reply.final_status as ReplyStatus) ?? "ok", delivered);
        return;
      }
      if (!delivered) {
        await finish(context, "error", { deliveryFailed: true });
        return;
      }
      if (isResetCommand(inbox.text)) {
        await repositories.conversations.reset(inbox.from_accid, clock.now());
        await sendWholeText(context, resetConfirmationText, "ok", { recordTurns: false });
        return;
      }
      // Checks run only for a reply that has not started: a resumed reply was already admitted.
      if (reply.next_seq === 0) {
        const refusal = await admit(inbox.from_accid, inbox.text, inbox.antispam === 1, inbox.msgid_server);
        if (refusal) {
          await sendWholeText(context, refusal.text, refusal.status, { recordTurns: false });
          return;
        }
      }
      await generateAndStream(context, inbox.text);
    } catch (error) {
      if (error instanceof LeaseLostError) {
        logger.warn({ msgidServer: inbox.msgid_server }, "lease lost: another worker continues this reply");
        return;
      }
      throw error;
    } finally {
      clearInterval(renewal);
    }
  }

  interface StreamContext {
    replyTo: string;
    streamId: string;
    userAccid: string;
    /** Concatenation of every delta committed so far. */
    text: string;
    nextSeq: number;
    sentAny: boolean;
    isLeaseLost: () => boolean;
  }

  /** Limits and input moderation; returns the refusal to send instead of an answer. */
  async function admit(
    accid: string,
    text: string,
    flaggedByNim: boolean,
    replyTo: string,
  ): Promise<{ status: ReplyStatus; text: string } | undefined> {
    if (flaggedByNim && options.respectNimAntispam) {
      await repositories.audit.record(
        "reply.blocked",
        replyTo,
        { stage: "input", reason: "nim-antispam" },
        clock.now(),
      );
      return { status: "blocked", text: blockedText };
    }
    if (options.replyLimits) {
      const decision = await options.replyLimits.consume(accid);
      if (!decision.allowed) {
        await repositories.audit.record("reply.limited", replyTo, { retryAfterMs: decision.retryAfterMs }, clock.now());
        return { status: "limited", text: limitedTextWithRetryAfter(Math.ceil(decision.retryAfterMs / 1000)) };
      }
    }
    if (options.moderator) {
      const verdict = await options.moderator.checkInput(text, { accid });
      if (!verdict.allowed) {
        await repositories.audit.record(
          "reply.blocked",
          replyTo,
          { stage: "input", reason: verdict.reason },
          clock.now(),
        );
        return { status: "blocked", text: blockedText };
      }
    }
    return undefined;
  }

  async function generateAndStream(context: StreamContext, userText: string): Promise<void> {
    const now = clock.now();
    if (!(await repositories.conversations.has(context.userAccid, context.replyTo, "user"))) {
      await repositories.conversations.append(
        { userAccid: context.userAccid, role: "user", content: userText, replyTo: context.replyTo },
        now,
      );
    }
    const history = await repositories.conversations.recent(
      context.userAccid,
      options.historyTurns,
      options.historyCharacters,
      context.replyTo,
    );
    const account = await repositories.accounts.findByAccid(context.userAccid);
    const request: GenerationRequest = {
      userId: account?.site_user_id,
      accid: context.userAccid,
      message: userText,
      history,
      systemPrompt: options.systemPrompt,
    };

    const startedAt = clock.now();
    let firstTokenSeen = false;
    let blockedReason: string | undefined;
    const outputChecker = options.moderator
      ? createOutputWindowChecker(options.moderator, { context: { accid: context.userAccid } })
      : undefined;
    const segmenter = new Segmenter({
      pacingMs: options.pacingMs,
      clock,
      // Held-back text rides along with the next delta, so leave room for it in the body.
      maxDeltaCharacters:
        maxDeltaBudget({ streamId: context.streamId, replyTo: context.replyTo, seq: Number.MAX_SAFE_INTEGER }) -
        (outputChecker ? HOLDBACK_BUDGET : 0),
      emit: async (delta) => {
        if (!outputChecker) {
          await commitAndSendSegment(context, delta);
          return;
        }
        const verdict = await outputChecker.check(delta);
        if (!verdict.allowed) {
          // Neither the blocked window nor the held-back text before it is ever sent.
          blockedReason = verdict.reason;
          heldBack = "";
          throw new BlockedOutputError(verdict.reason);
        }
        // The last characters wait for the next delta: a term that starts here and ends in the
        // next delta is then caught before any part of it reaches the user.
        const clusters = Array.from(graphemeClusters(heldBack + delta), (cluster) => cluster.segment);
        const keep = Math.min(HOLDBACK_CLUSTERS, clusters.length);
        heldBack = clusters.slice(clusters.length - keep).join("");
        const release = clusters.slice(0, clusters.length - keep).join("");
        if (release) await commitAndSendSegment(context, release);
      },
    });
    let heldBack = "";
    const resume = createResumeFilter(context.text);
    const think = createThinkFilter();
    const push = (piece: string) => {
      const visible = resume.push(piece);
      if (visible) segmenter.push(visible);
    };

    const outcome = await runGenerator(request, (piece) => {
      if (blockedReason !== undefined) throw new BlockedOutputError(blockedReason);
      if (!firstTokenSeen) {
        firstTokenSeen = true;
        observer?.firstToken?.(context.replyTo, clock.now() - startedAt);
      }
      push(think.push(piece));
    });
    let status: ReplyStatus = "ok";
    let apology: string | undefined;
    if (outcome.kind === "completed") {
      push(think.flush());
      const rest = resume.end();
      if (rest) segmenter.push(rest);
    } else {
      status = "error";
      apology = apologyText(outcome.kind === "timeout" ? "timeout" : "error");
      observer?.generatorError?.(outcome.kind);
      logger.warn({ msgidServer: context.replyTo, outcome: outcome.kind, reason: outcome.reason }, "generation failed");
    }
    try {
      await segmenter.end();
    } catch (error) {
      if (error instanceof BlockedOutputError) {
        blockedReason = error.message;
      } else if (error instanceof DeliveryFailedError) {
        await finish(context, "error", { deliveryFailed: true });
        return;
      } else {
        throw error;
      }
    }
    if (heldBack && blockedReason === undefined) {
      // Everything held back was checked with the deltas around it; the stream is over.
      const rest = heldBack;
      heldBack = "";
      try {
        await commitAndSendSegment(context, rest);
      } catch (error) {
        if (!(error instanceof DeliveryFailedError)) throw error;
        await finish(context, "error", { deliveryFailed: true });
        return;
      }
    }
    if (blockedReason !== undefined) {
      await repositories.audit.record(
        "reply.blocked",
        context.replyTo,
        { stage: "output", reason: blockedReason },
        clock.now(),
      );
      status = "blocked";
      apology = blockedText;
    }
    if (status === "ok" && context.text.trim() === "" && blockedReason === undefined) {
      status = "error";
      apology = apologyText("error");
    }
    if (apology) {
      // The apology is part of the visible answer, so it goes as a delta like any text.
      const separator = context.text === "" ? "" : "\n\n";
      try {
        await commitAndSendSegment(context, separator + apology);
      } catch (error) {
        if (!(error instanceof DeliveryFailedError)) throw error;
      }
    }
    await finish(context, status, {});
  }

  type GeneratorOutcome = { kind: "completed" } | { kind: "timeout" | "failed"; reason: string };

  /** Runs the generator with the idle and total timeouts; never throws. */
  async function runGenerator(request: GenerationRequest, onPiece: (piece: string) => void): Promise<GeneratorOutcome> {
    const controller = new AbortController();
    let timeoutReason: string | undefined;
    const abortWith = (reason: string) => {
      timeoutReason = reason;
      controller.abort(new Error(reason));
    };
    let idleTimer = clock.setTimeout(() => abortWith("idle timeout"), options.idleTimeoutMs);
    const totalTimer = clock.setTimeout(() => abortWith("total timeout"), options.totalTimeoutMs);
    // A generator that ignores its signal must still not hold the reply: race every step with it.
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener("abort", () => reject(controller.signal.reason), { once: true });
    });
    aborted.catch(() => {});
    let iterator: AsyncIterator<string> | undefined;
    try {
      iterator = options.generator.generate(request, controller.signal)[Symbol.asyncIterator]();
      while (true) {
        const step = await Promise.race([iterator.next(), aborted]);
        if (step.done) break;
        if (typeof step.value === "string" && step.value.length > 0) {
          clock.clearTimeout(idleTimer);
          idleTimer = clock.setTimeout(() => abortWith("idle timeout"), options.idleTimeoutMs);
          onPiece(step.value);
        }
      }
      if (timeoutReason) return { kind: "timeout", reason: timeoutReason };
      return { kind: "completed" };
    } catch (error) {
      if (timeoutReason) return { kind: "timeout", reason: timeoutReason };
      return { kind: "failed", reason: (error as Error)?.message ?? String(error) };
    } finally {
      clock.clearTimeout(idleTimer);
      clock.clearTimeout(totalTimer);
      if (!controller.signal.aborted) controller.abort(new Error("reply finished"));
      iterator?.return?.().catch(() => {});
    }
  }

  async function commitAndSendSegment(context: StreamContext, delta: string): Promise<void> {
    if (context.isLeaseLost()) throw new LeaseLostError("lease lost");
    const seq = context.nextSeq;
    const body = JSON.stringify(segmentBody({ streamId: context.streamId, replyTo: context.replyTo, seq, delta }));
    const committed = await repositories.replies.commitOutbox(
      { replyTo: context.replyTo, streamId: context.streamId },
      [{ seq, body, kind: "segment", appendText: delta }],
      clock.now(),
    );
    if (!committed) throw new LeaseLostError("seq already committed by another worker");
    context.nextSeq = seq + 1;
    context.text += delta;
    const sent = await send(context, { seq, body, kind: "segment" });
    if (!sent) throw new DeliveryFailedError("segment could not be delivered");
  }

  /** Sends one outbox message; false when NIM refused it for good or the retry deadline passed. */
  async function send(context: StreamContext, message: Pick<OutboxMessage, "seq" | "body" | "kind">): Promise<boolean> {
    const sendStartedAt = clock.now();
    try {
      // Waiting here spreads a burst; if the budget cannot be had in time, NIM's 416 and the
      // client's backoff still protect us, so the send goes ahead.
      await options.sendBudget?.acquire("message").catch(() => undefined);
      const result = await options.nim.sendMessage({
        from: options.botAccid,
        to: context.userAccid,
        ope: 0,
        type: 100,
        body: message.body,
        ...messageOptions(message, context.text),
      });
      await repositories.replies.markSent(context.streamId, message.seq, result.msgid, clock.now());
      if (!context.sentAny) {
        context.sentAny = true;
        observer?.firstSegment?.(context.replyTo);
      }
      observer?.sent?.(message.kind, "ok", clock.now() - sendStartedAt);
      return true;
    } catch (error) {
      const code = isNimError(error) ? String(error.code) : "unknown";
      observer?.sent?.(message.kind, code, clock.now() - sendStartedAt);
      await repositories.replies.markFailed(context.streamId, message.seq, clock.now());
      await repositories.audit.record(
        "reply.send_failed",
        context.replyTo,
        {
          seq: message.seq,
          kind: message.kind,
          code,
          retryable: isNimError(error) ? error.retryable : undefined,
          message: (error as Error).message,
        },
        clock.now(),
      );
      logger.error({ msgidServer: context.replyTo, seq: message.seq, code }, "NIM send failed");
      return false;
    }
  }

  async function resendPending(context: StreamContext): Promise<boolean> {
    const pending = (await repositories.replies.outbox(context.streamId)).filter((row) => row.state === "pending");
    for (const row of pending) {
      if (!(await send(context, row))) return false;
    }
    return true;
  }

  /** A reply whose whole text is known up front (reset confirmation, limits, moderation). */
  async function sendWholeText(
    context: StreamContext,
    text: string,
    status: ReplyStatus,
    finishOptions: { recordTurns: boolean },
  ): Promise<void> {
    try {
      await commitAndSendSegment(context, text);
    } catch (error) {
      if (!(error instanceof DeliveryFailedError)) throw error;
    }
    await finish(context, status, { recordTurns: finishOptions.recordTurns });
  }

  /** Commits every final part in one transaction, then sends them. */
  async function finish(
    context: StreamContext,
    status: ReplyStatus,
    finishOptions: { deliveryFailed?: boolean; recordTurns?: boolean },
  ): Promise<void> {
    const bodies = finalBodies({
      streamId: context.streamId,
      replyTo: context.replyTo,
      firstSeq: context.nextSeq,
      text: context.text,
      status,
    });
    const rows = bodies.map((body, index) => ({
      seq: context.nextSeq + index,
      body: JSON.stringify(body),
      kind: "final" as const,
      appendText: "",
    }));
    const committed = await repositories.replies.commitOutbox(
      { replyTo: context.replyTo, streamId: context.streamId },
      rows,
      clock.now(),
      status,
    );
    if (!committed) throw new LeaseLostError("final already committed by another worker");
    context.nextSeq += rows.length;
    let delivered = !finishOptions.deliveryFailed;
    for (const row of rows) {
      if (!(await send(context, row))) {
        delivered = false;
        break;
      }
    }
    await complete(context, status, delivered, finishOptions.recordTurns ?? true);
  }

  async function complete(
    context: StreamContext,
    status: ReplyStatus,
    delivered: boolean,
    recordTurns = true,
  ): Promise<void> {
    const now = clock.now();
    if (
      recordTurns &&
      status === "ok" &&
      !(await repositories.conversations.has(context.userAccid, context.replyTo, "assistant"))
    ) {
      await repositories.conversations.append(
        { userAccid: context.userAccid, role: "assistant", content: context.text, replyTo: context.replyTo },
        now,
      );
    }
    await repositories.inbox.finish(
      context.replyTo,
      delivered ? "done" : "failed",
      now,
      delivered ? null : "delivery failed",
    );
    await repositories.audit.record(
      delivered ? "reply.final" : "reply.failed",
      context.replyTo,
      { status, seqs: context.nextSeq, characters: context.text.length },
      now,
    );
    observer?.finished?.(context.replyTo, delivered ? status : "failed");
  }
}

/**
 * After a restart the generator runs again, but the user already saw `committed`. When the new
 * output starts with exactly that text (deterministic generators, temperature 0), only the rest
 * is sent; when it diverges, the new answer is sent in full after a visible marker. Either way
 * no seq is repeated and the final text equals what the user saw.
 */
export function createResumeFilter(committed: string): { push(piece: string): string; end(): string } {
  if (committed === "") return { push: (piece) => piece, end: () => "" };
  let buffered = "";
  let decided: "continue" | "diverged" | undefined;
  return {
    push(piece: string): string {
      if (decided) return piece;
      buffered += piece;
      const overlap = Math.min(buffered.length, committed.length);
      if (buffered.slice(0, overlap) !== committed.slice(0, overlap)) {
        decided = "diverged";
        const out = REGENERATED_MARKER + buffered;
        buffered = "";
        return out;
      }
      if (buffered.length >= committed.length) {
        decided = "continue";
        const out = buffered.slice(committed.length);
        buffered = "";
        return out;
      }
      return "";
    },
    end(): string {
      // The regenerated answer was a prefix of what was already sent: nothing more to add.
      return "";
    },
  };
}

/**
 * Segments are online-only and never copied back; the final is a normal stored message that
 * notifies once: earlier parts of a long reply go silently, the done part carries the push text
 * (the start of the whole answer).
 */
function messageOptions(message: Pick<OutboxMessage, "body" | "kind">, wholeText: string) {
  if (message.kind !== "final") return { option: SEGMENT_OPTION };
  const done = (JSON.parse(message.body) as { done?: boolean }).done === true;
  return done ? { option: FINAL_OPTION, pushcontent: pushContent(wholeText) } : { option: FINAL_PART_OPTION };
}
