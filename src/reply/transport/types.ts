/**
 * The transport seam: how one reply's messages are encoded and delivered to NIM. The pipeline
 * decides *what* to say (deltas, the final status, the whole text); a transport decides *how* it
 * travels: custom-message segments (`custom.ts`, works with every SDK) or NIM's v2 stream messages
 * (`native.ts`). Types only: anything may import this without pulling in an implementation.
 *
 * Durability contract shared by every transport: the pipeline commits the messages a transport
 * encodes (seq, body, flags) to the outbox in one transaction *before* any of them is sent, and a
 * restart resends a committed but unconfirmed message with exactly the committed body. So an
 * encoding must be a pure function of its inputs, and everything a later message needs from NIM's
 * answer to an earlier one (a stream message's server id) goes through `TransportState`.
 *
 * "Unconfirmed" is wider than "not delivered": a delivered message is marked sent only with the
 * reply's next commit (or a state write, or the reply's end), so after a crash the last message(s)
 * delivered are resent. A transport must treat a resend as possibly already applied by NIM.
 *
 * @module
 */

import type { ReplySource } from "../../generators/types.ts";

export type ReplyStatus = "ok" | "error" | "blocked" | "limited" | "stopped";

/** Where a reply goes and what it answers. */
export interface ReplyAddress {
  /** The bot account that answers. */
  botAccid: string;
  /** `p2p`: `to` is the user's accid; `team`: `to` is the team id (tid). */
  scope: "p2p" | "team";
  to: string;
  /** The user who asked (in a team, the one to mention). */
  askerAccid: string;
  /** The asker's nickname from the message copy (hostile input: display only after cleaning). */
  askerNick?: string;
  /** NIM msgidServer of the user message this reply answers. */
  replyTo: string;
  /** That message's client id and time, for native quoting (thread reply) where known. */
  replyToClientId?: string;
  replyToTimestamp?: number;
  /** The reply's own id, stable across restarts. */
  streamId: string;
}

/** One NIM message of a reply, exactly as committed to the outbox before it is sent. */
export interface OutboundMessage {
  /** Position in the reply, gapless from 0 (one outbox row each). */
  seq: number;
  kind: "segment" | "final";
  /** Text this message adds to the visible reply ("" for finals). */
  delta: string;
  /** True on the reply's very last message. */
  done: boolean;
  /** The transport's encoded payload; never changes once committed, so a resend is identical. */
  body: string;
  /** Transport-specific delivery options (JSON), committed with the body for the same reason. */
  options?: string;
  /** On final messages: how the reply ended (lets another transport re-encode it, see fallback.ts). */
  status?: ReplyStatus;
}

/** A reply's small key/value state that must survive a restart (e.g. a stream message's server id). */
export interface TransportState {
  get(key: string): string | undefined;
  /** Durably stores the values before it resolves. */
  set(values: Record<string, string>): Promise<void>;
}

export interface SegmentInput {
  seq: number;
  delta: string;
  /** The reply's text committed before this delta. */
  committedText: string;
  /** The last message committed before this one, if any. */
  previous?: OutboundMessage;
}

export interface FinalInput {
  firstSeq: number;
  /** The whole visible reply. */
  text: string;
  status: ReplyStatus;
  previous?: OutboundMessage;
  /** Citations the generator reported (native streams send them as `rag_info_list`). */
  sources?: ReplySource[];
}

export interface DeliveryContext {
  state: TransportState;
  /** The reply's cancellation signal: a transport must not start a new NIM call once it fired. */
  signal: AbortSignal;
  /** The whole text committed so far (push text of the final, for example). */
  committedText: string;
  /**
   * What this transport's `prepareDelivery` returned for this message, when the pipeline stored
   * its state together with the message's commit: `deliver` must then not store it again, and
   * must decide as it did then (the stored state already says this message is on its way).
   */
  prepared?: DeliveryPreparation;
}

/**
 * The state a transport must have stored before it sends one message (the native transport's
 * in-flight marker), computed ahead of the send without side effects so the pipeline can store it
 * in the transaction that commits the message instead of in a write of its own.
 */
export interface DeliveryPreparation {
  /** The message it was prepared for. */
  readonly seq: number;
  /** Values to store in the reply's TransportState with the commit. */
  readonly state: Record<string, string>;
}

export interface DeliveryResult {
  /** NIM's id of what was delivered, kept on the outbox row (digits, as a string). */
  nimMessageId?: string;
}

export interface ReplyTransport {
  readonly mode: "custom" | "native";
  /** The most characters of text one segment may carry for this address. */
  maxDeltaCharacters(address: ReplyAddress): number;
  /**
   * Encodes one delta as one or more messages with consecutive seqs starting at `input.seq`
   * (more than one when the delta crosses a transport limit, e.g. a full stream message).
   */
  encodeSegment(address: ReplyAddress, input: SegmentInput): OutboundMessage[];
  /** Encodes the end of the reply (every final part); the last message has `done: true`. */
  encodeFinal(address: ReplyAddress, input: FinalInput): OutboundMessage[];
  /**
   * Delivers one committed message. Throws the NIM client's error when NIM refused it or it could
   * not be delivered within the retry policy; the pipeline then ends the reply.
   */
  deliver(address: ReplyAddress, message: OutboundMessage, context: DeliveryContext): Promise<DeliveryResult>;
  /**
   * Optional: the state `deliver` would store before sending `message`, from the state as it is
   * now. Called just before the message is committed (never for a resend); the pipeline stores
   * `state` in that commit and hands the preparation to `deliver` as `context.prepared`. Undefined:
   * nothing to store ahead.
   */
  prepareDelivery?(
    address: ReplyAddress,
    message: OutboundMessage,
    state: Pick<TransportState, "get">,
  ): DeliveryPreparation | undefined;
  /**
   * Optional, for transports whose open message dies after a quiet gap (NIM ends a stream message
   * after 30 s without a chunk): whether a keep-alive is due after `previous` was sent at `lastSentAt`…
   */
  keepAliveDue?(previous: OutboundMessage | undefined, lastSentAt: number, now: number): boolean;
  /**
   * How often (ms) the pipeline should ask `keepAliveDue` while the generator is quiet: short
   * enough that the interval plus one check period stays under the transport's gap.
   */
  readonly keepAliveCheckMs?: number;
  /** …and the keep-alive message (no text) to commit and send then; undefined when none is needed. */
  encodeKeepAlive?(
    address: ReplyAddress,
    input: { seq: number; previous?: OutboundMessage },
  ): OutboundMessage | undefined;
}
