/**
 * NIM's third-party callback (第三方回调) for messages, the before-delivery hook: with it enabled in
 * NIM's console, NIM POSTs every message an SDK sends to `POST /im/intercept` **before** delivering
 * it, and delivers only if the answer lets it through (nim-protocol.md §6). im-bridge answers with
 * the same moderators as everywhere else, so a blocked user-to-user message never reaches its
 * receiver (the message-copy check of ../moderation/user-messages.ts can only recall it afterwards).
 *
 * What NIM documents (回调说明, 第三方回调概述; quoted by public copies of the page):
 * - POST, `application/json; charset=utf-8`, signed like the message copy (`MD5`, `CurTime` in ms,
 *   `CheckSum = sha1(AppSecret + MD5 + CurTime)`), so it is verified by the same code;
 * - NIM calls **once**, waits **2 seconds**, and on a failure or timeout applies the default result
 *   configured in the console (子功能配置: allow or reject);
 * - a rejected message fails in the sender's SDK with 403;
 * - eventType 1 = P2P message, 2 = team message, 22 = super-team message (other numbers are team
 *   operations, login, recall … which this route lets through untouched).
 *
 * What is NOT confirmed, hence configurable and labelled in the docs:
 * - the answer's shape: `{"errCode": <allow|block>, "responseCode": <code>, "modifyResponse": {},
 *   "callbackExt": "…"}`, with errCode 0 allowing and 1 blocking, is what public integrations send
 *   (INTERCEPT_ALLOW_ERR_CODE, INTERCEPT_BLOCK_ERR_CODE, INTERCEPT_BLOCK_RESPONSE_CODE);
 * - the body's field names: assumed to be the message copy's (`fromAccount`, `to`, `msgType`,
 *   `body`), with `eventType` numbered as above.
 *
 * Our own deadline is INTERCEPT_BUDGET_MS (default 1.5 s): past it we answer INTERCEPT_ON_TIMEOUT
 * ourselves rather than let NIM time out, so the policy is ours and visible in our logs.
 */
import type { ModerationVerdict, Moderator } from "../moderation/types.ts";

export type InterceptDecision = "allow" | "block";

export interface InterceptSettings {
  budgetMs: number;
  onTimeout: InterceptDecision;
  allowErrCode: number;
  blockErrCode: number;
  blockResponseCode: number;
}

/** What a moderated check produced, and why. */
export interface InterceptOutcome {
  decision: InterceptDecision;
  /** `verdict`: the moderators decided; `timeout`/`error`: INTERCEPT_ON_TIMEOUT did; `not-checked`: not ours. */
  why: "verdict" | "timeout" | "error" | "not-checked";
  verdict?: ModerationVerdict;
}

/** Timers, injectable so the budget is tested without waiting. */
export interface InterceptTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemTimers: InterceptTimers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * Runs `check` but answers within `budgetMs` whatever happens: a verdict in time decides; a check
 * that is late or throws yields `onTimeout`. The late check is left to finish on its own (its
 * result is dropped; a moderator that never settles only costs its own resources).
 */
export function decideWithinBudget(
  check: () => Promise<ModerationVerdict>,
  settings: Pick<InterceptSettings, "budgetMs" | "onTimeout">,
  timers: InterceptTimers = systemTimers,
): Promise<InterceptOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: InterceptOutcome) => {
      if (settled) return;
      settled = true;
      timers.clearTimeout(handle);
      resolve(outcome);
    };
    const handle = timers.setTimeout(() => finish({ decision: settings.onTimeout, why: "timeout" }), settings.budgetMs);
    let started: Promise<ModerationVerdict>;
    try {
      started = check();
    } catch {
      started = Promise.reject(new Error("check threw synchronously"));
    }
    started.then(
      (verdict) => finish({ decision: verdict.allowed ? "allow" : "block", why: "verdict", verdict }),
      () => finish({ decision: settings.onTimeout, why: "error" }),
    );
  });
}

/** A message NIM asks about, as far as this route reads it. */
export interface InterceptMessage {
  conversation: "person" | "team" | "super-team";
  from: string;
  to: string;
  msgType: string;
  /** The text of a TEXT message. */
  text?: string;
}

const conversationByEventType: Record<string, InterceptMessage["conversation"]> = {
  "1": "person",
  "2": "team",
  "22": "super-team",
};

/** Reads the request body; undefined for events that are not messages (let through unchecked). */
export function parseInterceptBody(body: unknown): InterceptMessage | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const record = body as Record<string, unknown>;
  const eventType = typeof record.eventType === "number" ? String(record.eventType) : record.eventType;
  const conversation = typeof eventType === "string" ? conversationByEventType[eventType] : undefined;
  if (!conversation) return undefined;
  const from = typeof record.fromAccount === "string" ? record.fromAccount : undefined;
  const to = typeof record.to === "string" ? record.to : undefined;
  const msgType = typeof record.msgType === "string" ? record.msgType : undefined;
  if (!from || !to || !msgType) return undefined;
  const message: InterceptMessage = { conversation, from, to, msgType };
  if (msgType === "TEXT" && typeof record.body === "string") message.text = record.body;
  return message;
}

/**
 * The answer body (shape UNCONFIRMED, see the module comment). `callbackExt` carries a short tag
 * for the sender's SDK, never the reason (which may name the matched term).
 */
export function interceptAnswer(decision: InterceptDecision, settings: InterceptSettings): Record<string, unknown> {
  if (decision === "allow") {
    return { errCode: settings.allowErrCode, responseCode: 200, modifyResponse: {}, callbackExt: "" };
  }
  return {
    errCode: settings.blockErrCode,
    responseCode: settings.blockResponseCode,
    modifyResponse: {},
    callbackExt: "blocked-by-moderation",
  };
}

export interface InterceptCheckerOptions {
  moderator: Moderator;
  settings: InterceptSettings;
  /** Bots send through the server API, which NIM never intercepts; skipped should one show up anyway. */
  isBot: (accid: string) => boolean;
  timers?: InterceptTimers;
}

/** Decides one intercepted message: TEXT from a user is checked within the budget, the rest passes. */
export function createInterceptChecker(options: InterceptCheckerOptions) {
  return async function decide(message: InterceptMessage | undefined): Promise<InterceptOutcome> {
    if (!message || message.text === undefined || options.isBot(message.from.toLowerCase())) {
      return { decision: "allow", why: "not-checked" };
    }
    const text = message.text;
    return decideWithinBudget(
      () => options.moderator.checkInput(text, { accid: message.from.toLowerCase() }),
      options.settings,
      options.timers,
    );
  };
}
