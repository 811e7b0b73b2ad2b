/**
 * Recalling a message (撤回), from a user's client (the gateway's `recall` frame) or the server API
 * (`msg/recall.action`), and the recall copy NIM then sends to the callback URL.
 *
 * The copy (nim-protocol §10.1 #1, NIM's "其他抄送" doc): eventType "7" for a P2P message, "8" for
 * a team message (`to` = tid); "25" (super team) is not modelled. Its fields, every value a string
 * like the other copies: `from`, `to`, `msgId` (the recalled message's server id), `clientId`,
 * `deleteTime` (when it was recalled, ms), `sendTime` (when it was sent, ms), `fromClientType`,
 * `selfMsg` ("true": the sender recalled their own message), `attach` (the recall's postscript).
 *
 * After a recall the message is gone from history and from offline queues (an offline recipient
 * never sees it), and online recipients get a `recall` frame.
 *
 * Guesses, labelled: the codes for "no such message" (404), "already recalled" (414), "not yours"
 * (403) and "too late" (508).
 */
import { ClassicApiError } from "./errors.ts";
import type { EmulatorMessage, EmulatorRecall, NimEmulatorState } from "./state.ts";

export interface RecallRequest {
  msgid: string;
  /** The accid asking for the recall. */
  by: string;
  source: "client" | "server";
  postscript?: string;
  /** msg/recall.action `ignoreTime` 1: not bound by `recallWindowMs`. */
  ignoreTime?: boolean;
}

/** Marks the message recalled, drops it from offline queues and records the recall (copy and frames follow). */
export function recallMessage(state: NimEmulatorState, request: RecallRequest): EmulatorRecall {
  const message = state.messages.find((candidate) => candidate.msgid === request.msgid);
  if (!message) throw new ClassicApiError(404, "message not exist");
  if (message.recalled) throw new ClassicApiError(414, "message already recalled");
  const by = request.by.toLowerCase();
  // Team owners and managers may recall others' messages at NIM; the emulator models self-recall only.
  if (message.from !== by) throw new ClassicApiError(403, "no permission to recall this message");
  const now = state.now();
  if (!request.ignoreTime && now - message.timetag > state.settings.recallWindowMs) {
    throw new ClassicApiError(508, "recall time expired");
  }
  message.recalled = { at: now, by };
  for (const [accid, queue] of state.undelivered) {
    const kept = queue.filter((queued) => queued !== message);
    if (kept.length === 0) state.undelivered.delete(accid);
    else if (kept.length !== queue.length) state.undelivered.set(accid, kept);
  }
  const recall: EmulatorRecall = {
    message,
    by,
    source: request.source,
    postscript: request.postscript ?? "",
    deleteTime: now,
  };
  state.recordRecall(recall);
  return recall;
}

/** The recall copy NIM POSTs for this recall (all values strings). */
export function recallCopyOf(recall: EmulatorRecall): Record<string, string> {
  const message: EmulatorMessage = recall.message;
  return {
    eventType: message.ope === 1 ? "8" : "7",
    from: message.from,
    to: message.to,
    msgId: message.msgid,
    clientId: message.msgidClient,
    deleteTime: String(recall.deleteTime),
    sendTime: String(message.timetag),
    fromClientType: recall.source === "client" ? "WEB" : "REST",
    selfMsg: String(recall.by === message.from),
    attach: recall.postscript,
  };
}
