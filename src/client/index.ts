/**
 * `im-bridge/client`: assemble im-bridge's streamed bot replies in a browser.
 *
 * im-bridge sends every reply as a series of NIM custom messages (`bot_stream` bodies: segments,
 * then one or more final messages). This module turns them into one {@link ReplyState} per reply,
 * coping with repeats, gaps, out-of-order delivery and users who only ever get the stored final.
 * It has no dependencies and no Node imports. Guide: docs/client.md.
 *
 * @example
 * // Web SDK v9 (@yxim/nim-web-sdk): custom messages arrive in onmsg with msg.type === "custom".
 * import { StreamAssembler, fromNimV9Message } from "im-bridge/client";
 *
 * const assembler = new StreamAssembler();
 * assembler.onChange((reply) => renderBotBubble(reply)); // text, status, done, waitingForSeq
 * const nim = NIM.getInstance({
 *   appKey, account, token,
 *   onmsg(msg) {
 *     const body = fromNimV9Message(msg); // undefined unless msg is a bot reply message
 *     if (body) assembler.accept(body);
 *     else renderOrdinaryMessage(msg);
 *   },
 *   onofflinemsgs(result) { for (const msg of result.msgs) assembler.accept(fromNimV9Message(msg)); },
 * });
 *
 * @example
 * // Web SDK v10 (nim-web-sdk-ng): custom messages arrive in onReceiveMessages with messageType 100.
 * import { StreamAssembler, fromNimV10Message } from "im-bridge/client";
 *
 * const assembler = new StreamAssembler();
 * assembler.onChange((reply) => renderBotBubble(reply));
 * nim.V2NIMMessageService.on("onReceiveMessages", (messages) => {
 *   for (const message of messages) {
 *     const body = fromNimV10Message(message); // undefined unless message is a bot reply message
 *     if (body) assembler.accept(body);
 *     else renderOrdinaryMessage(message);
 *   }
 * });
 *
 * @module
 */
export {
  type AdapterOptions,
  fromEmulatorMessage,
  fromNimV9Message,
  fromNimV10Message,
  isTrustedSender,
} from "./adapters.ts";
export {
  type BotStreamBody,
  type FinalStatus,
  MAX_FINAL_PARTS,
  parseBotStreamBody,
  type ReplyStatus,
} from "./bot-stream-body.ts";
export {
  NativeStreamAssembler,
  type NativeStreamAssemblerOptions,
  NIM_STREAM_STATUS,
} from "./native-stream-assembler.ts";
export {
  createStreamAssembler,
  type ReplyListener,
  type ReplyState,
  StreamAssembler,
  type StreamAssemblerOptions,
} from "./stream-assembler.ts";
export {
  connectNimV10,
  fromEmulatorStreamFrame,
  NimApiVersionError,
  type NimV9Handlers,
  type NimV9Wiring,
  type NimV10Like,
  type NimV10Wiring,
  nimV9Handlers,
} from "./wiring.ts";
