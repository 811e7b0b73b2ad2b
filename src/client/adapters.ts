/**
 * Adapters from the message objects of each NIM client (and of the local emulator) to a validated
 * `bot_stream` body, ready for {@link StreamAssembler.accept}.
 *
 * Each adapter returns undefined for anything that is not a bot reply message (text messages,
 * images, other apps' custom messages, garbage) and never throws, so it can sit directly in an SDK
 * callback without a try/catch around it.
 *
 * Senders: any NIM account (and any member of a team the user is in) can send the user a custom
 * message with a `bot_stream` body. Pass `botAccounts` and a body from any other sender is dropped,
 * so nobody can make text render as the bot's answer. Without it every sender is trusted.
 *
 * @module
 */
import { type BotStreamBody, isRecord, parseBotStreamBody, parseJsonValue } from "./bot-stream-body.ts";

export interface AdapterOptions {
  /**
   * The bot accids whose `bot_stream` bodies count (compared case-insensitively: NIM stores accids
   * lower-cased). Strongly recommended: `bots` from the bridge's `/im/register` answer.
   */
  botAccounts?: Iterable<string>;
}

/** The sender check of {@link AdapterOptions.botAccounts}; true when no list was given. */
export function isTrustedSender(sender: unknown, options: AdapterOptions | undefined): boolean {
  if (options?.botAccounts === undefined) return true;
  if (typeof sender !== "string" || sender === "") return false;
  const wanted = sender.toLowerCase();
  for (const account of options.botAccounts) {
    if (typeof account === "string" && account.toLowerCase() === wanted) return true;
  }
  return false;
}

/** `messageType` of a custom message in Web SDK v10 (V2NIMMessageType) and `type` in the server API. */
const CUSTOM_MESSAGE_TYPE = 100;

/** Runs an adapter body; a throwing getter or Proxy in a foreign object must not escape into SDK callbacks. */
function safely(read: () => BotStreamBody | undefined): BotStreamBody | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/**
 * Web SDK v9 (`@yxim/nim-web-sdk`), from `onmsg`, `onofflinemsgs` (`obj.msgs`) or
 * `onroamingmsgs`: a custom message has `msg.type === "custom"` and its body as the string
 * `msg.content`.
 *
 * @example
 * onmsg(msg) { assembler.accept(fromNimV9Message(msg, { botAccounts: ["advisor_bot"] })); }
 */
export function fromNimV9Message(message: unknown, options?: AdapterOptions): BotStreamBody | undefined {
  return safely(() => {
    if (!isRecord(message) || message["type"] !== "custom") return undefined;
    if (!isTrustedSender(message["from"], options)) return undefined;
    return parseBotStreamBody(parseJsonValue(message["content"]));
  });
}

/**
 * Web SDK v10 (`nim-web-sdk-ng`, V2NIM, initialised with `apiVersion: "v2"`), from
 * `onReceiveMessages`: a custom message has `messageType === 100` and its body as the string
 * `message.attachment.raw`. `raw` is read first: the SDK always keeps it, even when the app
 * registered its own attachment parser that turns `attachment` into something else.
 *
 * Also tolerated, because SDK builds and wrappers differ: `attachment` given as a JSON string
 * (of `{ raw }` or of the body itself), `raw` already parsed into an object, and `messageType`
 * as the string "100".
 *
 * @example
 * nim.V2NIMMessageService.on("onReceiveMessages", (messages) => {
 *   for (const message of messages) assembler.accept(fromNimV10Message(message));
 * });
 */
export function fromNimV10Message(message: unknown, options?: AdapterOptions): BotStreamBody | undefined {
  return safely(() => {
    if (!isRecord(message) || !isCustomType(message["messageType"])) return undefined;
    if (!isTrustedSender(message["senderId"], options)) return undefined;
    const attachment = parseJsonValue(message["attachment"]);
    if (!isRecord(attachment)) return undefined;
    // `raw` first: an app's own attachment parser may have replaced the rest of `attachment`.
    if (attachment["raw"] !== undefined) return parseBotStreamBody(parseJsonValue(attachment["raw"]));
    // An attachment string may be the body itself.
    return parseBotStreamBody(attachment);
  });
}

/**
 * The local emulator's WebSocket gateway, which forwards what the server sent to `msg/sendMsg`:
 * `{ type: 100, from, to, body: "<the JSON string>", msgid }`. The WebSocket frame may be passed
 * as received (a JSON string) so that a broken frame cannot throw in the socket handler. A `body`
 * already parsed into an object and `type` as the string "100" (the server API's form parameters
 * are strings) are accepted too.
 *
 * @example
 * socket.addEventListener("message", (event) => assembler.accept(fromEmulatorMessage(event.data)));
 */
export function fromEmulatorMessage(message: unknown, options?: AdapterOptions): BotStreamBody | undefined {
  return safely(() => {
    const frame = parseJsonValue(message);
    if (!isRecord(frame) || !isCustomType(frame["type"])) return undefined;
    if (!isTrustedSender(frame["from"], options)) return undefined;
    return parseBotStreamBody(parseJsonValue(frame["body"]));
  });
}

function isCustomType(value: unknown): boolean {
  return value === CUSTOM_MESSAGE_TYPE || value === String(CUSTOM_MESSAGE_TYPE);
}
