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
import type { TurnControl } from "../reply/turn-control.ts";
import type { AcceptedMessage, Repositories } from "../storage/repositories.ts";
import { isStopCommand } from "../turns/commands.ts";
import type { CallbackEvent, RecallEvent } from "./events.ts";
import type { MessageRouter } from "./router.ts";

export type IntakeOutcome =
  | { kind: "accepted"; msgidServer: string }
  | { kind: "duplicate"; msgidServer: string }
  | { kind: "recall"; msgidServer: string; effect: "stopped" | "dropped" | "none" }
  | { kind: "ignored"; reason: string };

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

export function createIntake(options: IntakeOptions): Intake {
  const { repositories, clock, logger } = options;

  async function acceptMessage(message: AcceptedMessage): Promise<IntakeOutcome> {
    let accepted = message;
    if (message.messageType === "text" && isStopCommand(message.text) && message.conversationId) {
      // /stop ends the reply being produced in this conversation, wherever it runs; the command's
      // own row then waits behind it and is answered by nothing (or "nothing to stop"). Only a
      // reply *to them*: in a shared team conversation (TEAM_SESSION=team) another member's /stop
      // must not cut someone else's answer short.
      const running = await repositories.inbox.nextInConversation(message.conversationId);
      const stopped =
        running?.status === "processing" && running.from_accid === message.fromAccid ? running.msgid_server : undefined;
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
    // A team message may have woken several bots: every row of it is recalled.
    const rows = await repositories.inbox.markRecalled(recalled, clock.now());
    if (rows.length === 0) return { kind: "ignored", reason: "recall of a message the bridge never answered" };
    let effect: "stopped" | "dropped" | "none" = "none";
    for (const row of rows) {
      if (row.status === "processing") {
        await options.turnControl.cancel(row.msgid_server, "recalled");
        effect = "stopped";
      } else if (row.status === "accepted" && effect === "none") {
        // It plans "skip" when it is claimed; a finished one stays as it was.
        effect = "dropped";
      }
    }
    return { kind: "recall", msgidServer: recalled, effect };
  }

  return {
    async handle(event) {
      if (event.kind === "recall") return recall(event);
      if (event.kind !== "message") return { kind: "ignored", reason: event.kind };
      const messages = options.router(event);
      if (messages.length === 0) return { kind: "ignored", reason: "not addressed to a bot" };
      let outcome: IntakeOutcome = { kind: "duplicate", msgidServer: event.msgidServer };
      for (const message of messages) {
        if ((await acceptMessage(message)).kind === "accepted")
          outcome = { kind: "accepted", msgidServer: event.msgidServer };
      }
      return outcome;
    },
  };
}

function stringField(raw: Record<string, unknown>, name: string): string | undefined {
  const value = raw[name];
  return typeof value === "string" && value !== "" ? value : typeof value === "number" ? String(value) : undefined;
}
