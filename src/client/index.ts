/**
 * `im-bridge/client`: assemble im-bridge's streamed bot replies in a browser.
 *
 * im-bridge sends every reply as a series of NIM custom messages (`bot_stream` bodies: segments,
 * then one or more final messages), or with `NIM_STREAM_MODE=native` as NIM's v2 stream messages.
 * This module turns either into one {@link ReplyState} per reply, coping with repeats, gaps,
 * out-of-order delivery and users who only ever get the stored final.
 * It has no dependencies and no Node imports. Guide: docs/client.md.
 *
 * @example
 * // Web SDK v9 (@yxim/nim-web-sdk): online, offline and roaming messages, bot senders only.
 * import { StreamAssembler, nimV9Handlers } from "im-bridge/client";
 *
 * const assembler = new StreamAssembler();
 * assembler.onChange((reply) => renderBotBubble(reply)); // text, status, done, waitingForSeq
 * const nim = NIM.getInstance({
 *   appKey, account, token,
 *   ...nimV9Handlers({ assembler, botAccounts: ["advisor_bot"], onOtherMessage: renderOrdinaryMessage }),
 * });
 *
 * @example
 * // Web SDK v10 (nim-web-sdk-ng): apiVersion "v2" is required; custom and native replies alike.
 * import { connectNimV10, NativeStreamAssembler, StreamAssembler } from "im-bridge/client";
 *
 * const nim = V2NIM.getInstance({ appkey, apiVersion: "v2" });
 * const custom = new StreamAssembler();
 * const native = new NativeStreamAssembler({ botAccounts: ["advisor_bot"] });
 * custom.onChange(renderBotBubble);
 * native.onChange(renderBotBubble); // the same ReplyState in both modes
 * connectNimV10(nim, { custom, native, botAccounts: ["advisor_bot"], onOtherMessage: renderOrdinaryMessage });
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
