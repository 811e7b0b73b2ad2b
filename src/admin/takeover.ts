/**
 * An operator's message to a user, sent as the bot (take over).
 *
 * Decision: it goes as a **plain NIM text message** (type 0, body `{"msg": "…"}`) from the bot's
 * accid, not as a `bot_stream` custom message. Every NIM client and SDK shows a text message with
 * no extra code, it is stored, roamed and pushed like any message, and it honestly is not a
 * generated reply to a particular question (a `bot_stream` final needs a `reply_to`). The demo page
 * and the stream assembler's callers show it as a bot bubble; clients that must tell the two apart
 * can: an operator's text has no `bot_stream` body.
 *
 * It is also appended to the conversation's history as an assistant turn, so the model sees what
 * the operator said once the conversation is handed back.
 *
 * @module
 */
import type { NimClient, NimSendMessageResult } from "../nim/types.ts";
import { NIM_BODY_LIMIT } from "../nim/types.ts";
import type { Repositories } from "../storage/repositories.ts";
import type { ConversationParts } from "./queries.ts";

export interface OperatorMessage {
  conversationId: string;
  parts: ConversationParts;
  text: string;
  now: number;
}

/** Why an operator's text cannot be sent (the route answers 400 with it). */
export function operatorTextProblem(text: unknown): string | undefined {
  if (typeof text !== "string") return "text: must be a string";
  if (text.trim() === "") return "text: must not be empty";
  if (/[\uD800-\uDFFF]/u.test(text.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""))) {
    return "text: must be well-formed Unicode";
  }
  // NIM counts the body's JSON text against its 5000-character limit.
  if (JSON.stringify({ msg: text }).length > NIM_BODY_LIMIT) return "text: too long for one NIM message";
  return undefined;
}

export async function sendAsOperator(
  nim: Pick<NimClient, "sendMessage">,
  repositories: Pick<Repositories, "conversations">,
  message: OperatorMessage,
): Promise<NimSendMessageResult> {
  const { parts } = message;
  const team = parts.scope === "team" && parts.teamId;
  const result = await nim.sendMessage({
    from: parts.botAccid,
    to: team ? (parts.teamId as string) : (parts.userAccid as string),
    ...(team ? { ope: 1 as const } : {}),
    type: 0,
    body: { msg: message.text },
  });
  await repositories.conversations.append(
    {
      conversationId: message.conversationId,
      userAccid: parts.userAccid ?? parts.teamId ?? "",
      role: "assistant",
      content: message.text,
      replyTo: `operator:${result.msgid}`,
    },
    message.now,
  );
  return result;
}
