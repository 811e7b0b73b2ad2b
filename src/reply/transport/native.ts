/**
 * The native transport (`NIM_STREAM_MODE=native`): a reply travels as NIM v2 stream messages
 * (nim-protocol §10.2), one bubble that NIM's clients render, store and sync natively.
 *
 * Wire rules kept here:
 * - chunk 0 of a stream message carries a deterministic `message_client_id` (a UUID-shaped hash of
 *   the reply's streamId and the stream message's number), later chunks the `message_server_id`
 *   NIM returned, written as a bare JSON number and kept as a string in between (it is 64-bit);
 * - `attachment.index` runs 0, 1, 2 … without gaps; exactly one chunk per stream message, its last,
 *   has `finish: 1`;
 * - one stream message carries at most {@link NATIVE_STREAM_TEXT_LIMIT} characters (UTF-16 code
 *   units, as NIM's Java counts): a delta that does not fit finishes the current stream message
 *   with the part that fits (cut between grapheme clusters) and continues in the next one, so
 *   `encodeSegment` may return several messages. A stream message that is exactly full stays open
 *   (its finish chunk may be empty), so a reply of exactly 5000 characters is one bubble.
 *
 * What the outbox holds (`OutboundMessage.body`) is not NIM's request but this transport's
 * description of one chunk ({@link NativeChunkBody}): which stream message, which index, its text,
 * and on the reply's last chunk the status and citations. `deliver` turns it into the request,
 * adding what only NIM's answers and the reply's state know (the server id, a remapped stream
 * message after a crash). So the committed body never changes, and a resend is identical.
 *
 * Visible to clients: the sender is the bot account; every stream message's first chunk and the
 * reply's last chunk carry `extension` (the message's server extension, `serverExtension` in the
 * v10 SDK), a JSON string `{"kind":"bot_stream","mode":"native","stream_id","reply_to","part",
 * "status"}` where status is "streaming" until the last chunk, which also has `"done": true` and
 * `"parts"`. In a team the extension also holds NIM UIKit's `yxAitMsg` for the asker, and the first
 * chunk asks NIM to force-push the asker. Where the user message's client id and time are known,
 * the first stream message quotes it natively (`thread_config.thread_reply`). Optional citations go
 * out as `rag_info_list` on the last chunk. UNCONFIRMED at NIM: whether an `extension` given on a
 * later chunk replaces the first one on the merged message (the emulator takes the newest); a client
 * that does not see the final extension still ends the bubble on `streamConfig.status` COMPLETE.
 *
 * Crash behaviour (decided here): a chunk is never sent twice with the same index, because a
 * repeated index is undefined behaviour at NIM. Before each POST the chunk's seq is written to the
 * reply's {@link TransportState} (`native.inflight`): by the pipeline, in the transaction that
 * commits the chunk ({@link NativeStreamTransport.prepareDelivery}), or here for a resend and for
 * the later chunks of one commit. A chunk NIM accepted is marked sent only with the reply's next
 * commit (or state write), so after a crash the last chunk delivered is still `native.inflight`
 * and pending: its resend is uncertain, like one whose answer was lost. The pipeline never lets a
 * marker get ahead of an earlier chunk's mark. When `deliver` is asked for a chunk that was
 * in flight before (a restart's resend), or for any chunk after one whose delivery failed, nobody
 * knows whether NIM applied the earlier one, so the reply *continues in a new stream message*
 * (a fresh client id; the rest of that logical stream message is renumbered from index 0) whose
 * first chunk repeats the text that stream message already had (taken from the delivery context's
 * committed text), so the new bubble is complete on its own. The abandoned stream message is ended
 * by NIM's 30-second gap rule and merged with what it got. Why not continue it: after a restart
 * longer than 30 s it is gone anyway, and within 30 s the next index is unknown. The cost: a
 * client that renders raw messages shows the abandoned partial bubble too (NativeStreamAssembler
 * shows only the replacement); never a gap, never a repeated index.
 *
 * The 30-second gap rule: while the generator is quiet the pipeline asks {@link keepAliveDue} and
 * sends {@link NativeStreamTransport.encodeKeepAlive}'s empty-text chunk every
 * {@link KEEP_ALIVE_INTERVAL_MS}. UNCONFIRMED at NIM: that an empty `text` is accepted and resets
 * the gap timer (the Java SDK does not forbid it; the emulator accepts it).
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { ReplySource } from "../../generators/types.ts";
import type { NimV2Client } from "../../nim/v2-client.ts";
import { graphemeClusters } from "../text-units.ts";
import type {
  DeliveryContext,
  DeliveryPreparation,
  DeliveryResult,
  FinalInput,
  OutboundMessage,
  ReplyAddress,
  ReplyStatus,
  ReplyTransport,
  SegmentInput,
  TransportState,
} from "./types.ts";

/** Most characters of text one stream message may carry; NIM terminates a longer one at once. */
export const NATIVE_STREAM_TEXT_LIMIT = 5000;
/** NIM ends a stream message after this long without a chunk. */
export const NIM_STREAM_GAP_MS = 30_000;
/**
 * How long the generator may be quiet before a keep-alive chunk goes out: 10 s under NIM's gap,
 * room for pacing, a slow NIM answer and a retry after frequency control.
 */
export const KEEP_ALIVE_INTERVAL_MS = 20_000;
/** Most citations sent per reply, and most characters of each citation field. */
export const MAX_SOURCES = 20;
const MAX_SOURCE_FIELD = 500;

export type { ReplySource };

/**
 * The final input the native transport understands: the seam's {@link FinalInput} plus optional
 * citations (a generator reports them through `GenerationRequest.reportSources`).
 */
export interface NativeFinalInput extends FinalInput {
  sources?: ReplySource[];
}

/** What the outbox stores for one chunk (the committed `body`, JSON). */
export interface NativeChunkBody {
  /** Marks a native chunk body, and its format version. */
  nim_stream: 1;
  /** The reply's stream message number, from 0. */
  message: number;
  /** The chunk's index within that stream message, from 0 without gaps. */
  index: number;
  finish: 0 | 1;
  /** Characters of that stream message through this chunk (never above the limit). */
  length: number;
  /** Characters of the whole reply through this chunk. */
  offset: number;
  text: string;
  /** Only on the reply's last chunk. */
  status?: ReplyStatus;
  done?: true;
  /** Only on the reply's last chunk: how many stream messages the reply used. */
  parts?: number;
  sources?: ReplySource[];
}

/** Where the next chunk goes, read from the last committed chunk. */
interface Cursor {
  message: number;
  nextIndex: number;
  length: number;
  offset: number;
  /** The stream message `message` is open (its finish chunk not yet encoded). */
  open: boolean;
}

/** Where one logical stream message currently goes on the wire (see the crash behaviour above). */
interface Route {
  /** Wire stream message number; the client id derives from it. */
  wire: number;
  /** Logical index that is wire index 0. */
  shift: number;
  /** NIM's message_server_id once chunk 0 on this wire was answered. */
  serverId?: string;
}

export interface NativeStreamTransportOptions {
  nim: NimV2Client;
  /** Quiet time before a keep-alive chunk (default {@link KEEP_ALIVE_INTERVAL_MS}; must stay under NIM's 30 s gap). */
  keepAliveIntervalMs?: number;
  /** Optional log line when a reply moves to a new stream message after an uncertain chunk. */
  logger?: { warn(fields: Record<string, unknown>, message: string): void };
}

export class NativeStreamTransport implements ReplyTransport {
  readonly mode = "native" as const;
  private readonly nim: NimV2Client;
  private readonly logger: NativeStreamTransportOptions["logger"];

  private readonly keepAliveIntervalMs: number;
  /**
   * The pipeline checks this often, so a keep-alive goes out at most interval + check after the
   * last chunk: half the room left under NIM's gap (5 s for the default 20 s interval), and never
   * more than half the interval, so a short interval (tests, NIM_STREAM_KEEPALIVE_MS) is honoured.
   */
  readonly keepAliveCheckMs: number;

  constructor(options: NativeStreamTransportOptions) {
    this.nim = options.nim;
    this.logger = options.logger;
    this.keepAliveIntervalMs = options.keepAliveIntervalMs ?? KEEP_ALIVE_INTERVAL_MS;
    const room = Math.min(this.keepAliveIntervalMs, NIM_STREAM_GAP_MS - this.keepAliveIntervalMs);
    this.keepAliveCheckMs = Math.min(5_000, Math.max(50, Math.floor(room / 2)));
  }

  maxDeltaCharacters(_address: ReplyAddress): number {
    return NATIVE_STREAM_TEXT_LIMIT;
  }

  encodeSegment(_address: ReplyAddress, input: SegmentInput): OutboundMessage[] {
    if (input.delta === "") return [];
    const cursor = cursorAfter(input.previous, input.committedText.length);
    return encodeText(cursor, input.delta, input.seq, undefined);
  }

  encodeFinal(_address: ReplyAddress, input: NativeFinalInput): OutboundMessage[] {
    const cursor = cursorAfter(input.previous, undefined);
    // The final text starts with what the chunks carried (the seam's rule); anything after it (an
    // apology, a note) still has to reach the bubble.
    const remainder = input.text.length > cursor.offset ? input.text.slice(cursor.offset) : "";
    const sources = sanitizeSources(input.sources);
    return encodeText(cursor, remainder, input.firstSeq, { status: input.status, sources });
  }

  /**
   * An empty-text chunk that keeps the open stream message alive through NIM's 30-second gap
   * rule, or undefined when no stream message is open (nothing to keep alive).
   */
  encodeKeepAlive(
    _address: ReplyAddress,
    input: { seq: number; previous?: OutboundMessage },
  ): OutboundMessage | undefined {
    const cursor = cursorAfter(input.previous, undefined);
    if (!cursor.open) return undefined;
    const body: NativeChunkBody = {
      nim_stream: 1,
      message: cursor.message,
      index: cursor.nextIndex,
      finish: 0,
      length: cursor.length,
      offset: cursor.offset,
      text: "",
    };
    return { seq: input.seq, kind: "segment", delta: "", done: false, body: JSON.stringify(body) };
  }

  /** Whether a keep-alive is due: a stream message is open and nothing was sent for the interval. */
  keepAliveDue(previous: OutboundMessage | undefined, lastSentAt: number, now: number): boolean {
    return keepAliveDue(previous, lastSentAt, now, this.keepAliveIntervalMs);
  }

  /**
   * The in-flight marker (and the route) `deliver` stores before the call, decided now: the
   * pipeline stores it in the transaction that commits the chunk, which saves a write per chunk.
   * Stored that early, the marker also covers the moment between the commit and the call: a
   * crash there makes the restart treat the chunk as uncertain and continue in a new stream
   * message, the safe side (never a repeated index), as a crash during the call always did.
   */
  prepareDelivery(
    _address: ReplyAddress,
    message: OutboundMessage,
    state: Pick<TransportState, "get">,
  ): DeliveryPreparation | undefined {
    const chunk = parseChunkBody(message.body);
    if (chunk === undefined) return undefined;
    return new NativePreparation(message.seq, planChunk(chunk, message.seq, state));
  }

  async deliver(address: ReplyAddress, message: OutboundMessage, context: DeliveryContext): Promise<DeliveryResult> {
    context.signal.throwIfAborted();
    const chunk = parseChunkBody(message.body);
    if (chunk === undefined) throw new TypeError(`native transport: seq ${message.seq} is not a native chunk body`);
    const { state } = context;
    const seq = String(message.seq);
    // Prepared and stored with the commit: decide as then. Deciding again would read this very
    // chunk's in-flight marker and take it for a resend.
    const prepared =
      context.prepared instanceof NativePreparation && context.prepared.seq === message.seq
        ? context.prepared
        : undefined;
    const plan = prepared?.plan ?? planChunk(chunk, message.seq, state);
    if (plan.uncertain) {
      this.logger?.warn(
        { streamId: address.streamId, seq: message.seq, streamMessage: chunk.message, index: chunk.index },
        "native stream: earlier chunk may or may not have reached NIM; continuing in a new stream message",
      );
    }
    const activeRoute: Route = { ...plan.route };
    const wireIndex = chunk.index - activeRoute.shift;
    if (!prepared) await state.set(plan.state);
    // A replacement stream message starts with what its abandoned predecessor should have held.
    const text = plan.uncertain ? replayedText(chunk, context.committedText) : chunk.text;
    const requestText = buildRequestText(address, { ...chunk, text }, activeRoute, wireIndex);
    try {
      const result = await this.nim.sendStreamMessageChunk(conversationIdOf(address), requestText, {
        signal: context.signal,
      });
      const updates: Record<string, string> = {};
      if (wireIndex === 0) {
        activeRoute.serverId = result.messageServerId;
        updates[routeKey(chunk.message)] = serializeRoute(activeRoute);
      }
      // A resend that went through settles the earlier failure: the chunks after it are certain again.
      if (state.get("native.failed") === seq) updates["native.failed"] = "";
      if (Object.keys(updates).length > 0) await state.set(updates);
      return { nimMessageId: activeRoute.serverId ?? result.messageServerId };
    } catch (error) {
      // Best effort: if this write fails too, the next deliver still sees `inflight` and a
      // restart's resend is uncertain anyway.
      await state.set({ "native.failed": seq }).catch(() => undefined);
      throw error;
    }
  }
}

/** Where one chunk goes on the wire, and what must be stored before it is sent. */
interface ChunkPlan {
  /** An earlier send may or may not have reached NIM: the chunk opens a replacement stream message. */
  uncertain: boolean;
  route: Route;
  /** The in-flight marker, the remap count and the chunk's route. */
  state: Record<string, string>;
}

/** A chunk's plan, made by `prepareDelivery` and stored with its commit. */
class NativePreparation implements DeliveryPreparation {
  readonly state: Record<string, string>;
  constructor(
    readonly seq: number,
    readonly plan: ChunkPlan,
  ) {
    this.state = plan.state;
  }
}

function planChunk(chunk: NativeChunkBody, seqNumber: number, state: Pick<TransportState, "get">): ChunkPlan {
  const seq = String(seqNumber);
  const inflight = state.get("native.inflight");
  // Uncertain: this very chunk was sent before (a restart's resend), or the last chunk sent
  // failed in a way that may or may not have reached NIM. Either way the next index is unknown.
  const uncertain = inflight === seq || (inflight !== undefined && state.get("native.failed") === inflight);
  let remaps = Number(state.get("native.remaps") ?? "0");
  let route = parseRoute(state.get(routeKey(chunk.message)));
  const needsFreshRoute =
    uncertain || route === undefined || (chunk.index > route.shift && route.serverId === undefined);
  if (needsFreshRoute) {
    if (uncertain) remaps += 1;
    route = { wire: chunk.message + remaps, shift: chunk.index };
  }
  const activeRoute = route as Route;
  return {
    uncertain,
    route: activeRoute,
    state: {
      "native.inflight": seq,
      "native.remaps": String(remaps),
      [routeKey(chunk.message)]: serializeRoute(activeRoute),
    },
  };
}

/**
 * The text of the chunk's stream message through this chunk: the committed text before the chunk
 * (from the start of its stream message) plus the chunk's own text. Just the chunk's text when the
 * committed text is too short to tell (it never is in the pipeline).
 */
function replayedText(chunk: NativeChunkBody, committedText: string): string {
  const before = chunk.offset - chunk.text.length;
  const start = chunk.offset - chunk.length;
  if (start < 0 || before < start || committedText.length < before) return chunk.text;
  return committedText.slice(start, before) + chunk.text;
}

/** Whether a keep-alive is due (see {@link NativeStreamTransport.keepAliveDue}). */
export function keepAliveDue(
  previous: OutboundMessage | undefined,
  lastSentAt: number,
  now: number,
  intervalMs: number = KEEP_ALIVE_INTERVAL_MS,
): boolean {
  if (previous === undefined || previous.done) return false;
  const chunk = parseChunkBody(previous.body);
  return chunk !== undefined && chunk.finish === 0 && now - lastSentAt >= intervalMs;
}

/**
 * `bot|1|user` for P2P, `bot|2|tid` for an advanced team (nim-protocol §10.2): the sender first.
 */
export function conversationIdOf(address: ReplyAddress): string {
  return `${address.botAccid}|${address.scope === "team" ? 2 : 1}|${address.to}`;
}

/**
 * The stream message's client id: deterministic, so the same chunk 0 always carries the same one,
 * and UUID-shaped (what NIM's SDKs generate) in case NIM checks the format.
 */
export function messageClientIdOf(streamId: string, wire: number): string {
  const hex = createHash("sha1").update(`im-bridge:${streamId}:${wire}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Reads a committed chunk body; undefined for anything else (e.g. a custom-segment body). */
export function parseChunkBody(body: string): NativeChunkBody | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const chunk = value as Partial<NativeChunkBody>;
  if (chunk.nim_stream !== 1 || typeof chunk.text !== "string") return undefined;
  for (const field of [chunk.message, chunk.index, chunk.length, chunk.offset]) {
    if (typeof field !== "number" || !Number.isSafeInteger(field) || field < 0) return undefined;
  }
  if (chunk.finish !== 0 && chunk.finish !== 1) return undefined;
  return chunk as NativeChunkBody;
}

function cursorAfter(previous: OutboundMessage | undefined, committedLength: number | undefined): Cursor {
  const chunk = previous === undefined ? undefined : parseChunkBody(previous.body);
  if (chunk === undefined) {
    return { message: -1, nextIndex: 0, length: 0, offset: committedLength ?? 0, open: false };
  }
  return {
    message: chunk.message,
    nextIndex: chunk.index + 1,
    length: chunk.length,
    offset: committedLength ?? chunk.offset,
    open: chunk.finish === 0,
  };
}

/**
 * Cuts `text` into chunks from `cursor` on: while it does not fit the open stream message, the
 * part that fits finishes it and a new one starts. The last chunk stays open for a segment, and
 * finishes the stream message (and the reply) for a final.
 */
function encodeText(
  cursor: Cursor,
  text: string,
  firstSeq: number,
  final: { status: ReplyStatus; sources: ReplySource[] | undefined } | undefined,
): OutboundMessage[] {
  const chunks: NativeChunkBody[] = [];
  let message = cursor.open ? cursor.message : cursor.message + 1;
  let index = cursor.open ? cursor.nextIndex : 0;
  let length = cursor.open ? cursor.length : 0;
  let offset = cursor.offset;
  let remaining = text;
  for (;;) {
    const room = NATIVE_STREAM_TEXT_LIMIT - length;
    if (remaining.length <= room) {
      length += remaining.length;
      offset += remaining.length;
      chunks.push({ nim_stream: 1, message, index, finish: final ? 1 : 0, length, offset, text: remaining });
      break;
    }
    const part = prefixWithin(remaining, room);
    chunks.push({
      nim_stream: 1,
      message,
      index,
      finish: 1,
      length: length + part.length,
      offset: offset + part.length,
      text: part,
    });
    offset += part.length;
    remaining = remaining.slice(part.length);
    message += 1;
    index = 0;
    length = 0;
  }
  if (final) {
    const last = chunks[chunks.length - 1]!;
    last.status = final.status;
    last.done = true;
    last.parts = last.message + 1;
    if (final.sources && final.sources.length > 0) last.sources = final.sources;
  }
  return chunks.map((chunk, position) => ({
    seq: firstSeq + position,
    kind: final ? "final" : "segment",
    delta: chunk.text,
    done: final !== undefined && position === chunks.length - 1,
    body: JSON.stringify(chunk),
  }));
}

/** The longest prefix of `text` within `room` code units that ends between grapheme clusters. */
function prefixWithin(text: string, room: number): string {
  if (room <= 0) return "";
  let end = 0;
  for (const { segment, index } of graphemeClusters(text.slice(0, room + 64))) {
    if (index + segment.length > room) break;
    end = index + segment.length;
  }
  if (end === 0) {
    // One cluster longer than the room (a long combining sequence): cut between code points.
    for (const character of text) {
      if (end + character.length > room) break;
      end += character.length;
    }
  }
  return text.slice(0, end);
}

/**
 * NIM's request for one chunk. Built as a string so that 64-bit ids go out as bare JSON numbers
 * (NIM's Java SDK types them as Long): they are written as digit strings first and unquoted under
 * their known keys. User text cannot fake that pattern: JSON.stringify escapes its quotes.
 */
function buildRequestText(address: ReplyAddress, chunk: NativeChunkBody, route: Route, wireIndex: number): string {
  const message: Record<string, unknown> = { message_type: 0 };
  if (wireIndex === 0) message.message_client_id = messageClientIdOf(address.streamId, route.wire);
  else message.message_server_id = route.serverId;
  message.attachment = { text: chunk.text, index: wireIndex, finish: chunk.finish };
  const request: Record<string, unknown> = { message };
  if (wireIndex === 0 || chunk.done) request.extension = extensionOf(address, chunk);
  if (wireIndex === 0 && chunk.message === 0) {
    const quoted = threadReplyOf(address);
    if (quoted) request.thread_config = { thread_reply: quoted };
    if (address.scope === "team") {
      request.push_config = { push_forcepush_enable: true, push_forcepush_ids: [address.askerAccid] };
    }
  }
  if (chunk.sources) request.rag_info_list = chunk.sources;
  return JSON.stringify(request).replace(/"(message_server_id)":"(\d+)"/g, '"$1":$2');
}

function extensionOf(address: ReplyAddress, chunk: NativeChunkBody): string {
  const extension: Record<string, unknown> = {
    kind: "bot_stream",
    mode: "native",
    stream_id: address.streamId,
    reply_to: address.replyTo,
    part: chunk.message + 1,
    status: chunk.status ?? "streaming",
  };
  if (chunk.done) {
    extension.done = true;
    extension.parts = chunk.parts;
  }
  // NIM UIKit's @ convention: the asker's accid as a key lights up "someone mentioned you".
  if (address.scope === "team") extension.yxAitMsg = { [address.askerAccid]: { text: "", segments: [] } };
  return JSON.stringify(extension);
}

function threadReplyOf(address: ReplyAddress): Record<string, unknown> | undefined {
  if (!address.replyToClientId || address.replyToTimestamp === undefined || !/^\d+$/.test(address.replyTo)) {
    return undefined;
  }
  return {
    sender_id: address.askerAccid,
    receiver_id: address.scope === "team" ? address.to : address.botAccid,
    create_time: address.replyToTimestamp,
    message_server_id: address.replyTo,
    message_client_id: address.replyToClientId,
  };
}

/** Citations are generator output: bounded in number and length, links only http(s). */
function sanitizeSources(sources: ReplySource[] | undefined): ReplySource[] | undefined {
  if (!Array.isArray(sources)) return undefined;
  const cleaned: ReplySource[] = [];
  for (const source of sources.slice(0, MAX_SOURCES)) {
    if (typeof source !== "object" || source === null) continue;
    const item: ReplySource = {};
    for (const field of ["name", "title", "description"] as const) {
      const value = source[field];
      if (typeof value === "string" && value !== "") item[field] = value.slice(0, MAX_SOURCE_FIELD);
    }
    // Links are rendered by clients: only absolute http(s) URLs of a sane length.
    for (const field of ["url", "icon"] as const) {
      const value = source[field];
      if (typeof value === "string" && /^https?:\/\/[^\s]+$/i.test(value) && value.length <= 2048) item[field] = value;
    }
    if (typeof source.time === "number" && Number.isSafeInteger(source.time) && source.time >= 0) {
      item.time = source.time;
    }
    if (Object.keys(item).length > 0) cleaned.push(item);
  }
  return cleaned;
}

function routeKey(message: number): string {
  return `native.route.${message}`;
}

function serializeRoute(route: Route): string {
  return JSON.stringify(route);
}

function parseRoute(text: string | undefined): Route | undefined {
  if (text === undefined || text === "") return undefined;
  try {
    const value = JSON.parse(text) as Partial<Route>;
    if (typeof value.wire !== "number" || typeof value.shift !== "number") return undefined;
    const route: Route = { wire: value.wire, shift: value.shift };
    if (typeof value.serverId === "string" && /^\d+$/.test(value.serverId)) route.serverId = value.serverId;
    return route;
  } catch {
    return undefined;
  }
}
