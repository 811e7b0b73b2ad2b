/**
 * The writer of one reply: every NIM message is first committed to the outbox together with the
 * reply's next seq (one transaction), then delivered through the transport, then marked sent. A
 * restart therefore resends exactly the committed but unconfirmed messages (same seq, same body,
 * same options) and continues from the committed text, so the user sees each seq once (clients
 * drop a repeated (stream_id, seq)) and exactly one done. The seq check in the commit also stops a
 * stale worker whose lease was taken over.
 *
 * One commit per message (issue 13): the "sent" mark of a delivered message is not a write of its
 * own but rides in the reply's next commit, and so does the transport's pre-send state (the native
 * in-flight marker) for the first message of that commit. What that costs: after a crash the
 * message(s) delivered since the last commit read as pending and are resent — the same seq and
 * body, which clients drop (custom), or an uncertain chunk the native transport continues in a new
 * stream message. What it must never cost is a second done, so a message with `done` is marked at
 * once after it is delivered, before the reply counts as finished. Marks still owed when a reply
 * stops short (shutdown, a crash-like fault) are written by {@link ReplyWriter.settle}.
 *
 * @module
 */
import type { Logger } from "pino";
import type { ReplySource } from "../generators/types.ts";
import type { SendBudget } from "../limits/types.ts";
import { isNimError } from "../nim/errors.ts";
import type { Reply, Repositories, SentMark } from "../storage/repositories.ts";
import type { Clock } from "./clock.ts";
import type { ReplyObserver } from "./observer.ts";
import type {
  DeliveryPreparation,
  OutboundMessage,
  ReplyAddress,
  ReplyStatus,
  ReplyTransport,
  TransportState,
} from "./transport/types.ts";

export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
}

export class DeliveryFailedError extends Error {
  override readonly name = "DeliveryFailedError";
}

export interface ReplyWriterOptions {
  address: ReplyAddress;
  reply: Reply;
  transport: ReplyTransport;
  repositories: Repositories;
  clock: Clock;
  logger: Pick<Logger, "error" | "warn">;
  observer?: ReplyObserver;
  sendBudget?: SendBudget;
  /** Aborts NIM calls in flight (shutdown, lease lost): the row stays pending and is resent later. */
  deliverySignal: AbortSignal;
  /** Told once when a message could not be delivered for good. */
  onDeliveryFailed: () => void;
}

export class ReplyWriter {
  /** Concatenation of every delta committed so far. */
  text: string;
  nextSeq: number;
  /** True once NIM accepted any message of this reply in this run. */
  sentAny = false;
  private previous: OutboundMessage | undefined;
  /** When NIM last accepted a message of this reply (the writer's clock). */
  private lastSentAt: number;
  /** Writes run one at a time (segments, keep-alives, the final): each takes the next seqs. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly state: TransportState;
  /** The transport state as stored (only ever changed after a successful write). */
  private stateValues: Record<string, string>;
  /** Messages delivered in this run whose "sent" mark is not stored yet (see the module comment). */
  private owedMarks: SentMark[] = [];

  constructor(private readonly options: ReplyWriterOptions) {
    this.text = options.reply.text;
    this.nextSeq = options.reply.next_seq;
    this.lastSentAt = options.clock.now();
    this.stateValues = options.reply.transport_state
      ? (JSON.parse(options.reply.transport_state) as Record<string, string>)
      : {};
    this.state = {
      get: (key) => this.stateValues[key],
      set: async (values) => {
        const next = { ...this.stateValues, ...values };
        // The owed marks go in the same transaction: a marker stored for a later send must never
        // be durable while a message delivered before it still reads as unsent (the native
        // transport would resend that one as certain, at an index NIM already has).
        const marks = this.owedMarks;
        await options.repositories.replies.setTransportState(
          options.reply.reply_to,
          JSON.stringify(next),
          options.clock.now(),
          { streamId: options.address.streamId, marks },
        );
        this.stateValues = next;
        this.owedMarks = this.owedMarks.filter((mark) => !marks.includes(mark));
      },
    };
  }

  get finished(): boolean {
    return this.options.reply.state === "finished";
  }

  /** Most characters one segment may carry on this transport. */
  maxDeltaCharacters(): number {
    return this.options.transport.maxDeltaCharacters(this.options.address);
  }

  /**
   * Stores the "sent" marks still owed (one statement; nothing when none is owed). For a reply that
   * stops without a final while its worker still holds it (shutdown): the next worker then resends
   * nothing that was delivered.
   */
  settle(): Promise<void> {
    return this.serialize(() => this.storeOwedMarks());
  }

  private async storeOwedMarks(): Promise<void> {
    const marks = this.owedMarks;
    if (marks.length === 0) return;
    await this.options.repositories.replies.markSent(this.options.address.streamId, marks, this.options.clock.now());
    this.owedMarks = this.owedMarks.filter((mark) => !marks.includes(mark));
  }

  /** Sends committed but unconfirmed messages first, in seq order, identical to the first try. */
  async resendPending(): Promise<void> {
    const rows = await this.options.repositories.replies.outbox(this.options.address.streamId);
    // The text as it stood when each row was committed: a transport that must repeat what an
    // uncertain message carried (native streams) needs the text up to that message, not beyond.
    let prefix = "";
    for (const row of rows) {
      prefix += row.delta;
      const message: OutboundMessage = {
        seq: row.seq,
        kind: row.kind === "final" ? "final" : "segment",
        delta: row.delta,
        done: row.done === 1,
        body: row.body,
        ...(row.options ? { options: row.options } : {}),
        ...(row.kind === "final" && this.options.reply.final_status
          ? { status: this.options.reply.final_status as ReplyStatus }
          : {}),
      };
      this.previous = message;
      if (row.state === "pending") await this.deliver(message, prefix);
    }
  }

  /** Runs `work` after every write queued before it. */
  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Commits and delivers one delta. */
  writeSegment(delta: string): Promise<void> {
    if (delta === "") return Promise.resolve();
    return this.serialize(() => this.writeSegmentNow(delta));
  }

  /**
   * Sends the transport's keep-alive when one is due (a native stream message must see a chunk at
   * least every 30 s while the generator is quiet); a no-op for transports without one.
   */
  /** How often the pipeline should call {@link keepAliveIfDue}; undefined: the transport does not say. */
  keepAliveCheckMs(): number | undefined {
    return this.options.transport.keepAliveCheckMs;
  }

  keepAliveIfDue(): Promise<void> {
    const { transport, address, clock } = this.options;
    if (!transport.encodeKeepAlive || !transport.keepAliveDue) return Promise.resolve();
    return this.serialize(async () => {
      if (!transport.keepAliveDue?.(this.previous, this.lastSentAt, clock.now())) return;
      const message = transport.encodeKeepAlive?.(address, {
        seq: this.nextSeq,
        ...(this.previous ? { previous: this.previous } : {}),
      });
      if (!message) return;
      const prepared = await this.commit([message]);
      await this.deliver(message, this.text, prepared);
    });
  }

  private async writeSegmentNow(delta: string): Promise<void> {
    const messages = this.options.transport.encodeSegment(this.options.address, {
      seq: this.nextSeq,
      delta,
      committedText: this.text,
      ...(this.previous ? { previous: this.previous } : {}),
    });
    const prepared = await this.commit(messages);
    for (const message of messages) await this.deliver(message, this.text, prepared);
  }

  /** Commits every final part in one transaction, then delivers them; false when one could not go. */
  writeFinal(status: ReplyStatus, sources?: ReplySource[]): Promise<boolean> {
    return this.serialize(() => this.writeFinalNow(status, sources));
  }

  private async writeFinalNow(status: ReplyStatus, sources?: ReplySource[]): Promise<boolean> {
    const messages = this.options.transport.encodeFinal(this.options.address, {
      firstSeq: this.nextSeq,
      text: this.text,
      status,
      ...(sources?.length ? { sources } : {}),
      ...(this.previous ? { previous: this.previous } : {}),
    });
    const prepared = await this.commit(messages, status);
    try {
      // The done part is marked at once when delivered (see deliver): the reply is finished only then.
      for (const message of messages) await this.deliver(message, this.text, prepared);
      return true;
    } catch (error) {
      if (error instanceof DeliveryFailedError) {
        // Parts delivered before the one NIM refused: the reply ends here, nothing commits after.
        await this.storeOwedMarks();
        return false;
      }
      throw error;
    }
  }

  /**
   * Commits `messages` with the marks owed so far and, for the first of them, the state the
   * transport wants stored before it is sent; returns that preparation for `deliver`.
   */
  private async commit(
    messages: OutboundMessage[],
    finalStatus?: ReplyStatus,
  ): Promise<DeliveryPreparation | undefined> {
    const [first] = messages;
    const prepared = first
      ? this.options.transport.prepareDelivery?.(this.options.address, first, this.state)
      : undefined;
    const nextState = prepared ? { ...this.stateValues, ...prepared.state } : undefined;
    const marks = this.owedMarks;
    const committed = await this.options.repositories.replies.commitOutbox(
      // The reply's own key: in a team that is the inbox key `msgidServer#bot`, while the
      // address's replyTo is NIM's id that clients see.
      { replyTo: this.options.reply.reply_to, streamId: this.options.address.streamId },
      messages.map((message) => ({
        seq: message.seq,
        kind: message.kind,
        body: message.body,
        delta: message.delta,
        done: message.done,
        ...(message.options ? { options: message.options } : {}),
      })),
      this.options.clock.now(),
      finalStatus,
      { sent: marks, ...(nextState ? { transportState: JSON.stringify(nextState) } : {}) },
    );
    if (!committed) throw new LeaseLostError("seq already committed by another worker");
    this.owedMarks = this.owedMarks.filter((mark) => !marks.includes(mark));
    if (nextState) this.stateValues = nextState;
    for (const message of messages) {
      this.nextSeq = message.seq + 1;
      this.text += message.delta;
      this.previous = message;
    }
    return prepared;
  }

  private async deliver(
    message: OutboundMessage,
    committedText = this.text,
    prepared?: DeliveryPreparation,
  ): Promise<void> {
    const { clock, observer, repositories, address } = this.options;
    if (this.options.deliverySignal.aborted) throw new LeaseLostError("delivery aborted");
    const startedAt = clock.now();
    try {
      // Waiting here spreads a burst, streams taking turns; if the budget fails (Redis down), NIM's
      // 416 and the client's backoff still protect us, so the send goes ahead.
      await this.options.sendBudget?.acquire("message", this.options.deliverySignal).catch(() => undefined);
      const result = await this.options.transport.deliver(address, message, {
        state: this.state,
        signal: this.options.deliverySignal,
        committedText,
        ...(prepared?.seq === message.seq ? { prepared } : {}),
      });
      this.owedMarks.push({ seq: message.seq, nimMsgid: result.nimMessageId ?? null });
      // The done message's mark cannot wait for a next commit: resent after a restart, it would
      // be a second done. So the reply is finished only once it is stored.
      if (message.done) await this.storeOwedMarks();
      this.lastSentAt = clock.now();
      if (!this.sentAny) {
        this.sentAny = true;
        // Observers key replies as started/finished do: by the reply's own key (msgidServer#bot in a team).
        observer?.firstSegment?.(this.options.reply.reply_to);
      }
      observer?.sent?.(message.kind, "ok", clock.now() - startedAt);
      if (message.delta !== "") {
        observer?.delta?.(this.options.reply.reply_to, this.options.reply.conversation_id, message.delta);
      }
    } catch (error) {
      // Shutdown or a lost lease cut the call short: the row stays pending for whoever continues.
      if (this.options.deliverySignal.aborted) throw new LeaseLostError("delivery aborted");
      // Not an answer from NIM (a bug, a crash-like fault): the row stays pending and the job
      // fails; the next attempt resends it (attempts are bounded by REPLY_MAX_ATTEMPTS).
      if (!isNimError(error)) throw error;
      const code = isNimError(error) ? String(error.code) : "unknown";
      observer?.sent?.(message.kind, code, clock.now() - startedAt);
      await repositories.replies.markFailed(address.streamId, message.seq, clock.now());
      await repositories.audit.record(
        "reply.send_failed",
        this.options.reply.reply_to,
        {
          seq: message.seq,
          kind: message.kind,
          code,
          retryable: isNimError(error) ? error.retryable : undefined,
          message: (error as Error).message,
          bot: address.botAccid,
        },
        clock.now(),
      );
      if (address.scope === "team" && (code === "804" || code === "109404")) {
        // The bot is not a member of the team: no retry can help; the operator must add it.
        await repositories.audit.record(
          "reply.not_in_team",
          this.options.reply.reply_to,
          { bot: address.botAccid, team: address.to, code },
          clock.now(),
        );
      }
      this.options.logger.error(
        { msgidServer: this.options.reply.reply_to, seq: message.seq, code },
        "NIM send failed",
      );
      this.options.onDeliveryFailed();
      throw new DeliveryFailedError("message could not be delivered");
    }
  }
}
