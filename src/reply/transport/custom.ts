/**
 * The custom-segment transport (NIM_STREAM_MODE=custom, the default): every message of a reply is a
 * NIM custom message (type 100) whose body is a `bot_stream` JSON object (reply/messages.ts), sent
 * with `msg/sendMsg.action`. Works with every NIM SDK, v9 and v10.
 *
 * Segments are online-only and never copied back; the final is a normal stored message that
 * notifies once: earlier parts of a long reply go silently, the done part carries the push text.
 * Those choices are made when a message is encoded and committed with it (`options`), so a resend
 * after a crash is identical in body *and* options.
 */
import type { NimClient, NimMessageOption, NimSendMessageRequest } from "../../nim/types.ts";
import {
  FINAL_OPTION,
  FINAL_PART_OPTION,
  finalBodies,
  maxDeltaBudget,
  pushContent,
  SEGMENT_OPTION,
  segmentBody,
} from "../messages.ts";
import type {
  DeliveryContext,
  DeliveryResult,
  FinalInput,
  OutboundMessage,
  ReplyAddress,
  ReplyTransport,
  SegmentInput,
} from "./types.ts";

/** What is committed in the outbox `options` column for a custom message. */
interface CustomDeliveryOptions {
  option: NimMessageOption;
  pushcontent?: string;
  /** Team finals: mention the asker (JSON array string) so a muted member is still notified. */
  forcepushlist?: string;
  forcepushcontent?: string;
  ext?: string;
}

export interface CustomTransportOptions {
  nim: NimClient;
  /**
   * Extra fields for a team reply's final message(s) that mention the asker (`ext` with UIKit's
   * `yxAitMsg`, `forcepushlist`); the teams module supplies it. Without it the asker is only in
   * `forcepushlist`.
   */
  mentionFields?: (address: ReplyAddress) => { ext?: string; forcepushlist?: string; forcepushcontent?: string };
}

export function createCustomTransport(options: CustomTransportOptions): ReplyTransport {
  const mention =
    options.mentionFields ?? ((address: ReplyAddress) => ({ forcepushlist: JSON.stringify([address.askerAccid]) }));

  return {
    mode: "custom",
    maxDeltaCharacters(address) {
      // Only the digits of seq vary between segments; a bound of a million seqs covers any reply.
      return maxDeltaBudget({ streamId: address.streamId, replyTo: address.replyTo, seq: 999_999 });
    },
    encodeSegment(address: ReplyAddress, input: SegmentInput): OutboundMessage[] {
      const body = segmentBody({
        streamId: address.streamId,
        replyTo: address.replyTo,
        seq: input.seq,
        delta: input.delta,
      });
      const delivery: CustomDeliveryOptions = { option: { ...SEGMENT_OPTION } };
      return [
        {
          seq: input.seq,
          kind: "segment",
          delta: input.delta,
          done: false,
          body: JSON.stringify(body),
          options: JSON.stringify(delivery),
        },
      ];
    },
    encodeFinal(address: ReplyAddress, input: FinalInput): OutboundMessage[] {
      const bodies = finalBodies({
        streamId: address.streamId,
        replyTo: address.replyTo,
        firstSeq: input.firstSeq,
        text: input.text,
        status: input.status,
      });
      return bodies.map((body) => {
        const delivery: CustomDeliveryOptions = body.done
          ? { option: { ...FINAL_OPTION }, pushcontent: pushContent(input.text) }
          : { option: { ...FINAL_PART_OPTION } };
        if (address.scope === "team") Object.assign(delivery, mention(address));
        return {
          seq: body.seq,
          kind: "final" as const,
          delta: "",
          done: body.done,
          status: input.status,
          body: JSON.stringify(body),
          options: JSON.stringify(delivery),
        };
      });
    },
    async deliver(address: ReplyAddress, message: OutboundMessage, context: DeliveryContext): Promise<DeliveryResult> {
      const delivery = parseOptions(message);
      const request: NimSendMessageRequest = {
        from: address.botAccid,
        to: address.to,
        ope: address.scope === "team" ? 1 : 0,
        type: 100,
        body: message.body,
        ...delivery,
      };
      const result = await options.nim.sendMessage(request, { signal: context.signal });
      return { nimMessageId: result.msgid };
    },
  };
}

/** Options as committed; a row from the first version (no options column) is derived from its flags. */
function parseOptions(message: OutboundMessage): CustomDeliveryOptions {
  if (message.options) return JSON.parse(message.options) as CustomDeliveryOptions;
  if (message.kind !== "final") return { option: { ...SEGMENT_OPTION } };
  return message.done ? { option: { ...FINAL_OPTION } } : { option: { ...FINAL_PART_OPTION } };
}
