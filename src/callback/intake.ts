/**
 * What a verified message copy means for the bridge, and the durable step that records it. The
 * route calls `handle` and answers 200 only after it resolved: anything `handle` stores is
 * committed by then. It throws when the database cannot store what must be stored; the route then
 * answers 503 so that NIM's redelivery (where it happens) can bring the message back — a 200 or a
 * 500 would both count as delivered.
 *
 * @module
 */
import type { Logger } from "pino";
import type { ReplyQueue } from "../queue/types.ts";
import type { StopPayload } from "../reply/admission.ts";
import type { Clock } from "../reply/clock.ts";
import { isStopCommand } from "../reply/commands.ts";
import { conversationIdFor } from "../reply/conversation.ts";
import type { TurnControl } from "../reply/turn-control.ts";
import type { AcceptedMessage, Repositories } from "../storage/repositories.ts";
import type { CallbackEvent, MessageEvent, RecallEvent } from "./events.ts";

export type IntakeOutcome =
  | { kind: "accepted"; msgidServer: string }
  | { kind: "duplicate"; msgidServer: string }
  | { kind: "recall"; msgidServer: string; effect: "stopped" | "dropped" | "none" }
  | { kind: "ignored"; reason: string };

/**
 * Decides which bot (if any) a conversation message addresses and in which conversation; the
 * default handles P2P TEXT to a bot account. Teams and media plug in here.
 */
export type MessageRouter = (event: MessageEvent) => AcceptedMessage | undefined;

export interface IntakeOptions {
  repositories: Repositories;
  queue: ReplyQueue;
  clock: Clock;
  logger: Pick<Logger, "info" | "warn" | "error">;
  router: MessageRouter;
  turnControl: TurnControl;
}

export interface Intake {
  handle(event: CallbackEvent): Promise<IntakeOutcome>;
}

/** P2P TEXT from a user to one of the bot accounts (never a bot's own message). */
export function createP2pTextRouter(isBot: (accid: string) => boolean, now: () => number): MessageRouter {
  return (event) => {
    if (event.conversation !== "person" || event.messageType !== "text" || event.text === undefined) return undefined;
    const to = event.to.toLowerCase();
    const from = event.fromAccount.toLowerCase();
    if (!isBot(to) || isBot(from)) return undefined;
    return {
      msgidServer: event.msgidServer,
      fromAccid: from,
      toAccid: to,
      botAccid: to,
      scope: "p2p",
      conversationId: conversationIdFor({ botAccid: to, scope: "p2p", to, senderAccid: from }),
      text: event.text,
      msgTimestamp: event.msgTimestamp,
      now: now(),
      antispam: event.antispam,
      messageType: event.messageType,
      ...(event.msgidClient ? { msgidClient: event.msgidClient } : {}),
    };
  };
}

export function createIntake(options: IntakeOptions): Intake {
  const { repositories, clock, logger } = options;

  async function acceptMessage(message: AcceptedMessage): Promise<IntakeOutcome> {
    let accepted = message;
    if (message.messageType === "text" && isStopCommand(message.text) && message.conversationId) {
      // /stop ends the reply being produced in this conversation, wherever it runs; the command's
      // own row then waits behind it and is answered by nothing (or "nothing to stop").
      const running = await repositories.inbox.nextInConversation(message.conversationId);
      const stopped = running?.status === "processing" ? running.msgid_server : undefined;
      if (stopped) await options.turnControl.cancel(stopped, "stopped");
      const payload: StopPayload = stopped ? { stopped } : {};
      accepted = { ...message, payload: JSON.stringify(payload) };
    }
    if (!(await repositories.inbox.accept(accepted))) return { kind: "duplicate", msgidServer: message.msgidServer };
    // The row is committed; if enqueueing fails the sweeper or the next start picks it up.
    await options.queue.enqueue({ msgidServer: message.msgidServer }).catch((error: unknown) => {
      logger.error({ err: error, msgidServer: message.msgidServer }, "enqueue failed; the sweeper will pick it up");
    });
    return { kind: "accepted", msgidServer: message.msgidServer };
  }

  async function recall(event: RecallEvent): Promise<IntakeOutcome> {
    const recalled = event.recalledMsgidServer ?? stringField(event.raw, "msgId");
    if (!recalled) return { kind: "ignored", reason: "recall without a message id" };
    const row = await repositories.inbox.markRecalled(recalled, clock.now());
    if (!row) return { kind: "ignored", reason: "recall of a message the bridge never answered" };
    if (row.status === "processing") {
      await options.turnControl.cancel(recalled, "recalled");
      return { kind: "recall", msgidServer: recalled, effect: "stopped" };
    }
    // An accepted row now plans "skip" when it is claimed; a finished one stays as it was.
    return { kind: "recall", msgidServer: recalled, effect: row.status === "accepted" ? "dropped" : "none" };
  }

  return {
    async handle(event) {
      if (event.kind === "recall") return recall(event);
      if (event.kind !== "message") return { kind: "ignored", reason: event.kind };
      const message = options.router(event);
      if (!message) return { kind: "ignored", reason: "not addressed to a bot" };
      return acceptMessage(message);
    },
  };
}

function stringField(raw: Record<string, unknown>, name: string): string | undefined {
  const value = raw[name];
  return typeof value === "string" && value !== "" ? value : typeof value === "number" ? String(value) : undefined;
}
