/**
 * Conversations: who a reply belongs to. A conversation is a bot and a P2P user, or a bot and a
 * team — per asker unless TEAM_SESSION=team. Replies of one conversation are produced one at a time
 * in the order NIM stamped the messages, and history is kept per conversation.
 *
 * The id is text, `p2p:<bot>:<user>`, `team:<bot>:<tid>` or `team:<bot>:<tid>:<asker>`: NIM accids
 * are `a-z 0-9 _ @ . -` and tids digits, so ':' cannot occur inside a part.
 *
 * @module
 */

export type TeamSession = "user" | "team";

export interface ConversationInput {
  botAccid: string;
  scope: "p2p" | "team";
  /** The user's accid (P2P) or the team id. */
  to: string;
  /** Who wrote the message. */
  senderAccid: string;
  teamSession?: TeamSession;
}

export function conversationIdFor(input: ConversationInput): string {
  const bot = input.botAccid.toLowerCase();
  if (input.scope === "p2p") return `p2p:${bot}:${input.senderAccid.toLowerCase()}`;
  if (input.teamSession === "team") return `team:${bot}:${input.to}`;
  return `team:${bot}:${input.to}:${input.senderAccid.toLowerCase()}`;
}

/**
 * The inbox key of a message for a bot. P2P keeps NIM's msgidServer (one bot per P2P message); a
 * team message may wake several bots, so each gets `msgidServer#bot`. NIM's ids are digits, so
 * '#' never occurs in one.
 */
export function inboxKeyFor(msgidServer: string, botAccid: string, scope: "p2p" | "team"): string {
  return scope === "p2p" ? msgidServer : `${msgidServer}#${botAccid.toLowerCase()}`;
}

/** NIM's msgidServer of an inbox key (what `reply_to` carries to clients). */
export function messageIdOfInboxKey(key: string): string {
  const cut = key.indexOf("#");
  return cut === -1 ? key : key.slice(0, cut);
}
