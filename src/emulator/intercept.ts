/**
 * The emulator's third-party callback (第三方回调, nim-protocol.md §6): before a message a client
 * sent through the gateway is delivered, POST it to `settings.interceptUrl`, signed like a message
 * copy (MD5, CurTime in ms, CheckSum), and deliver it only if the answer allows it.
 *
 * Documented by NIM and modelled here: one attempt, a 2-second timeout (`interceptTimeoutMs`), the
 * console's default result on failure or timeout (`interceptDefaultPolicy`), and 403 to the sender's
 * SDK for a rejected message (the gateway's `sent` frame). UNCONFIRMED and configurable: the answer
 * format, read as `{"errCode": …}` with `interceptAllowErrCode` (default 0) allowing; the body is
 * the message copy's eventType-1 shape.
 */
import { signCallback } from "../callback/sign.ts";
import { messageCopyOf } from "./callbacks.ts";
import type { EmulatorInterceptRecord, EmulatorMessage, NimEmulatorState } from "./state.ts";

/** Asks the intercept about `message`; resolves with NIM's decision and records the exchange. */
export async function askIntercept(
  state: NimEmulatorState,
  url: string,
  message: EmulatorMessage,
): Promise<"allow" | "reject"> {
  const settings = state.settings;
  const body = JSON.stringify(messageCopyOf(message, state));
  const signature = signCallback({ appSecret: settings.callbackAppSecret, body, curTime: Math.floor(state.now()) });
  const record: EmulatorInterceptRecord = {
    url,
    body,
    decision: settings.interceptDefaultPolicy,
    decidedBy: "default-policy",
    durationMs: 0,
  };
  const started = performance.now();
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "Content-Type": "application/json; charset=utf-8",
        AppKey: settings.appKey,
        CurTime: signature.CurTime,
        MD5: signature.MD5,
        CheckSum: signature.CheckSum,
      },
      body,
      signal: AbortSignal.timeout(settings.interceptTimeoutMs),
    });
    const text = await response.text();
    record.status = response.status;
    try {
      record.answer = JSON.parse(text);
    } catch {
      record.error = "answer is not JSON";
    }
    const errCode =
      typeof record.answer === "object" && record.answer !== null
        ? (record.answer as Record<string, unknown>).errCode
        : undefined;
    if (response.status === 200 && typeof errCode === "number") {
      record.decision = errCode === settings.interceptAllowErrCode ? "allow" : "reject";
      record.decidedBy = "answer";
    }
  } catch (error) {
    record.error =
      error instanceof DOMException && error.name === "TimeoutError"
        ? `no answer within ${settings.interceptTimeoutMs} ms`
        : error instanceof Error
          ? error.message
          : String(error);
  }
  record.durationMs = Math.round(performance.now() - started);
  state.intercepts.push(record);
  return record.decision;
}
