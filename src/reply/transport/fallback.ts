/**
 * A transport that falls back to another one when NIM refuses the first: NIM_STREAM_MODE=native
 * uses NIM's v2 stream messages, which an app must have enabled (and NIM may refuse for a team or
 * an SDK it does not support). The contract says such a reply still reaches the user through custom
 * segments, and the log says why.
 *
 * Messages are committed encoded by the primary transport. After a refusal each message is
 * re-encoded by the fallback from its transport-neutral fields (seq, delta, done, and for finals the
 * status and the committed text) and delivered that way, so seqs stay gapless and the deltas still
 * join to the whole reply. The switch is recorded in the reply's durable transport state: a reply
 * resumed after a crash keeps using the fallback.
 *
 * @module
 */
import type { Logger } from "pino";
import type { DeliveryContext, OutboundMessage, ReplyAddress, ReplyTransport, TransportState } from "./types.ts";

const STATE_KEY = "fallback";

export interface FallbackTransportOptions {
  primary: ReplyTransport;
  fallback: ReplyTransport;
  /** True for NIM's answers that mean "this transport is not available here" (not a passing fault). */
  isRefusal: (error: unknown) => boolean;
  logger: Pick<Logger, "warn">;
  /** Told once per reply that switched (metrics, audit). */
  onFallback?: (address: ReplyAddress, error: unknown) => void;
}

export function createFallbackTransport(options: FallbackTransportOptions): ReplyTransport {
  const { primary, fallback } = options;

  function reencode(address: ReplyAddress, message: OutboundMessage, context: DeliveryContext): OutboundMessage[] {
    if (message.kind === "final") {
      if (!message.done) return []; // the fallback's own final carries the whole text
      return fallback.encodeFinal(address, {
        firstSeq: message.seq,
        text: context.committedText,
        status: message.status ?? "ok",
      });
    }
    return fallback
      .encodeSegment(address, { seq: message.seq, delta: message.delta, committedText: "" })
      .map((encoded, index) => (index === 0 ? encoded : { ...encoded, delta: "" }));
  }

  async function deliverWithFallback(address: ReplyAddress, message: OutboundMessage, context: DeliveryContext) {
    let result = {};
    for (const encoded of reencode(address, message, context)) {
      result = await fallback.deliver(address, encoded, context);
    }
    return result;
  }

  // Keep-alives are the primary's (a native stream message dies after NIM's quiet gap). After a
  // switch they are committed all the same and re-encoded like any segment: an empty custom
  // segment, which keeps seqs gapless and shows nothing.
  const keepAlive: Pick<ReplyTransport, "keepAliveDue" | "encodeKeepAlive" | "keepAliveCheckMs"> =
    primary.keepAliveDue && primary.encodeKeepAlive
      ? {
          keepAliveDue: (previous, lastSentAt, now) => primary.keepAliveDue?.(previous, lastSentAt, now) ?? false,
          encodeKeepAlive: (address, input) => primary.encodeKeepAlive?.(address, input),
          ...(primary.keepAliveCheckMs !== undefined ? { keepAliveCheckMs: primary.keepAliveCheckMs } : {}),
        }
      : {};

  return {
    ...keepAlive,
    mode: primary.mode,
    // Segments must fit both encodings: a segment committed for the primary may be re-sent by the fallback.
    maxDeltaCharacters: (address) =>
      Math.min(primary.maxDeltaCharacters(address), fallback.maxDeltaCharacters(address)),
    encodeSegment: (address, input) => primary.encodeSegment(address, input),
    encodeFinal: (address, input) => primary.encodeFinal(address, input),
    // The primary's state goes ahead with the commit only while the primary carries the reply.
    ...(primary.prepareDelivery
      ? {
          prepareDelivery: (address: ReplyAddress, message: OutboundMessage, state: Pick<TransportState, "get">) =>
            state.get(STATE_KEY) === fallback.mode ? undefined : primary.prepareDelivery?.(address, message, state),
        }
      : {}),
    async deliver(address, message, context) {
      if (context.state.get(STATE_KEY) === fallback.mode) return deliverWithFallback(address, message, context);
      try {
        return await primary.deliver(address, message, context);
      } catch (error) {
        if (!options.isRefusal(error)) throw error;
        options.logger.warn(
          { msgidServer: address.replyTo, from: primary.mode, to: fallback.mode, err: error },
          `NIM refused ${primary.mode} messages for this reply; continuing with ${fallback.mode} messages`,
        );
        options.onFallback?.(address, error);
        await context.state.set({ [STATE_KEY]: fallback.mode });
        return deliverWithFallback(address, message, context);
      }
    },
  };
}
