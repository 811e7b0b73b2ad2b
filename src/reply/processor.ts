/**
 * One reply, from an accepted inbox message to its final NIM message: the composition of the reply
 * units, each in its own module.
 *
 *   claim (per-conversation order, lease) → plan (admission, once, committed) → resend pending →
 *   answer (generation → segmenter → writer) or say / reset / skip → final → complete → next
 *
 * Every attempt follows the committed plan. A reply is cancelled through one signal
 * (reply/cancellation.ts): a stop or recall ends it with `stopped`; shutdown releases its lease at
 * once so another worker continues within seconds; a lost lease or failed delivery ends the work.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { ChatTurn, ReplyGenerator, ReplySource } from "../generators/types.ts";
import type { SendBudget } from "../limits/types.ts";
import type { MediaTurn } from "../media/index.ts";
import type { Moderator } from "../moderation/types.ts";
import type { ReplyJob } from "../queue/types.ts";
import type { InboxMessage, Reply, Repositories } from "../storage/repositories.ts";
import { estimatePromptTokens, estimateTokens } from "../usage/estimate.ts";
import type { UsageRecorder } from "../usage/types.ts";
import { type AdmissionOptions, createAdmission } from "./admission.ts";
import { produceAnswer } from "./answer.ts";
import { abort, type CancelReason, cancelReasonOf, ReplyCancellations } from "./cancellation.ts";
import type { Clock } from "./clock.ts";
import { messageIdOfInboxKey } from "./conversation.ts";
import { gatherBurst, isMergeable } from "./debounce.ts";
import { startLeaseKeeper } from "./lease-keeper.ts";
import { apologyText, unreadableMediaText } from "./messages.ts";
import type { ReplyObserver } from "./observer.ts";
import { parsePayload } from "./payload.ts";
import { parsePlan, type ReplyPlan, serializePlan } from "./plan.ts";
import type { ReplyAddress, ReplyStatus, ReplyTransport } from "./transport/types.ts";
import { DeliveryFailedError, LeaseLostError, ReplyWriter } from "./writer.ts";

/** What the answer stage needs to know about the bot that answers. */
export interface BotProfile {
  accid: string;
  systemPrompt: string;
  generator: ReplyGenerator;
}

export interface ReplyProcessorOptions {
  repositories: Repositories;
  transport: ReplyTransport;
  /** The bot of a conversation; undefined when the bot is unknown (the message is then dropped). */
  bot: (accid: string) => BotProfile | undefined;
  pacingMs: number;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  historyTurns: number;
  historyCharacters: number;
  /** Attempts (claims) after which a reply ends with the error apology instead of trying again. */
  maxAttempts: number;
  clock: Clock;
  logger: Logger;
  /** Identifies this worker in inbox leases. */
  workerId: string;
  /** How long a claim holds without renewal; renewed every third of it. */
  leaseMs: number;
  observer?: ReplyObserver;
  replyLimits?: AdmissionOptions["replyLimits"];
  moderator?: Moderator;
  respectNimAntispam?: boolean;
  sendBudget?: SendBudget;
  /** Operator console: daily token budgets and pauses, checked by admission. */
  budget?: AdmissionOptions["budget"];
  budgetSpentText?: string;
  paused?: AdmissionOptions["paused"];
  /** Operator console: stores what each answer cost (reported by the generator, or estimated). */
  usage?: UsageRecorder;
  /** Schedules the next message of a conversation once a reply completes. */
  enqueue: (job: ReplyJob) => Promise<void>;
  /** REPLY_DEBOUNCE_MS: merge a burst of one conversation's messages into one turn (0 = off). */
  debounceMs?: number;
  /**
   * Non-text messages (pictures, voice, files, locations): what the user's turn is (src/media
   * `prepareMediaTurn`); undefined when the attachment cannot be read at all.
   */
  media?: (message: InboxMessage, signal: AbortSignal) => Promise<MediaTurn | undefined>;
}

export interface ReplyProcessor {
  /** Runs one job; `signal` is the queue's (it fires on shutdown). Throws only unexpected errors. */
  process(job: ReplyJob, signal?: AbortSignal): Promise<void>;
  /** Replies this process is producing, by msgidServer and conversation (stop, recall). */
  readonly cancellations: ReplyCancellations;
}

export function createReplyProcessor(options: ReplyProcessorOptions): ReplyProcessor {
  const { repositories, clock, logger, observer } = options;
  const cancellations = new ReplyCancellations();
  const decide = createAdmission({
    repositories,
    clock,
    logger,
    ...(options.replyLimits ? { replyLimits: options.replyLimits } : {}),
    ...(options.moderator ? { moderator: options.moderator } : {}),
    ...(options.respectNimAntispam !== undefined ? { respectNimAntispam: options.respectNimAntispam } : {}),
    ...(options.budget ? { budget: options.budget } : {}),
    ...(options.budgetSpentText ? { budgetSpentText: options.budgetSpentText } : {}),
    ...(options.paused ? { paused: options.paused } : {}),
  });

  // A second job for a message this process already works on (a queue redelivery) is turned away
  // here: the claim would succeed, since this worker holds the lease.
  const inProgress = new Set<string>();

  async function process(job: ReplyJob, queueSignal?: AbortSignal): Promise<void> {
    if (inProgress.has(job.msgidServer)) return;
    inProgress.add(job.msgidServer);
    try {
      await processOnce(job, queueSignal);
    } finally {
      inProgress.delete(job.msgidServer);
    }
  }

  async function processOnce(job: ReplyJob, queueSignal?: AbortSignal): Promise<void> {
    const waiting = await repositories.inbox.get(job.msgidServer);
    if (!waiting || waiting.status === "done" || waiting.status === "failed") return;
    const inbox = await repositories.inbox.claim(job.msgidServer, options.workerId, options.leaseMs);
    if (!inbox) return; // another worker has it, or an earlier message of its conversation is first
    const controller = cancellations.open(inbox.msgid_server, inbox.conversation_id);
    const onQueueAbort = () => abort(controller, "shutdown");
    if (queueSignal?.aborted) onQueueAbort();
    else queueSignal?.addEventListener("abort", onQueueAbort, { once: true });
    // NIM calls in flight are cut only when someone else will continue (shutdown, lost lease); a
    // stop or a recall lets them finish so no committed seq goes missing before the final.
    const delivery = new AbortController();
    const onReplyAbort = () => {
      const reason = cancelReasonOf(controller.signal);
      if (reason === "shutdown" || reason === "lease-lost") delivery.abort(controller.signal.reason);
    };
    controller.signal.addEventListener("abort", onReplyAbort, { once: true });
    const keeper = startLeaseKeeper({
      renew: () => repositories.inbox.renewLease(inbox.msgid_server, options.workerId, options.leaseMs),
      leaseMs: options.leaseMs,
      clock,
      logger,
      onLost: () => abort(controller, "lease-lost"),
    });
    observer?.started?.(inbox.msgid_server, inbox.received_at);
    let completed = false;
    try {
      completed = await run(inbox, controller, delivery.signal);
    } catch (error) {
      if (!(error instanceof LeaseLostError || error instanceof DeliveryFailedError)) throw error;
      logger.warn({ msgidServer: inbox.msgid_server, reason: error.message }, "reply interrupted");
    } finally {
      keeper.stop();
      queueSignal?.removeEventListener("abort", onQueueAbort);
      cancellations.close(inbox.msgid_server);
      const reason = cancelReasonOf(controller.signal);
      if (!completed && reason === "shutdown") {
        // Hand it back now: the next start or another instance continues within seconds.
        await repositories.inbox
          .release(inbox.msgid_server, options.workerId, clock.now(), { refundAttempt: true })
          .catch((error: unknown) => logger.warn({ err: error }, "could not release a lease at shutdown"));
        logger.info({ msgidServer: inbox.msgid_server }, "reply handed back at shutdown");
      } else if (!completed && reason === "lease-lost") {
        logger.warn({ msgidServer: inbox.msgid_server }, "lease lost: another worker continues this reply");
      }
    }
    if (completed) await scheduleNext(inbox.conversation_id);
  }

  /** Returns true when the reply is complete (its inbox row is done or failed). */
  async function run(inbox: InboxMessage, controller: AbortController, deliverySignal: AbortSignal): Promise<boolean> {
    const existing = await repositories.replies.get(inbox.msgid_server);
    let plan: ReplyPlan;
    if (existing?.plan) plan = parsePlan(existing.plan);
    else if (existing && existing.next_seq > 0)
      plan = { action: "answer" }; // first-version row
    else plan = await decideWithBurst(inbox, controller.signal);
    if (controller.signal.aborted) throw new LeaseLostError("cancelled while waiting for a burst to end");
    const reply = await repositories.replies.getOrCreate(
      {
        replyTo: inbox.msgid_server,
        streamId: randomUUID(),
        userAccid: inbox.from_accid,
        conversationId: inbox.conversation_id,
        plan: serializePlan(plan),
      },
      clock.now(),
    );
    // Another attempt may have committed its plan first: the stored one is the plan.
    plan = parsePlan(reply.plan);
    if (plan.action === "answer" && plan.merged?.length) await markMerged(inbox, plan.merged);
    const address = addressOf(inbox, reply);
    const writer = new ReplyWriter({
      address,
      reply,
      transport: options.transport,
      repositories,
      clock,
      logger,
      ...(observer ? { observer } : {}),
      ...(options.sendBudget ? { sendBudget: options.sendBudget } : {}),
      deliverySignal,
      onDeliveryFailed: () => abort(controller, "delivery-failed"),
    });
    try {
      return await followPlan(inbox, plan, reply, writer, controller);
    } finally {
      // Marks of delivered messages still owed to a next commit that will not come (shutdown, a
      // fault): stored while this worker still holds the lease, so the next one resends nothing
      // that was delivered. Not after the lease was lost: the new owner resends those (safely).
      if (cancelReasonOf(controller.signal) !== "lease-lost") {
        await writer
          .settle()
          .catch((error: unknown) =>
            logger.warn({ err: error, msgidServer: inbox.msgid_server }, "could not store the sent marks owed"),
          );
      }
    }
  }

  /** Resends what a crashed attempt left unconfirmed, then carries out the reply's plan. */
  async function followPlan(
    inbox: InboxMessage,
    plan: ReplyPlan,
    reply: Reply,
    writer: ReplyWriter,
    controller: AbortController,
  ): Promise<boolean> {
    const finishWith = async (
      status: ReplyStatus,
      recordTurn: boolean,
      deliveryFailed = false,
      sources?: ReplySource[],
    ) => {
      const delivered = await writer.writeFinal(status, sources);
      await complete(inbox, writer, status, delivered && !deliveryFailed, recordTurn);
      return true;
    };
    try {
      await writer.resendPending();
    } catch (error) {
      if (!(error instanceof DeliveryFailedError)) throw error;
      await complete(inbox, writer, "error", false, false);
      return true;
    }
    if (reply.state === "finished") {
      await complete(inbox, writer, (reply.final_status as ReplyStatus | null) ?? "ok", true, plan.action === "answer");
      return true;
    }
    if (inbox.recalled === 1 && plan.action === "answer" && writer.nextSeq > 0) {
      // Recalled while a crashed attempt had started answering: end it as a stop would.
      return finishWith("stopped", true);
    }
    if (inbox.attempts > options.maxAttempts) {
      // A poison message (it crashed or failed every attempt): say so once instead of looping.
      await repositories.audit.record("reply.gave_up", inbox.msgid_server, { attempts: inbox.attempts }, clock.now());
      await writer.writeSegment((writer.text === "" ? "" : "\n\n") + apologyText("error"));
      return finishWith("error", false);
    }
    switch (plan.action) {
      case "skip":
        await complete(inbox, writer, "stopped", true, false, plan.reason);
        return true;
      case "say":
        if (writer.nextSeq === 0) await writer.writeSegment(plan.text);
        return finishWith(plan.status, false);
      case "reset":
        await repositories.conversations.reset(inbox.conversation_id, clock.now());
        if (writer.nextSeq === 0) await writer.writeSegment(plan.text);
        return finishWith("ok", false);
      case "answer":
        return answer(inbox, plan, writer, controller, finishWith);
    }
  }

  async function answer(
    inbox: InboxMessage,
    plan: Extract<ReplyPlan, { action: "answer" }>,
    writer: ReplyWriter,
    controller: AbortController,
    finishWith: (
      status: ReplyStatus,
      recordTurn: boolean,
      deliveryFailed?: boolean,
      sources?: ReplySource[],
    ) => Promise<boolean>,
  ): Promise<boolean> {
    const bot = options.bot(inbox.bot_accid);
    if (!bot) {
      logger.warn({ msgidServer: inbox.msgid_server, bot: inbox.bot_accid }, "no such bot: message dropped");
      await complete(inbox, writer, "error", true, false, "unknown bot");
      return true;
    }
    const conversationId = inbox.conversation_id;
    if (!(await repositories.conversations.has(conversationId, inbox.msgid_server, "user"))) {
      await repositories.conversations.append(
        {
          conversationId,
          userAccid: inbox.from_accid,
          role: "user",
          content: plan.text ?? inbox.text,
          replyTo: inbox.msgid_server,
        },
        clock.now(),
      );
    }
    const history: ChatTurn[] = await repositories.conversations.recent(
      conversationId,
      options.historyTurns,
      options.historyCharacters,
      inbox.msgid_server,
    );
    const account = await repositories.accounts.findByAccid(inbox.from_accid);
    // A picture for a vision model: its content parts are prepared again (bytes are never stored).
    const messageContent = plan.vision ? (await options.media?.(inbox, controller.signal))?.modelContent : undefined;
    if (plan.prefix && writer.nextSeq === 0) await writer.writeSegment(`${plan.prefix}\n\n`);
    let sources: ReplySource[] | undefined;
    let reported: { promptTokens: number; completionTokens: number } | undefined;
    const textBefore = writer.text;
    const result = await produceAnswer({
      writer,
      generator: bot.generator,
      request: {
        userId: account?.site_user_id,
        accid: inbox.from_accid,
        message: plan.text ?? inbox.text,
        history,
        systemPrompt: bot.systemPrompt,
        ...(messageContent?.length ? { messageContent } : {}),
        reportSources: (reportedSources) => {
          sources = reportedSources;
        },
        reportUsage: (usage) => {
          reported = usage;
        },
      },
      replyTo: inbox.msgid_server,
      signal: controller.signal,
      cancel: (reason: CancelReason) => abort(controller, reason),
      pacingMs: options.pacingMs,
      idleTimeoutMs: options.idleTimeoutMs,
      totalTimeoutMs: options.totalTimeoutMs,
      clock,
      logger,
      ...(observer ? { observer } : {}),
      ...(options.moderator ? { moderator: options.moderator } : {}),
      onBlocked: async (reason) => {
        await repositories.audit.record(
          "reply.blocked",
          inbox.msgid_server,
          { stage: "output", reason, bot: inbox.bot_accid },
          clock.now(),
        );
      },
    });
    if (options.usage) {
      // Stored even when the answer was cut short: the model was paid for what it produced.
      await options.usage
        .record({
          replyTo: inbox.msgid_server,
          conversationId,
          botAccid: inbox.bot_accid,
          userAccid: inbox.from_accid,
          promptTokens:
            reported?.promptTokens ??
            estimatePromptTokens([bot.systemPrompt, ...history.map((turn) => turn.content), plan.text ?? inbox.text]),
          completionTokens: reported?.completionTokens ?? estimateTokens(writer.text.slice(textBefore.length)),
          estimated: reported === undefined,
          at: clock.now(),
        })
        .catch((error: unknown) => logger.warn({ err: error, msgidServer: inbox.msgid_server }, "usage not stored"));
    }
    if (result.kind === "interrupted") {
      if (result.reason !== "delivery-failed") return false;
      // NIM refused for good: end the stream with an error final where NIM still takes one.
      await finishWith("error", false, true);
      return true;
    }
    return finishWith(result.status, true, false, sources);
  }

  async function complete(
    inbox: InboxMessage,
    writer: ReplyWriter,
    status: ReplyStatus,
    delivered: boolean,
    recordTurn: boolean,
    skipped?: string,
  ): Promise<void> {
    const now = clock.now();
    // A stopped answer keeps the text the user saw: the next turn's generator sees it.
    if (
      recordTurn &&
      (status === "ok" || (status === "stopped" && writer.text !== "")) &&
      !(await repositories.conversations.has(inbox.conversation_id, inbox.msgid_server, "assistant"))
    ) {
      await repositories.conversations.append(
        {
          conversationId: inbox.conversation_id,
          userAccid: inbox.from_accid,
          role: "assistant",
          content: writer.text,
          replyTo: inbox.msgid_server,
        },
        now,
      );
    }
    await repositories.inbox.finish(
      inbox.msgid_server,
      delivered ? "done" : "failed",
      now,
      delivered ? null : "delivery failed",
    );
    await repositories.audit.record(
      skipped ? "reply.skipped" : delivered ? "reply.final" : "reply.failed",
      inbox.msgid_server,
      skipped
        ? { reason: skipped, bot: inbox.bot_accid }
        : { status, seqs: writer.nextSeq, characters: writer.text.length, bot: inbox.bot_accid },
      now,
    );
    observer?.finished?.(
      inbox.msgid_server,
      skipped ? "skipped" : delivered ? status : "failed",
      inbox.bot_accid,
      inbox.conversation_id,
    );
  }

  /** Admission, after waiting out a burst when REPLY_DEBOUNCE_MS is set; the burst is judged as one text. */
  async function decideWithBurst(inbox: InboxMessage, signal: AbortSignal): Promise<ReplyPlan> {
    if (inbox.message_type !== "text") return decideMedia(inbox, signal);
    if (!options.debounceMs || !isMergeable(inbox)) return decide(inbox);
    const burst = await gatherBurst(inbox, { repositories, clock, debounceMs: options.debounceMs, signal });
    if (burst.merged.length === 0) return decide(inbox);
    const plan = await decide({ ...inbox, text: burst.text });
    return plan.action === "answer" ? { action: "answer", text: burst.text, merged: burst.merged } : plan;
  }

  /**
   * A non-text message is never met with silence: a bilingual note where the bot cannot read it,
   * else the turn's text (transcript, excerpt, placeholder) is judged like any text.
   */
  async function decideMedia(inbox: InboxMessage, signal: AbortSignal): Promise<ReplyPlan> {
    if (inbox.recalled === 1) return { action: "skip", reason: "recalled" };
    const turn = await options.media?.(inbox, signal).catch((error: unknown) => {
      logger.warn({ err: error, msgidServer: inbox.msgid_server }, "media could not be prepared");
      return undefined;
    });
    if (!turn) return { action: "say", status: "ok", text: unreadableMediaText };
    await repositories.audit.record(
      "reply.media",
      inbox.msgid_server,
      { ...turn.outcome, bot: inbox.bot_accid },
      clock.now(),
    );
    if (turn.note) return { action: "say", status: "ok", text: turn.note };
    const plan = await decide({ ...inbox, text: turn.userText });
    if (plan.action !== "answer") return plan;
    return {
      action: "answer",
      text: turn.userText,
      ...(turn.replyPrefix ? { prefix: turn.replyPrefix } : {}),
      ...(turn.modelContent ? { vision: true } : {}),
    };
  }

  /** The later messages of a burst are answered by this reply: they are done (idempotent on resume). */
  async function markMerged(inbox: InboxMessage, merged: string[]): Promise<void> {
    for (const msgidServer of merged) {
      const row = await repositories.inbox.get(msgidServer);
      if (!row || row.status === "done" || row.status === "failed") continue;
      await repositories.inbox.finish(msgidServer, "done", clock.now());
      await repositories.audit.record("reply.merged", msgidServer, { into: inbox.msgid_server }, clock.now());
    }
  }

  async function scheduleNext(conversationId: string): Promise<void> {
    try {
      const next = await repositories.inbox.nextInConversation(conversationId);
      if (next) await options.enqueue({ msgidServer: next.msgid_server });
    } catch (error) {
      // The sweeper finds it later; the conversation only waits a sweep interval.
      logger.warn({ err: error, conversationId }, "could not schedule the next message of a conversation");
    }
  }

  return { process, cancellations };
}

function addressOf(inbox: InboxMessage, reply: Reply): ReplyAddress {
  const team = inbox.scope === "team" && inbox.team_id;
  const nick = parsePayload<{ fromNick: string }>(inbox.payload).fromNick;
  return {
    botAccid: inbox.bot_accid || inbox.to_accid,
    scope: team ? "team" : "p2p",
    to: team ? (inbox.team_id as string) : inbox.from_accid,
    askerAccid: inbox.from_accid,
    ...(typeof nick === "string" ? { askerNick: nick } : {}),
    // A team message that woke several bots is keyed msgidServer#bot; clients see NIM's id.
    replyTo: messageIdOfInboxKey(inbox.msgid_server),
    ...(inbox.msgid_client ? { replyToClientId: inbox.msgid_client } : {}),
    replyToTimestamp: inbox.msg_timestamp,
    streamId: reply.stream_id,
  };
}
