/**
 * Which bots a conversation message addresses, and in which conversation each answers it
 * (contract: "Several bots", "Teams").
 *
 * - P2P: a message from a user to a bot account. Messages from a bot (NIM copies the bots' own
 *   sends back) are never answered.
 * - Team: a message wakes every bot it @-mentions (UIKit's `yxAitMsg` key in `ext`, or `@` + the
 *   bot's name in the text; never `ait_all`), each in its own conversation. The model sees the
 *   text without the @. Super teams are not answered (their send API differs; documented).
 *
 * One NIM message may thus become several inbox rows: the first version's key (msgidServer) stays
 * for P2P; a team message gets `msgidServer#bot` per addressed bot (reply/conversation.ts).
 *
 * @module
 */
import type { BotRegistry } from "../bots/index.ts";
import { conversationIdFor, inboxKeyFor, type TeamSession } from "../reply/conversation.ts";
import type { AcceptedMessage } from "../storage/repositories.ts";
import { addressedBots, textForBot, textForBots } from "../teams/mentions.ts";
import { turnCommandOf } from "../turns/commands.ts";
import type { MessageEvent } from "./events.ts";

export interface MessageRouterOptions {
  bots: BotRegistry;
  teamSession: TeamSession;
  now: () => number;
  /** Non-text messages a bot takes (media); undefined: only TEXT is answered. */
  acceptsMessageType?: (messageType: MessageEvent["messageType"]) => boolean;
}

/** Decides which bots (if any) answer a conversation message; one row per bot. */
export type MessageRouter = (event: MessageEvent) => AcceptedMessage[];

export function createMessageRouter(options: MessageRouterOptions): MessageRouter {
  const takes = (event: MessageEvent) =>
    (event.messageType === "text" && event.text !== undefined) ||
    (event.messageType !== "text" && (options.acceptsMessageType?.(event.messageType) ?? false));

  return (event) => {
    if (!takes(event)) return [];
    const from = event.fromAccount.toLowerCase();
    if (options.bots.isBot(from)) return [];
    const base = {
      fromAccid: from,
      toAccid: event.to.toLowerCase(),
      msgTimestamp: event.msgTimestamp,
      now: options.now(),
      antispam: event.antispam,
      messageType: event.messageType,
      ...(event.msgidClient ? { msgidClient: event.msgidClient } : {}),
    };
    const payload = (extra: Record<string, unknown>) => {
      const fields = { ...(event.fromNick ? { fromNick: event.fromNick } : {}), ...extra };
      return Object.keys(fields).length > 0 ? { payload: JSON.stringify(fields) } : {};
    };
    if (event.conversation === "person") {
      const bot = options.bots.find(event.to);
      if (!bot) return [];
      return [
        {
          ...base,
          msgidServer: event.msgidServer,
          botAccid: bot.accid,
          scope: "p2p",
          conversationId: conversationIdFor({ botAccid: bot.accid, scope: "p2p", to: from, senderAccid: from }),
          text: event.text ?? "",
          ...payload(mediaFields(event)),
        },
      ];
    }
    if (event.conversation !== "team" || event.messageType !== "text" || event.text === undefined) return [];
    const summaries = options.bots.summaries();
    const text = event.text;
    const addressed = addressedBots({ fromAccount: from, text, ext: event.ext }, summaries);
    // "@顾问 @导师 /stop" is a command to each of them, not "@导师 /stop" asked of 顾问.
    const command = textForBots({ text, ext: event.ext }, addressed, summaries);
    return addressed.map((bot) => ({
      ...base,
      msgidServer: inboxKeyFor(event.msgidServer, bot.accid, "team"),
      botAccid: bot.accid,
      scope: "team" as const,
      teamId: event.to,
      conversationId: conversationIdFor({
        botAccid: bot.accid,
        scope: "team",
        to: event.to,
        senderAccid: from,
        teamSession: options.teamSession,
      }),
      text: turnCommandOf(command) ? command : textForBot({ text, ext: event.ext }, bot, summaries),
      ...payload({}),
    }));
  };
}

/** What a media message's reply needs later (the attachment as NIM sent it). */
function mediaFields(event: MessageEvent): Record<string, unknown> {
  if (event.messageType === "text") return {};
  return { attach: event.attach ?? null, body: event.body ?? null, rawType: event.rawMessageType };
}
