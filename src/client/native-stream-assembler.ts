/**
 * Turns NIM's native stream messages (im-bridge with `NIM_STREAM_MODE=native`) into the same
 * {@link ReplyState} the custom-message {@link StreamAssembler} produces, so a page renders both
 * modes with one function and switches by configuration.
 *
 * What arrives (Web SDK v10 ≥ 10.9, `apiVersion: "v2"`, nim-protocol §10.5): the first frame of a
 * stream message through `onReceiveMessages` (a placeholder), every later chunk through
 * `onReceiveMessagesModified` with `message.text` = the text so far and `streamConfig.status`
 * (-1 STREAMING local, 0 NONE, 1 PLACEHOLDER, 2 CANCEL, 3 UPDATE, 4 COMPLETE, 5 EXCEPTION); the
 * stored merged message (history, offline, roaming) comes with the whole text and no stream state.
 *
 * What im-bridge adds: `serverExtension`, a JSON string `{"kind":"bot_stream","mode":"native",
 * "stream_id","reply_to","part","status"}`, and on the reply's last chunk `"done": true`,
 * `"parts"` and the final status. A reply longer than 5000 characters spans several stream
 * messages (parts 1…n), joined here in part order. After a bridge restart one part may exist twice
 * (an abandoned stream message, ended by NIM, and its continuation): the completed one wins, else
 * the most recently updated.
 *
 * A stream message without im-bridge's extension (another NIM AI bot) is shown as a reply of its
 * own, keyed by its client id, with the status NIM's stream state gives.
 *
 * No imports beyond this package; runs in a browser unchanged.
 *
 * @module
 */

import { type AdapterOptions, isTrustedSender } from "./adapters.ts";
import { type FinalStatus, isRecord, parseJsonValue } from "./bot-stream-body.ts";
import type { ReplyListener, ReplyState } from "./stream-assembler.ts";

/** NIM's V2NIMMessageStreamStatus values, as numbers (the SDK declares them as a const enum). */
export const NIM_STREAM_STATUS = {
  streaming: -1,
  none: 0,
  placeholder: 1,
  cancel: 2,
  update: 3,
  complete: 4,
  exception: 5,
} as const;

/** One stream message as this module reads it from a V2NIMMessage (or the emulator's frames). */
interface StreamMessageView {
  messageClientId: string;
  streamId: string;
  replyTo: string;
  part: number;
  text: string;
  /** Whether NIM says this stream message is over, and how. */
  ended: "complete" | "failed" | "cancelled" | undefined;
  /** From the reply's last chunk: the final status, and how many parts the reply has. */
  finalStatus?: FinalStatus;
  parts?: number;
}

interface PartCandidate {
  view: StreamMessageView;
  updatedAt: number;
  order: number;
}

interface NativeRecord {
  streamId: string;
  replyTo: string;
  /** Candidates per part number, by client id. */
  parts: Map<number, Map<string, PartCandidate>>;
  expectedParts?: number;
  finalStatus?: FinalStatus;
  state: ReplyState;
}

export interface NativeStreamAssemblerOptions extends AdapterOptions {
  now?: () => number;
}

/**
 * Assembles native stream messages into one {@link ReplyState} per reply. Feed it every message
 * of `onReceiveMessages` and `onReceiveMessagesModified`; `accept` returns undefined (and changes
 * nothing) for messages that are not stream messages or come from a sender outside `botAccounts`.
 *
 * @example
 * const replies = new NativeStreamAssembler({ botAccounts: ["advisor_bot"] });
 * replies.onChange((reply) => renderBotBubble(reply));
 * nim.V2NIMMessageService.on("onReceiveMessages", (messages) => messages.forEach((m) => replies.accept(m)));
 * nim.V2NIMMessageService.on("onReceiveMessagesModified", (messages) => messages.forEach((m) => replies.accept(m)));
 */
export class NativeStreamAssembler {
  private readonly now: () => number;
  private readonly options: AdapterOptions;
  private readonly records = new Map<string, NativeRecord>();
  private readonly listeners = new Set<ReplyListener>();
  private order = 0;

  constructor(options: NativeStreamAssemblerOptions = {}) {
    this.now = options.now ?? Date.now;
    this.options = options;
  }

  /** Takes one V2NIMMessage (or an emulator frame's message); never throws. */
  accept(message: unknown): ReplyState | undefined {
    let view: StreamMessageView | undefined;
    try {
      view = readStreamMessage(message, this.options);
    } catch {
      return undefined;
    }
    if (view === undefined) return undefined;
    let record = this.records.get(view.streamId);
    if (record === undefined) {
      record = {
        streamId: view.streamId,
        replyTo: view.replyTo,
        parts: new Map(),
        state: emptyState(view.streamId, view.replyTo),
      };
      this.records.set(view.streamId, record);
    }
    // Closed by im-bridge's last chunk: final. (A reply that NIM ended without it may still be
    // continued by a restarted bridge in a new stream message, so that one stays open to updates.)
    if (record.state.done && record.finalStatus !== undefined) return record.state;
    const candidates = record.parts.get(view.part) ?? new Map<string, PartCandidate>();
    record.parts.set(view.part, candidates);
    const existing = candidates.get(view.messageClientId);
    // NIM's text only grows; a late, shorter frame of the same stream message changes nothing.
    if (existing?.view.ended !== undefined && view.ended === undefined) return record.state;
    if (existing !== undefined && existing.view.text.length > view.text.length && view.ended === undefined) {
      return record.state;
    }
    this.order += 1;
    candidates.set(view.messageClientId, { view, updatedAt: this.now(), order: this.order });
    if (view.parts !== undefined) record.expectedParts = view.parts;
    if (view.finalStatus !== undefined) record.finalStatus = view.finalStatus;
    if (record.replyTo === "" && view.replyTo !== "") record.replyTo = view.replyTo;
    const next = derive(record, this.now());
    if (sameState(next, record.state)) return record.state;
    record.state = next;
    this.notify(next);
    return next;
  }

  get(streamId: string): ReplyState | undefined {
    return this.records.get(streamId)?.state;
  }

  replies(): readonly ReplyState[] {
    return Object.freeze(Array.from(this.records.values(), (record) => record.state));
  }

  /** Same contract as {@link StreamAssembler.onChange}. */
  onChange(listener: ReplyListener): () => void {
    const subscription: ReplyListener = (reply) => listener(reply);
    this.listeners.add(subscription);
    return () => {
      this.listeners.delete(subscription);
    };
  }

  delete(streamId: string): boolean {
    return this.records.delete(streamId);
  }

  clear(): void {
    this.records.clear();
  }

  private notify(reply: ReplyState): void {
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

/**
 * Reads a V2NIMMessage as a native stream message, or undefined. A text message (type 0) counts
 * when it has `streamConfig` or im-bridge's `serverExtension`; the sender must pass `botAccounts`.
 */
function readStreamMessage(message: unknown, options: AdapterOptions): StreamMessageView | undefined {
  if (!isRecord(message)) return undefined;
  const messageType = message["messageType"];
  if (messageType !== 0 && messageType !== "0") return undefined;
  const extension = parseJsonValue(message["serverExtension"]);
  const ours = isRecord(extension) && extension["kind"] === "bot_stream" && extension["mode"] === "native";
  const streamConfig = isRecord(message["streamConfig"]) ? message["streamConfig"] : undefined;
  if (!ours && streamConfig === undefined) return undefined;
  if (!isTrustedSender(message["senderId"], options)) return undefined;
  const clientId = message["messageClientId"];
  const serverId = message["messageServerId"];
  const key = typeof clientId === "string" && clientId !== "" ? clientId : String(serverId ?? "");
  if (key === "") return undefined;
  const text = typeof message["text"] === "string" ? message["text"] : "";
  const status = typeof streamConfig?.["status"] === "number" ? streamConfig["status"] : undefined;
  const ended =
    status === undefined || status === NIM_STREAM_STATUS.complete || status === NIM_STREAM_STATUS.none
      ? "complete"
      : status === NIM_STREAM_STATUS.exception
        ? "failed"
        : status === NIM_STREAM_STATUS.cancel
          ? "cancelled"
          : undefined;
  if (!ours) {
    return { messageClientId: key, streamId: `nim:${key}`, replyTo: "", part: 1, text, ended, parts: 1 };
  }
  const fields = extension as Record<string, unknown>;
  const streamId = typeof fields["stream_id"] === "string" && fields["stream_id"] !== "" ? fields["stream_id"] : key;
  const part = Number.isSafeInteger(fields["part"]) && (fields["part"] as number) >= 1 ? (fields["part"] as number) : 1;
  const view: StreamMessageView = {
    messageClientId: key,
    streamId,
    replyTo: typeof fields["reply_to"] === "string" ? fields["reply_to"] : "",
    part,
    text,
    ended,
  };
  if (fields["done"] === true) {
    view.finalStatus = finalStatusOf(fields["status"]);
    const parts = fields["parts"];
    view.parts =
      Number.isSafeInteger(parts) && (parts as number) >= part && (parts as number) <= 1000 ? (parts as number) : part;
  }
  return view;
}

function finalStatusOf(value: unknown): FinalStatus {
  return value === "ok" || value === "blocked" || value === "limited" || value === "stopped" ? value : "error";
}

/**
 * The candidate a part shows: a completed stream message first, then one still streaming, then one
 * NIM ended early; among equals the most recently updated.
 */
function chosen(candidates: Map<string, PartCandidate> | undefined): PartCandidate | undefined {
  const rank = (candidate: PartCandidate) =>
    candidate.view.ended === "complete" ? 2 : candidate.view.ended === undefined ? 1 : 0;
  let best: PartCandidate | undefined;
  for (const candidate of candidates?.values() ?? []) {
    if (
      best === undefined ||
      rank(candidate) > rank(best) ||
      (rank(candidate) === rank(best) && candidate.order > best.order)
    ) {
      best = candidate;
    }
  }
  return best;
}

function derive(record: NativeRecord, now: number): ReplyState {
  const highestPart = Math.max(...record.parts.keys());
  const lastPart = record.expectedParts ?? highestPart;
  let text = "";
  let allComplete = record.expectedParts !== undefined;
  let failed = false;
  let cancelled = false;
  for (let part = 1; part <= lastPart; part += 1) {
    const candidate = chosen(record.parts.get(part));
    if (candidate === undefined) {
      allComplete = false;
      break;
    }
    text += candidate.view.text;
    if (candidate.view.ended !== "complete") allComplete = false;
    if (candidate.view.ended === "failed") failed = true;
    if (candidate.view.ended === "cancelled") cancelled = true;
  }
  const receivedSeqs = Array.from(record.parts.values()).reduce((sum, candidates) => sum + candidates.size, 0);
  const base = { streamId: record.streamId, replyTo: record.replyTo, text, receivedSeqs, updatedAt: now };
  if (allComplete) {
    return Object.freeze({ ...base, status: record.finalStatus ?? "ok", done: true });
  }
  // NIM ended the stream without im-bridge's last chunk: the reply is over, and not complete.
  const lastCandidate = chosen(record.parts.get(lastPart));
  if ((failed || cancelled) && lastCandidate?.view.ended !== undefined && record.expectedParts === undefined) {
    return Object.freeze({ ...base, status: cancelled && !failed ? "stopped" : "error", done: true });
  }
  return Object.freeze({ ...base, status: "streaming", done: false });
}

function emptyState(streamId: string, replyTo: string): ReplyState {
  return Object.freeze({
    streamId,
    replyTo,
    text: "",
    status: "streaming",
    done: false,
    receivedSeqs: 0,
    updatedAt: 0,
  });
}

function sameState(a: ReplyState, b: ReplyState): boolean {
  return a.text === b.text && a.status === b.status && a.done === b.done && a.replyTo === b.replyTo;
}
