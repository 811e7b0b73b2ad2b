/**
 * The emulator's message-copy callback (消息抄送): for every accepted message that NIM would copy,
 * POST the eventType "1" body to `settings.callbackUrl`, built by `buildMessageCopy` and signed by
 * `signCallback`, the same helpers the bridge's tests use, so a copy from here is byte-for-byte what
 * NIM sends (nim-protocol §4): every value a JSON string, `CurTime` in **milliseconds**,
 * `MD5` of the raw body, `CheckSum` = sha1(AppSecret + MD5 + CurTime).
 *
 * Which messages are copied (nim-protocol §2.6, §4, §10.3):
 * - everything a client sent through the gateway (NIM copies SDK messages unconditionally);
 * - team messages (convType TEAM, `to` = tid, `tMembers` = the member list) only while
 *   `copyTeamMessages` is on (NIM's team 抄送 is switched on separately in the console), the bot's
 *   own team sends included;
 * - recalls as NIM's recall copies (eventType 7 / 8, recall.ts), recorded as kind "recall-copy";
 * - messages sent through the server APIs when `copyServerMessages` is on (default) and their
 *   `option.route` is not false. NIM copies the bot's own messages back to the bridge, which must
 *   ignore them; the bridge's transient segments set `route: false` and are not copied.
 *
 * Delivery: one attempt must answer a status in `callbackDeliveredStatuses` (default [200]) within
 * `callbackTimeoutMs` (NIM: 5 s). A failed attempt is retried `callbackRetries` times with
 * exponential backoff. NIM's real retry policy is undocumented (nim-protocol §9.1): the default of 2
 * retries is the emulator's choice, not a fact about NIM. Every attempt is recorded in
 * `state.callbacks`.
 *
 * @example
 * emulator.settings.callbackUrl = "http://127.0.0.1:8000/im/callback";
 * emulator.settings.callbackFaults = { duplicateProbability: 1 }; // every copy arrives twice
 * await emulator.state.waitForCallbacks({ kind: "message-copy", delivered: true, count: 2 });
 */
import { buildMessageCopy, type MessageCopy } from "../callback/build.ts";
import { signCallback } from "../callback/sign.ts";
import { pause } from "./pause.ts";
import { recallCopyOf } from "./recall.ts";
import type { EmulatorCallbackRecord, EmulatorMessage, EmulatorRecall, NimEmulatorState } from "./state.ts";
import { teamMembersCopyValue } from "./teams.ts";

/** NIM's msgType names for the classic message types (nim-protocol §2.6, §4.4). */
const copyMessageTypes: Record<number, string> = {
  0: "TEXT",
  1: "PICTURE",
  2: "AUDIO",
  3: "VIDEO",
  4: "LOCATION",
  6: "FILE",
  10: "TIPS",
  100: "CUSTOM",
};

export class CallbackDispatcher {
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly state: NimEmulatorState,
    /** Aborted when the emulator closes: waits and requests in flight end at once. */
    private readonly closing: AbortSignal,
  ) {}

  /** Starts copying every accepted message and every recall; returns the unsubscribe function. */
  start(): () => void {
    const stopMessages = this.state.onMessage((message) => this.copy(message));
    const stopRecalls = this.state.onRecall((recall) => this.copyRecall(recall));
    return () => {
      stopMessages();
      stopRecalls();
    };
  }

  /**
   * Whether NIM would copy this message (see the module comment). Team messages (ope 1) only with
   * `copyTeamMessages`, NIM's separate team 抄送 class; the bot's own team sends are copied too.
   */
  shouldCopy(message: EmulatorMessage): boolean {
    if (message.ope === 1 && !this.state.settings.copyTeamMessages) return false;
    if (message.source === "client") return true;
    return this.state.settings.copyServerMessages && message.option.route !== false;
  }

  /**
   * Starts delivering the recall copy (eventType 7, or 8 for a team message when team 抄送 is on).
   * Retried like message copies; recorded with kind "recall-copy".
   */
  copyRecall(recall: EmulatorRecall): void {
    const url = this.state.settings.callbackUrl;
    if (!url) return;
    if (recall.message.ope === 1 && !this.state.settings.copyTeamMessages) return;
    const body = JSON.stringify(recallCopyOf(recall));
    this.track(this.deliverCopy(url, body, recall.message.msgid, "recall-copy"));
  }

  /** Starts delivering the copy of `message` (if NIM would copy it and a URL is set); does not wait. */
  copy(message: EmulatorMessage): void {
    const url = this.state.settings.callbackUrl;
    if (!url || !this.shouldCopy(message)) return;
    const body = JSON.stringify(messageCopyOf(message, this.state));
    this.track(this.deliverCopy(url, body, message.msgid));
  }

  /**
   * What NIM's console does when a callback URL is configured: POST a signed `{}` and expect 200
   * within the timeout. One attempt, no retries; the record says whether it passed.
   */
  async validateCallbackUrl(
    url: string | undefined = this.state.settings.callbackUrl,
  ): Promise<EmulatorCallbackRecord> {
    if (!url) throw new Error("NIM emulator: no callback URL to validate (set settings.callbackUrl)");
    return this.attempt({ kind: "validation", url, body: "{}", attempt: 1, duplicate: false });
  }

  /** Resolves when every copy started so far has finished all its attempts (handy before asserting). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private track(work: Promise<unknown>): void {
    this.pending.add(work);
    // Attempts never throw; anything reaching here is an emulator bug, reported rather than lost.
    void work
      .catch((error: unknown) => console.error("NIM emulator: message copy failed unexpectedly", error))
      .finally(() => this.pending.delete(work));
  }

  private async deliverCopy(
    url: string,
    body: string,
    msgidServer: string,
    kind: "message-copy" | "recall-copy" = "message-copy",
  ): Promise<void> {
    const faults = this.state.settings.callbackFaults;
    if (faults.delayMs !== undefined && faults.delayMs > 0) await pause(faults.delayMs, this.closing);
    let delivered = false;
    for (let attempt = 1; !this.closing.aborted; attempt++) {
      const record = await this.attempt({ kind, url, body, msgidServer, attempt, duplicate: false });
      delivered = record.delivered;
      if (delivered || attempt > this.state.settings.callbackRetries) break;
      await pause(this.state.settings.callbackRetryDelayMs * 2 ** (attempt - 1), this.closing);
    }
    // A second delivery of the same copy, as after a lost acknowledgement: the bridge must reply once.
    const random = faults.random ?? Math.random;
    if (delivered && !this.closing.aborted && random() < (faults.duplicateProbability ?? 0)) {
      await this.attempt({ kind, url, body, msgidServer, attempt: 1, duplicate: true });
    }
  }

  /** One signed POST, recorded whatever happens; never throws. */
  private async attempt(
    input: Pick<EmulatorCallbackRecord, "kind" | "url" | "body" | "msgidServer" | "attempt" | "duplicate">,
  ): Promise<EmulatorCallbackRecord> {
    const settings = this.state.settings;
    const startedAt = this.state.now();
    // Signed per attempt, as a fresh request: CurTime (ms) is the time of this POST.
    const signature = signCallback({
      appSecret: settings.callbackAppSecret,
      body: input.body,
      curTime: Math.floor(startedAt),
    });
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      AppKey: settings.appKey,
      CurTime: signature.CurTime,
      MD5: signature.MD5,
      CheckSum: signature.CheckSum,
    };
    const timeoutMs = settings.callbackTimeoutMs;
    const record: EmulatorCallbackRecord = { ...input, headers, startedAt, durationMs: 0, delivered: false };
    const started = performance.now();
    try {
      const response = await fetch(input.url, {
        method: "POST",
        headers,
        body: input.body,
        signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), this.closing]),
      });
      // NIM ignores the answer's body; reading it keeps the connection reusable.
      await response.arrayBuffer();
      record.status = response.status;
      record.delivered = settings.callbackDeliveredStatuses.includes(response.status);
    } catch (error) {
      record.error = describeFailure(error, timeoutMs, this.closing);
    }
    record.durationMs = Math.round(performance.now() - started);
    this.state.recordCallback(record);
    return record;
  }
}

/** The eventType "1" body NIM would POST for this message (all values strings). */
export function messageCopyOf(message: EmulatorMessage, state: NimEmulatorState): MessageCopy {
  const msgType = copyMessageTypes[message.type] ?? "CUSTOM";
  const parsedBody = parseObject(message.body);
  const innerText = typeof parsedBody?.msg === "string" ? parsedBody.msg : undefined;
  let body = "";
  let attach: string | undefined;
  if (msgType === "TEXT" || msgType === "TIPS") {
    // NIM copies a text message's inner text, not the {"msg":…} wrapper the API took.
    body = innerText ?? message.body;
  } else {
    // CUSTOM and the attachment types: the payload travels in `attach`, `body` is "".
    attach = message.body;
  }
  const nick = state.findAccount(message.from)?.name;
  const copy = buildMessageCopy({
    from: message.from,
    to: message.to,
    convType: message.ope === 1 ? "TEAM" : "PERSON",
    msgType,
    body,
    attach,
    msgidServer: message.msgid,
    msgidClient: message.msgidClient,
    msgTimestamp: message.timetag,
    fromClientType: message.fromClientType,
    fromDeviceId: message.fromDeviceId,
    fromNick: nick ? nick : message.from,
    ext: message.ext,
  });
  if (message.ope === 1) {
    // NIM adds the team's member list (not who was @-mentioned: nim-protocol §10.1 #2).
    const team = state.findTeam(message.to);
    const members = team ? teamMembersCopyValue(team) : undefined;
    if (members !== undefined) copy.tMembers = members;
  }
  return copy;
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function describeFailure(error: unknown, timeoutMs: number, closing: AbortSignal): string {
  if (closing.aborted) return "emulator closed";
  if (error instanceof DOMException && error.name === "TimeoutError") return `no answer within ${timeoutMs} ms`;
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return error instanceof Error ? `${error.message}${cause}` : String(error);
}
