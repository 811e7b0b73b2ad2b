/**
 * Wiring for each NIM client SDK: which events carry bot replies, and the checks the SDKs' defaults
 * make necessary (nim-protocol §10.5).
 *
 * - v10 (`nim-web-sdk-ng`): only an instance made with `apiVersion: "v2"` fires
 *   `V2NIMMessageService` events (the default `"v1"` silently never does), so
 *   {@link connectNimV10} refuses any other instance with a clear error. Custom replies come
 *   through `onReceiveMessages` (online, offline and roaming batches alike), native stream messages
 *   through `onReceiveMessages` (the first frame) and `onReceiveMessagesModified` (every later one).
 * - v9 (`@yxim/nim-web-sdk`): `onmsg` gets online messages only; offline ones arrive in
 *   `onofflinemsgs`, ones already seen on another device in `onroamingmsgs`. {@link nimV9Handlers}
 *   returns all three.
 * - The local emulator's gateway (demo page, tests): {@link fromEmulatorStreamFrame} turns its
 *   `stream` and merged `message` frames into what {@link NativeStreamAssembler} reads.
 *
 * @module
 */
import { type AdapterOptions, fromNimV9Message, fromNimV10Message } from "./adapters.ts";
import { isRecord, parseJsonValue } from "./bot-stream-body.ts";
import { type NativeStreamAssembler, NIM_STREAM_STATUS } from "./native-stream-assembler.ts";
import type { StreamAssembler } from "./stream-assembler.ts";

/** The part of a v10 instance this module uses (the real `V2NIM` class fits it). */
export interface NimV10Like {
  options?: { apiVersion?: string } | undefined;
  V2NIMMessageService?: {
    on(event: "onReceiveMessages" | "onReceiveMessagesModified", listener: (messages: unknown[]) => void): unknown;
    off(event: "onReceiveMessages" | "onReceiveMessagesModified", listener: (messages: unknown[]) => void): unknown;
  };
}

export interface NimV10Wiring extends AdapterOptions {
  /** Custom-message replies (`NIM_STREAM_MODE=custom`) go here. */
  custom?: StreamAssembler;
  /** Native stream-message replies (`NIM_STREAM_MODE=native`) go here. */
  native?: NativeStreamAssembler;
  /** Every received message that is not a bot reply (to render as an ordinary message). */
  onOtherMessage?: (message: unknown) => void;
}

/** Thrown by {@link connectNimV10} for an instance whose message events would never fire. */
export class NimApiVersionError extends Error {
  override readonly name = "NimApiVersionError";
}

/**
 * Subscribes the assemblers to a v10 instance; returns the function that unsubscribes.
 *
 * @example
 * const nim = V2NIM.getInstance({ appkey, apiVersion: "v2" });
 * const stop = connectNimV10(nim, { native: new NativeStreamAssembler(), custom: new StreamAssembler(),
 *   botAccounts: register.bots });
 */
export function connectNimV10(nim: NimV10Like, wiring: NimV10Wiring): () => void {
  if (nim.options?.apiVersion !== "v2") {
    throw new NimApiVersionError(
      `im-bridge/client: nim-web-sdk-ng must be created with apiVersion: "v2" (it is ${JSON.stringify(
        nim.options?.apiVersion ?? "v1 (the default)",
      )}); in v1 mode V2NIMMessageService never fires onReceiveMessages`,
    );
  }
  const service = nim.V2NIMMessageService;
  if (service === undefined) {
    throw new NimApiVersionError("im-bridge/client: this nim-web-sdk-ng instance has no V2NIMMessageService");
  }
  const received = (messages: unknown[]) => {
    for (const message of Array.isArray(messages) ? messages : []) {
      const body = wiring.custom ? fromNimV10Message(message, wiring) : undefined;
      if (body !== undefined) {
        wiring.custom?.accept(body);
        continue;
      }
      if (wiring.native?.accept(message) !== undefined) continue;
      wiring.onOtherMessage?.(message);
    }
  };
  const modified = (messages: unknown[]) => {
    for (const message of Array.isArray(messages) ? messages : []) wiring.native?.accept(message);
  };
  service.on("onReceiveMessages", received);
  service.on("onReceiveMessagesModified", modified);
  return () => {
    service.off("onReceiveMessages", received);
    service.off("onReceiveMessagesModified", modified);
  };
}

export interface NimV9Wiring extends AdapterOptions {
  assembler: StreamAssembler;
  onOtherMessage?: (message: unknown) => void;
}

/** The v9 init options that carry messages; spread them into `NIM.getInstance({ … })`. */
export interface NimV9Handlers {
  onmsg(message: unknown): void;
  /** v9 hands over `{ sessionId, scene, to, msgs }` per conversation. */
  onofflinemsgs(batch: unknown): void;
  onroamingmsgs(batch: unknown): void;
}

/**
 * @example
 * const nim = NIM.getInstance({ appKey, account, token, ...nimV9Handlers({ assembler, botAccounts }) });
 */
export function nimV9Handlers(wiring: NimV9Wiring): NimV9Handlers {
  const one = (message: unknown) => {
    const body = fromNimV9Message(message, wiring);
    if (body !== undefined) wiring.assembler.accept(body);
    else wiring.onOtherMessage?.(message);
  };
  const batch = (value: unknown) => {
    const messages = isRecord(value) ? value["msgs"] : value;
    if (Array.isArray(messages)) for (const message of messages) one(message);
  };
  return { onmsg: one, onofflinemsgs: batch, onroamingmsgs: batch };
}

/**
 * The emulator gateway's `stream` frame (a live chunk) or merged `message` frame of a stream
 * message, as the V2NIMMessage shape {@link NativeStreamAssembler} reads; undefined for other
 * frames. Accepts the frame as a JSON string or object.
 */
export function fromEmulatorStreamFrame(frame: unknown): Record<string, unknown> | undefined {
  const value = parseJsonValue(frame);
  if (!isRecord(value) || !isRecord(value["message"])) return undefined;
  const message = value["message"];
  if (value["type"] === "stream") {
    return {
      messageClientId: message["message_client_id"],
      messageServerId: message["message_server_id"],
      senderId: message["from"],
      messageType: 0,
      text: message["text"],
      serverExtension: message["extension"],
      streamConfig: { status: NIM_STREAM_STATUS.update },
    };
  }
  if (value["type"] === "message" && isRecord(message["stream"]) && message["type"] === 0) {
    const body = parseJsonValue(message["body"]);
    const status =
      message["stream"]["status"] === "complete" ? NIM_STREAM_STATUS.complete : NIM_STREAM_STATUS.exception;
    return {
      messageClientId: message["msgidClient"],
      messageServerId: message["msgid"],
      senderId: message["from"],
      messageType: 0,
      text: isRecord(body) && typeof body["msg"] === "string" ? body["msg"] : "",
      serverExtension: message["ext"],
      streamConfig: { status },
    };
  }
  return undefined;
}
