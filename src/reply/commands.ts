/**
 * The chat commands a user can type to the bot. Matching is exact after trimming and lower-casing,
 * so "please /reset the thing" is an ordinary message.
 *
 * @module
 */
const RESET_COMMANDS = new Set(["/reset", "重置"]);
const STOP_COMMANDS = new Set(["/stop", "停止"]);

export function isResetCommand(text: string): boolean {
  return RESET_COMMANDS.has(text.trim().toLowerCase());
}

export function isStopCommand(text: string): boolean {
  return STOP_COMMANDS.has(text.trim().toLowerCase());
}
