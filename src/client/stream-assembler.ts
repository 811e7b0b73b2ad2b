/**
 * Turns the `bot_stream` messages of im-bridge replies into one displayable state per reply.
 *
 * NIM does not promise what a front end would like: segments are online-only (an offline user
 * never gets them), a send that timed out may be retried (the same seq twice), and messages can
 * arrive out of order (reconnects, offline sync, history merged with live messages). The
 * assembler absorbs all of that:
 *
 * - every `(stream_id, seq)` counts once; repeats are dropped;
 * - deltas are shown in seq order, and only the contiguous run from seq 0: a delta after a gap is
 *   buffered until the gap fills, because showing it would glue text together with a hole in it;
 * - the final message is authoritative: its `text` replaces whatever the deltas built, so a lost
 *   segment, or no segments at all, still ends in the exact reply;
 * - a multi-part final is joined in part order once every part and the `done: true` message are in.
 *
 * State machine of one reply (`status` / `done`):
 *
 *     (first message) ──► streaming / false ──(done:true message + all final parts)──► ok|error|blocked|limited / true
 *
 * A finished reply never changes text or status again; later (late or repeated) messages only
 * update the bookkeeping fields.
 *
 * @module
 */
import {
  type BotStreamBody,
  type FinalStatus,
  parseBotStreamBody,
  parseJsonValue,
  type ReplyStatus,
} from "./bot-stream-body.ts";

/** What a front end needs to render one bot reply. Immutable: every change produces a new object. */
export interface ReplyState {
  /** The reply's `stream_id`. */
  readonly streamId: string;
  /** The `msgidServer` of the user message being answered (`reply_to`), "" if unknown. */
  readonly replyTo: string;
  /**
   * What can be shown now: while streaming, the deltas from seq 0 up to the first missing seq;
   * once done, the final text (which wins over the deltas).
   */
  readonly text: string;
  /** `streaming` until done, then the status of the final message. */
  readonly status: ReplyStatus;
  /** True once the `done: true` message and every final part have arrived. Never goes back. */
  readonly done: boolean;
  /**
   * While streaming: the seq that is missing while a later one has already arrived (the text is
   * held at this point until it comes). Undefined when nothing is missing or once done.
   */
  readonly waitingForSeq?: number;
  /** How many distinct seqs of this reply have arrived (repeats are not counted). */
  readonly receivedSeqs: number;
  /** When the last new message of this reply was accepted, from the assembler's clock (ms). */
  readonly updatedAt: number;
}

/** Called with the new state each time a reply changes. */
export type ReplyListener = (reply: ReplyState) => void;

export interface StreamAssemblerOptions {
  /**
   * Clock for `updatedAt`, in milliseconds. Defaults to `Date.now`; inject one in tests or to use
   * a server-synchronised time.
   */
  now?: () => number;
}

/** Everything known about one reply; the published ReplyState is derived from it. */
interface StreamRecord {
  readonly streamId: string;
  replyTo: string;
  /** Every seq seen, for dropping repeats: a retried send reuses its seq. */
  readonly seenSeqs: Set<number>;
  /** Segment deltas by seq (final messages are not segments). */
  readonly deltas: Map<number, string>;
  /** The contiguous run of deltas from seq 0, kept incrementally so each message costs O(1) on average. */
  shownText: string;
  /** The seq right after `shownText`: the next delta that can be appended. */
  nextShownSeq: number;
  /** The lowest seq not yet received (every seq below it is in). */
  firstMissingSeq: number;
  highestSeq: number;
  /** Final part texts by 1-based part index; a single final is stored as part 1 of 1. */
  readonly finalParts: Map<number, string>;
  /** `parts` of a multi-part final, once any part has arrived. */
  expectedParts?: number;
  /** The `done: true` message, once arrived. */
  doneMessage?: BotStreamBody;
  /** The status carried by the first final part, in case the done message lacks one. */
  partStatus?: FinalStatus;
  updatedAt: number;
  state: ReplyState;
}

/**
 * Assembles im-bridge's streamed replies (`bot_stream` custom messages) into displayable state,
 * one {@link ReplyState} per `stream_id`. Feed it every message body (the adapters turn NIM SDK
 * messages into bodies) and render from {@link StreamAssembler.onChange} or
 * {@link StreamAssembler.replies}.
 *
 * `get()` and `replies()` return the same objects until something changes, so they can serve as
 * snapshots for `useSyncExternalStore` and similar.
 *
 * @example
 * const assembler = new StreamAssembler();
 * assembler.onChange((reply) => renderBubble(reply.streamId, reply.text, reply.done));
 * assembler.accept({ kind: "bot_stream", stream_id: "s1", reply_to: "42", seq: 0, delta: "Hi", done: false });
 */
export class StreamAssembler {
  private readonly now: () => number;
  private readonly streams = new Map<string, StreamRecord>();
  private readonly listeners = new Set<ReplyListener>();
  /** Cached result of replies(), dropped on every change. */
  private repliesSnapshot: readonly ReplyState[] | undefined;

  constructor(options: StreamAssemblerOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Takes one message body (a parsed object or the JSON string) and returns the state of its
   * reply after it. Returns undefined, and changes nothing, for anything that is not a valid
   * `bot_stream` body or that contradicts what the reply already received (for example a second,
   * different final). A repeated `(stream_id, seq)` is dropped: the current state is returned and
   * listeners are not called. Never throws.
   */
  accept(body: unknown): ReplyState | undefined {
    const message = parseBotStreamBody(typeof body === "string" ? parseJsonValue(body) : body);
    if (message === undefined) return undefined;

    const existing = this.streams.get(message.stream_id);
    if (existing?.seenSeqs.has(message.seq)) return existing.state;
    if (existing !== undefined && !isConsistent(existing, message)) return undefined;

    const record = existing ?? this.createRecord(message);
    record.updatedAt = this.now();
    if (record.state.done) {
      // Text and status are final; a late segment or a retried part only moves the counters.
      markSeen(record, message.seq);
      record.state = Object.freeze({
        ...record.state,
        receivedSeqs: record.seenSeqs.size,
        updatedAt: record.updatedAt,
      });
    } else {
      store(record, message);
      record.state = deriveState(record);
    }
    this.repliesSnapshot = undefined;
    this.notify(record.state);
    return record.state;
  }

  /** The current state of one reply, or undefined if none of its messages has been accepted. */
  get(streamId: string): ReplyState | undefined {
    return this.streams.get(streamId)?.state;
  }

  /** Every reply, in the order their first message arrived. The same array until something changes. */
  replies(): readonly ReplyState[] {
    // Plain `if` rather than `??=`: the module stays within ES2020 syntax for older browser targets.
    if (this.repliesSnapshot === undefined) {
      this.repliesSnapshot = Object.freeze(Array.from(this.streams.values(), (record) => record.state));
    }
    return this.repliesSnapshot;
  }

  /**
   * Calls `listener` with the new state after every accepted message that changed a reply.
   * Returns a function that unsubscribes. A listener that throws does not disturb the assembler or
   * the other listeners; its error is rethrown asynchronously so it still reaches the console.
   */
  onChange(listener: ReplyListener): () => void {
    // Wrap so that subscribing the same function twice gives two independent subscriptions.
    const subscription: ReplyListener = (reply) => listener(reply);
    this.listeners.add(subscription);
    return () => {
      this.listeners.delete(subscription);
    };
  }

  /**
   * Forgets one reply, to bound memory in a long-lived page. Listeners are not called. A message of
   * that reply arriving later starts it afresh, so forget only replies that are done (or abandoned).
   */
  delete(streamId: string): boolean {
    this.repliesSnapshot = undefined;
    return this.streams.delete(streamId);
  }

  /** Forgets every reply (for example on logout). Listeners are not called. */
  clear(): void {
    this.repliesSnapshot = undefined;
    this.streams.clear();
  }

  private createRecord(message: BotStreamBody): StreamRecord {
    const record: StreamRecord = {
      streamId: message.stream_id,
      replyTo: message.reply_to,
      seenSeqs: new Set(),
      deltas: new Map(),
      shownText: "",
      nextShownSeq: 0,
      firstMissingSeq: 0,
      highestSeq: -1,
      finalParts: new Map(),
      updatedAt: 0,
      state: {
        streamId: message.stream_id,
        replyTo: message.reply_to,
        text: "",
        status: "streaming",
        done: false,
        receivedSeqs: 0,
        updatedAt: 0,
      },
    };
    this.streams.set(message.stream_id, record);
    return record;
  }

  private notify(reply: ReplyState): void {
    // Copy first: a listener may unsubscribe (itself or another) while we iterate.
    for (const listener of Array.from(this.listeners)) {
      try {
        listener(reply);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

/** Creates a {@link StreamAssembler}; for code that prefers factories to `new`. */
export function createStreamAssembler(options?: StreamAssemblerOptions): StreamAssembler {
  return new StreamAssembler(options);
}

/**
 * Whether a new (not repeated) message fits what the reply already has. Contradictions can only
 * come from a buggy or foreign sender; keeping the first version keeps the display stable.
 */
function isConsistent(record: StreamRecord, message: BotStreamBody): boolean {
  if (message.done && record.doneMessage !== undefined) return false; // a reply ends once
  if (message.parts !== undefined) {
    // All parts of one final agree on their number, and each part comes once.
    if (record.expectedParts !== undefined && record.expectedParts !== message.parts) return false;
    if (record.finalParts.has(message.part!)) return false;
    // A single final already ended the reply; parts cannot be added to it.
    if (record.doneMessage !== undefined && record.doneMessage.parts === undefined) return false;
  } else if (message.done && record.expectedParts !== undefined) {
    // A done message without part info cannot close a multi-part final.
    return false;
  }
  return true;
}

function markSeen(record: StreamRecord, seq: number): void {
  record.seenSeqs.add(seq);
  if (seq > record.highestSeq) record.highestSeq = seq;
  while (record.seenSeqs.has(record.firstMissingSeq)) record.firstMissingSeq += 1;
}

function store(record: StreamRecord, message: BotStreamBody): void {
  markSeen(record, message.seq);
  // The first message may come from an older sender without reply_to; take it when it shows up.
  if (record.replyTo === "" && message.reply_to !== "") record.replyTo = message.reply_to;

  if (message.parts !== undefined) {
    record.finalParts.set(message.part!, message.text ?? "");
    record.expectedParts = message.parts;
    if (record.partStatus === undefined) record.partStatus = message.status;
  } else if (message.done) {
    if (message.text !== undefined) {
      record.finalParts.set(1, message.text);
      record.expectedParts = 1;
    }
  } else {
    record.deltas.set(message.seq, message.delta);
    while (record.deltas.has(record.nextShownSeq)) {
      record.shownText += record.deltas.get(record.nextShownSeq);
      record.nextShownSeq += 1;
    }
  }
  if (message.done) record.doneMessage = message;
}

/** The final text if the reply is complete, otherwise undefined. */
function finalText(record: StreamRecord): string | undefined {
  const doneMessage = record.doneMessage;
  if (doneMessage === undefined) return undefined;
  if (record.expectedParts !== undefined) {
    if (record.finalParts.size < record.expectedParts) return undefined;
    let text = "";
    for (let part = 1; part <= record.expectedParts; part += 1) text += record.finalParts.get(part) ?? "";
    return text;
  }
  // A done message without `text` (outside the contract, but the classic delta protocol): the reply
  // is the deltas up to it plus its own delta, so it is complete once every earlier delta is in.
  return record.nextShownSeq >= doneMessage.seq ? record.shownText + doneMessage.delta : undefined;
}

function deriveState(record: StreamRecord): ReplyState {
  const text = finalText(record);
  if (text !== undefined) {
    return Object.freeze({
      streamId: record.streamId,
      replyTo: record.replyTo,
      text,
      status: record.doneMessage?.status ?? record.partStatus ?? "ok",
      done: true,
      receivedSeqs: record.seenSeqs.size,
      updatedAt: record.updatedAt,
    });
  }
  // A gap exists only if something after it has arrived; otherwise we are simply ahead of the sender.
  const hasGap = record.firstMissingSeq < record.highestSeq;
  return Object.freeze({
    streamId: record.streamId,
    replyTo: record.replyTo,
    text: record.shownText,
    status: "streaming",
    done: false,
    ...(hasGap ? { waitingForSeq: record.firstMissingSeq } : {}),
    receivedSeqs: record.seenSeqs.size,
    updatedAt: record.updatedAt,
  });
}
