/**
 * Builds message-copy callback bodies (消息抄送, eventType 1) the way NIM writes them, for the
 * `nim:callback` CLI, tests and the local NIM emulator. Pair with `signCallback` (sign.ts).
 *
 * NIM's shape (nim-protocol.md §4.4): every value is a JSON *string*, including eventType,
 * msgTimestamp, msgidServer and resendFlag. TEXT carries the plain text in `body`; CUSTOM carries
 * the developer payload in `attach` and an empty `body`.
 *
 * @module
 */
import { randomInt, randomUUID } from "node:crypto";

export interface MessageCopyInput {
  /** Sender accid. */
  from: string;
  /** Receiver accid (PERSON) or team id (TEAM). */
  to: string;
  convType?: "PERSON" | "TEAM" | "SUPER_TEAM";
  /** Defaults to TEXT. */
  msgType?: string;
  /** TEXT: the text. Others: usually "". */
  body?: string;
  /** CUSTOM: the developer payload (a string, usually JSON). */
  attach?: string;
  /** Defaults to a fresh numeric id from `newMessageIdServer`. */
  msgidServer?: string;
  /** Defaults to a random UUID, as the SDKs generate. */
  msgidClient?: string;
  /** Milliseconds since the epoch; defaults to now. */
  msgTimestamp?: number;
  /** AOS, IOS, PC, WEB, REST, MAC, HARMONY; defaults to WEB. */
  fromClientType?: string;
  fromDeviceId?: string;
  /** Defaults to the sender accid. */
  fromNick?: string;
  /** A client-side resend (`resendFlag` "1"). */
  resend?: boolean;
  ext?: string;
}

/** A copy as NIM sends it: a flat object of strings. */
export type MessageCopy = Record<string, string>;

// Start each process at a random point so two CLI runs in the same millisecond differ.
let messageIdSequence = randomInt(10_000);

/**
 * A fresh server message id: digits only, like NIM's 64-bit `msgidServer`. Milliseconds times
 * 10 000 plus a per-process sequence: unique within a process up to 10 000 ids per millisecond.
 */
export function newMessageIdServer(now: number = Date.now()): string {
  messageIdSequence = (messageIdSequence + 1) % 10_000;
  return (BigInt(now) * 10_000n + BigInt(messageIdSequence)).toString();
}

/** The copy NIM would POST for this message. Key order follows NIM's documented examples. */
export function buildMessageCopy(input: MessageCopyInput): MessageCopy {
  const msgType = input.msgType ?? "TEXT";
  const fromClientType = input.fromClientType ?? "WEB";
  const copy: MessageCopy = {
    eventType: "1",
    convType: input.convType ?? "PERSON",
    to: input.to,
    fromAccount: input.from,
    fromClientType,
    // NIM sends "" for messages sent through the server API (REST).
    fromDeviceId: input.fromDeviceId ?? (fromClientType === "REST" ? "" : randomUUID().replaceAll("-", "")),
    fromNick: input.fromNick ?? input.from,
    msgTimestamp: String(input.msgTimestamp ?? Date.now()),
    msgType,
    body: input.body ?? "",
    msgidClient: input.msgidClient ?? randomUUID(),
    msgidServer: input.msgidServer ?? newMessageIdServer(),
    resendFlag: input.resend ? "1" : "0",
  };
  if (input.attach !== undefined) copy["attach"] = input.attach;
  if (input.ext !== undefined) copy["ext"] = input.ext;
  return copy;
}

/** A user's P2P text to `to`, as copied by NIM. */
export function buildTextMessageCopy(input: Omit<MessageCopyInput, "msgType" | "body" | "attach"> & { text: string }) {
  const { text, ...rest } = input;
  return buildMessageCopy({ ...rest, msgType: "TEXT", body: text });
}
