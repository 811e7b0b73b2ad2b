/**
 * The user's turn-control commands (contract: "Conversation" and "Turn control"): `/reset` or
 * `重置` clears the conversation's context, `/stop` or `停止` ends the reply being produced. Pure:
 * the pipeline decides what each does. In a team, pass the text *after* the bot's @ is removed
 * (src/teams/mentions.ts `textForBot`), so "@顾问 /stop" is a stop.
 *
 * A command is the whole message: surrounding white space and letter case do not matter, and
 * full-width forms (`／ｓｔｏｐ`, what a Chinese input method may type) count as their ASCII
 * twins (NFKC). "please /stop" or "停止吧" are ordinary messages.
 *
 * @example
 * turnCommandOf(" /STOP ");   // "stop"
 * turnCommandOf("重置");       // "reset"
 * turnCommandOf("停止吧");     // undefined
 */

export type TurnCommand = "stop" | "reset";

const COMMANDS: ReadonlyMap<string, TurnCommand> = new Map([
  ["/stop", "stop"],
  ["停止", "stop"],
  ["/reset", "reset"],
  ["重置", "reset"],
]);

/** Longer than any command: saves normalising a long message just to learn it is not one. */
const LONGEST_COMMAND_WITH_SPACE = 64;

/** The command this message is, or undefined for an ordinary message. */
export function turnCommandOf(text: string): TurnCommand | undefined {
  if (text.length > LONGEST_COMMAND_WITH_SPACE) return undefined;
  return COMMANDS.get(text.normalize("NFKC").trim().toLowerCase());
}

export function isStopCommand(text: string): boolean {
  return turnCommandOf(text) === "stop";
}

export function isResetCommand(text: string): boolean {
  return turnCommandOf(text) === "reset";
}
