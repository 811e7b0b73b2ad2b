/**
 * NIM's classic server API ("nimserver", v9): accounts, tokens and messages, over HTTPS with
 * form-encoded bodies and the AppKey/Nonce/CurTime/CheckSum headers (nim-protocol §1–3).
 *
 * Every call goes through the one retry policy (retry.ts). Every failure to reach NIM or to get a
 * success from it is a {@link NimError}; neither errors nor log lines ever carry the AppSecret, a
 * CheckSum or a token.
 *
 * @example
 * const nim = createNimClient({
 *   appKey, appSecret, apiBase: "https://api.yunxinapi.com/nimserver",
 *   timeoutMs: 5000, retry: { maxAttempts: 6, deadlineMs: 30_000 },
 * });
 * const account = await nim.createAccount({ accid: "u_42" });
 */
import { FREQUENCY_CONTROL_BACKOFF_MS, isNimError, isRetryableNimCode, NimError } from "./errors.ts";
import type { NimHttpAnswer, NimHttpSender } from "./http.ts";
import { type RetryPolicy, retry } from "./retry.ts";
import {
  isRetryableHttpStatus,
  parseRetryAfter,
  redact,
  resolveSender,
  sendSignedAttempt,
  splitApiBase,
} from "./signed-request.ts";
import {
  NIM_BODY_LIMIT,
  NIM_PUSHCONTENT_LIMIT,
  type NimAccount,
  type NimCallOptions,
  type NimClient,
  type NimMessageOption,
  type NimRecallRequest,
  type NimSendMessageRequest,
  type NimSendMessageResult,
  type NimUserInfo,
} from "./types.ts";

/** Largest `ext` on sendMsg/sendAttachMsg (nim-protocol §3.3). */
export const NIM_EXT_LIMIT = 1024;
/** Largest `payload` (push payload JSON), "2k characters" in NIM's docs. */
export const NIM_PAYLOAD_LIMIT = 2048;
/** Largest `attach` of a custom system notification (sendAttachMsg). */
export const NIM_ATTACH_LIMIT = 4096;
/** Largest recall description (`msg` of msg/recall.action). */
export const NIM_RECALL_DESCRIPTION_LIMIT = 128;
/** Largest recall `attach`. */
export const NIM_RECALL_ATTACH_LIMIT = 5000;
/** Most accids one user/getUinfos.action call accepts; longer lists are split. */
export const NIM_USER_INFO_BATCH_LIMIT = 200;

/** The subset of a pino logger the client uses, so any structured logger fits. */
export interface NimLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface NimClientOptions {
  appKey: string;
  /** Signs requests; never sent, logged or put in an error. */
  appSecret: string;
  /** Classic API base without a trailing slash, e.g. `https://api.yunxinapi.com/nimserver`. */
  apiBase: string;
  /** Per-attempt timeout (connect, response and body), in ms. NIM's own SDK uses 5 s. */
  timeoutMs: number;
  retry: {
    maxAttempts: number;
    /** Overall budget of one logical call including retries, in ms; 0 disables it. */
    deadlineMs: number;
    baseDelayMs?: number;
    maxDelayMs?: number;
    jitter?: "full" | "equal";
  };
  /**
   * The HTTP sender, shared and closed by whoever passes it (server.ts shares one between the classic
   * and v2 clients). Without it: a sender over `fetch` if given, else the client's own pool.
   */
  http?: NimHttpSender;
  /** For tests that record or rewrite calls; ignored when `http` is given. */
  fetch?: typeof fetch;
  /** The client's own pool: the most sockets to NIM at once (default 64, NIM_HTTP_CONNECTIONS). */
  connections?: number;
  /** Wall clock in ms; CurTime is floor(now / 1000). Deadlines use a monotonic clock instead. */
  now?: () => number;
  logger?: NimLogger;
  /** The least pause before retrying a 416 (frequency control). Default {@link FREQUENCY_CONTROL_BACKOFF_MS}. */
  frequencyControlBackoffMs?: number;
  /** For tests: the retry loop's random source and sleep. */
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** A custom system notification (msg/sendAttachMsg.action): out-of-band, not part of the conversation history. */
export interface NimCustomNotificationRequest {
  from: string;
  to: string;
  /** 0 = P2P (default), 1 = team. */
  msgtype?: 0 | 1;
  /** The developer payload, at most 4096 characters. Objects are JSON-encoded. */
  attach: string | Record<string, unknown>;
  /** 1 = delivered only to online devices, 2 = stored for offline devices (NIM's default). */
  save?: 1 | 2;
  /** NIM's defaults here differ from sendMsg: `needPushNick` is false unless set. */
  option?: { badge?: boolean; needPushNick?: boolean; route?: boolean };
  pushcontent?: string;
  payload?: string;
  sound?: string;
}

/** The {@link NimClient} contract plus calls that only the classic API offers. */
export interface NimClassicClient extends NimClient {
  sendCustomNotification(request: NimCustomNotificationRequest, options?: NimCallOptions): Promise<void>;
  close(): Promise<void>;
}

type FormFields = Record<string, string | number | undefined>;

interface NimResponse {
  /** The parsed JSON body; `code` is 200. */
  envelope: Record<string, unknown>;
  /** The raw body, for values JSON.parse would damage (msgid beyond 2^53). */
  text: string;
}

const contentType = "application/x-www-form-urlencoded;charset=utf-8";

export function createNimClient(options: NimClientOptions): NimClassicClient {
  if (!options.appKey) throw new TypeError("createNimClient: appKey is required");
  if (!options.appSecret) throw new TypeError("createNimClient: appSecret is required");
  if (!(options.timeoutMs > 0)) throw new TypeError("createNimClient: timeoutMs must be positive");
  const { origin, basePath } = splitApiBase(options.apiBase);
  const { sender, owned } = resolveSender(options);
  const now = options.now ?? Date.now;
  const logger = options.logger;
  const policyDeadlineMs = options.retry.deadlineMs > 0 ? options.retry.deadlineMs : Number.POSITIVE_INFINITY;
  const frequencyControlBackoffMs = options.frequencyControlBackoffMs ?? FREQUENCY_CONTROL_BACKOFF_MS;

  /**
   * One logical call: signs and sends `fields` to `endpoint`, retrying per the policy until
   * `deadlineAt` (a performance.now() instant shared by all requests of one method call).
   * `sensitive` lists values (tokens) that must be scrubbed from anything NIM echoes back.
   */
  async function post(
    endpoint: string,
    fields: FormFields,
    deadlineAt: number,
    callOptions: NimCallOptions | undefined,
    sensitive: Array<string | undefined> = [],
  ): Promise<NimResponse> {
    const body = encodeForm(fields);
    const path = `${basePath}/${endpoint}`;
    const callerSignal = callOptions?.signal;
    const secrets = [options.appSecret, ...sensitive].filter((value): value is string => value !== undefined);
    const policy: RetryPolicy = {
      maxAttempts: options.retry.maxAttempts,
      deadlineMs: deadlineAt - performance.now(),
      baseDelayMs: options.retry.baseDelayMs,
      maxDelayMs: options.retry.maxDelayMs,
      jitter: options.retry.jitter,
    };

    const attemptOnce = async ({ remainingMs }: { remainingMs: number }): Promise<NimResponse> => {
      const answer = await sendSignedAttempt({
        sender,
        origin,
        path,
        method: "POST",
        contentType,
        body,
        appKey: options.appKey,
        appSecret: options.appSecret,
        now,
        timeoutMs: Math.min(options.timeoutMs, remainingMs),
        callerSignal,
        endpoint,
      });
      return interpretResponse(endpoint, answer, secrets, frequencyControlBackoffMs);
    };

    try {
      return await retry(attemptOnce, policy, {
        signal: callerSignal,
        random: options.random,
        sleep: options.sleep,
        onRetry: ({ attempt, error, delayMs }) => {
          logger?.warn({ endpoint, attempt, delayMs, ...describeForLog(error) }, "NIM call failed; retrying");
        },
      });
    } catch (error) {
      // The retry loop throws the signal's reason when the caller aborts between attempts.
      const failure =
        !isNimError(error) && callerSignal?.aborted
          ? new NimError("aborted", 0, "aborted by the caller", false, endpoint, { cause: error })
          : error;
      logger?.debug({ endpoint, ...describeForLog(failure) }, "NIM call failed");
      throw failure;
    }
  }

  /** When a method call must end: the policy's deadline, or the caller's if that is sooner. */
  function deadlineFor(callOptions: NimCallOptions | undefined): number {
    const callDeadlineMs = callOptions?.deadlineMs ?? Number.POSITIVE_INFINITY;
    return performance.now() + Math.min(policyDeadlineMs, callDeadlineMs);
  }

  const client: NimClassicClient = {
    // A create retried after a lost response can answer "already register" for the account the
    // first attempt made; see isAlreadyRegisteredError. The caller then sets a token it knows.
    async createAccount(input, callOptions): Promise<NimAccount> {
      const endpoint = "user/create.action";
      const { envelope } = await post(
        endpoint,
        { accid: input.accid, name: input.name, token: input.token },
        deadlineFor(callOptions),
        callOptions,
        [input.token],
      );
      const info = objectField(envelope, "info");
      const accid = stringField(info, "accid");
      const token = stringField(info, "token");
      if (accid === undefined || token === undefined) throw missingField(endpoint, "info.accid/info.token");
      const name = stringField(info, "name");
      // NIM stores accids lower-cased; the returned accid is the one to log in with.
      return name === undefined ? { accid, token } : { accid, token, name };
    },

    async updateToken(input, callOptions): Promise<void> {
      await post(
        "user/update.action",
        { accid: input.accid, token: input.token },
        deadlineFor(callOptions),
        callOptions,
        [input.token],
      );
    },

    async refreshToken(accid, callOptions): Promise<NimAccount> {
      const endpoint = "user/refreshToken.action";
      const { envelope } = await post(endpoint, { accid }, deadlineFor(callOptions), callOptions);
      const info = objectField(envelope, "info");
      const token = stringField(info, "token");
      if (token === undefined) throw missingField(endpoint, "info.token");
      return { accid: stringField(info, "accid") ?? accid.toLowerCase(), token };
    },

    async getUserInfos(accids, callOptions): Promise<NimUserInfo[]> {
      const endpoint = "user/getUinfos.action";
      const deadlineAt = deadlineFor(callOptions);
      const results: NimUserInfo[] = [];
      // NIM rejects more than 200 accids per call; one deadline covers all the chunks.
      for (let start = 0; start < accids.length; start += NIM_USER_INFO_BATCH_LIMIT) {
        const chunk = accids.slice(start, start + NIM_USER_INFO_BATCH_LIMIT);
        const { envelope } = await post(endpoint, { accids: JSON.stringify(chunk) }, deadlineAt, callOptions);
        const infos = envelope.uinfos;
        if (!Array.isArray(infos)) throw missingField(endpoint, "uinfos");
        for (const info of infos) {
          if (isRecord(info) && typeof info.accid === "string") results.push(info as NimUserInfo);
        }
      }
      return results;
    },

    // NOTE: a send retried after a timeout or a dropped connection may be the second copy of a message
    // NIM already accepted (NIM has no idempotency key on sendMsg). The contract accepts that: clients
    // drop a repeated (stream_id, seq).
    async sendMessage(request, callOptions): Promise<NimSendMessageResult> {
      const endpoint = "msg/sendMsg.action";
      const body = typeof request.body === "string" ? request.body : JSON.stringify(request.body);
      const problem = validateMessage(request, body);
      if (problem) throw new NimError("invalid-request", 0, problem, false, endpoint);
      const { envelope, text } = await post(
        endpoint,
        {
          from: request.from,
          ope: request.ope ?? 0,
          to: request.to,
          type: request.type,
          body,
          option: request.option ? encodeOption(request.option) : undefined,
          pushcontent: request.pushcontent,
          payload: request.payload,
          ext: request.ext,
          forcepushlist: request.forcepushlist,
          forcepushcontent: request.forcepushcontent,
        },
        deadlineFor(callOptions),
        callOptions,
      );
      const data = objectField(envelope, "data");
      const msgid = extractMessageId(text, data);
      // The message is at NIM by now, so a malformed success answer must not look retryable.
      if (msgid === undefined) throw missingField(endpoint, "data.msgid");
      const timetag = typeof data?.timetag === "number" ? data.timetag : now();
      return { msgid, timetag };
    },

    // A recall retried after a lost answer may find the message already recalled; NIM's code for
    // that is not documented, so the caller sees it as an api error and decides.
    async recallMessage(request, callOptions): Promise<void> {
      const endpoint = "msg/recall.action";
      const problem = validateRecall(request);
      if (problem) throw new NimError("invalid-request", 0, problem, false, endpoint);
      await post(
        endpoint,
        {
          deleteMsgid: request.msgidServer,
          timetag: request.timetag,
          type: request.conversation === "team" ? 8 : 7,
          from: request.from,
          to: request.to,
          msg: request.description,
          ignoreTime: request.ignoreTimeLimit ? "1" : undefined,
          pushcontent: request.pushcontent,
          payload: request.payload,
          env: request.env,
          attach: request.attach,
        },
        deadlineFor(callOptions),
        callOptions,
      );
    },

    async sendCustomNotification(request, callOptions): Promise<void> {
      const endpoint = "msg/sendAttachMsg.action";
      const attach = typeof request.attach === "string" ? request.attach : JSON.stringify(request.attach);
      const problem =
        tooLong("attach", attach, NIM_ATTACH_LIMIT) ??
        tooLong("pushcontent", request.pushcontent, NIM_PUSHCONTENT_LIMIT) ??
        tooLong("payload", request.payload, NIM_PAYLOAD_LIMIT);
      if (problem) throw new NimError("invalid-request", 0, problem, false, endpoint);
      await post(
        endpoint,
        {
          from: request.from,
          msgtype: request.msgtype ?? 0,
          to: request.to,
          attach,
          save: request.save,
          option: request.option ? JSON.stringify(request.option) : undefined,
          pushcontent: request.pushcontent,
          payload: request.payload,
          sound: request.sound,
        },
        deadlineFor(callOptions),
        callOptions,
      );
    },

    async close(): Promise<void> {
      if (owned) await sender.close();
    },
  };
  return client;
}

/**
 * Turns one HTTP answer into the envelope or a NimError. NIM reports its own errors with HTTP 200
 * and a body `code` (nim-protocol §1.2); a non-2xx status means something in front of NIM (a
 * gateway, a load balancer) failed, so it is classified before the body is even looked at.
 */
function interpretResponse(
  endpoint: string,
  { status, retryAfter, text }: NimHttpAnswer,
  secrets: string[],
  frequencyControlBackoffMs: number,
): NimResponse {
  if (status < 200 || status > 299) {
    const retryable = isRetryableHttpStatus(status);
    const parsed = parseEnvelope(text);
    const detail = parsed ? `; body code ${String(parsed.code)}${describeDesc(parsed, secrets)}` : "";
    throw new NimError("http", status, `HTTP ${status}${detail}`, retryable, endpoint, {
      retryAfterMs: parseRetryAfter(retryAfter),
    });
  }
  const envelope = parseEnvelope(text);
  if (envelope === undefined) {
    // Never quote the body: a success answer to user/create carries a token.
    throw new NimError(
      "invalid-response",
      0,
      `HTTP ${status} body is not a NIM JSON envelope (${text.length} characters)`,
      false,
      endpoint,
    );
  }
  const code = envelope.code as number;
  if (code !== 200) {
    const desc = typeof envelope.desc === "string" ? redact(envelope.desc, secrets) : "";
    const retryable = isRetryableNimCode(code);
    throw new NimError("api", code, desc, retryable, endpoint, {
      retryAfterMs: retryable ? frequencyControlBackoffMs : undefined,
    });
  }
  return { envelope, text };
}

function parseEnvelope(text: string): (Record<string, unknown> & { code: number }) | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (isRecord(value) && typeof value.code === "number") return value as Record<string, unknown> & { code: number };
  } catch {
    // Not JSON: the caller reports it as an invalid response.
  }
  return undefined;
}

function describeDesc(envelope: Record<string, unknown>, secrets: string[]): string {
  return typeof envelope.desc === "string" ? ` (${redact(envelope.desc, secrets)})` : "";
}

/**
 * NIM's msgid is a Java long and passes 2^53, where JSON.parse silently rounds it, so it is read from
 * the raw text. A string msgid (some proxies quote longs) is accepted too.
 */
function extractMessageId(text: string, data: Record<string, unknown> | undefined): string | undefined {
  const match = /"msgid"\s*:\s*"?(\d+)"?/.exec(text);
  if (match?.[1]) return match[1];
  const value = data?.msgid;
  if (typeof value === "string" && /^\d+$/.test(value)) return value;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return String(value);
  return undefined;
}

/**
 * Local checks for limits NIM would answer with a 414 anyway: failing here costs no HTTP call and no
 * rate-limit quota, and the error names the field. Lengths are JavaScript string lengths (UTF-16
 * code units), the same unit as NIM's Java `String.length()`.
 */
function validateMessage(request: NimSendMessageRequest, body: string): string | undefined {
  if (!request.from) return "from is required";
  if (!request.to) return "to is required";
  if (!Number.isInteger(request.type)) return "type must be an integer";
  if (request.ope !== undefined && request.ope !== 0 && request.ope !== 1) return "ope must be 0 or 1";
  return (
    tooLong("body", body, NIM_BODY_LIMIT) ??
    tooLong("pushcontent", request.pushcontent, NIM_PUSHCONTENT_LIMIT) ??
    tooLong("ext", request.ext, NIM_EXT_LIMIT) ??
    tooLong("payload", request.payload, NIM_PAYLOAD_LIMIT) ??
    tooLong("forcepushcontent", request.forcepushcontent, NIM_PUSHCONTENT_LIMIT)
  );
}

function validateRecall(request: NimRecallRequest): string | undefined {
  if (!/^\d+$/.test(request.msgidServer)) return "msgidServer must be digits";
  if (!Number.isSafeInteger(request.timetag) || request.timetag <= 0) return "timetag must be a positive integer (ms)";
  if (!request.from) return "from is required";
  if (!request.to) return "to is required";
  return (
    tooLong("msg", request.description, NIM_RECALL_DESCRIPTION_LIMIT) ??
    tooLong("pushcontent", request.pushcontent, NIM_PUSHCONTENT_LIMIT) ??
    tooLong("payload", request.payload, NIM_PAYLOAD_LIMIT) ??
    tooLong("attach", request.attach, NIM_RECALL_ATTACH_LIMIT)
  );
}

function tooLong(field: string, value: string | undefined, limit: number): string | undefined {
  if (value === undefined || value.length <= limit) return undefined;
  return `${field} is ${value.length} characters; NIM accepts at most ${limit}`;
}

// Only the flags the caller set: NIM defaults every missing one to true.
function encodeOption(option: NimMessageOption): string {
  const flags: Record<string, boolean> = {};
  for (const [name, value] of Object.entries(option)) {
    if (typeof value === "boolean") flags[name] = value;
  }
  return JSON.stringify(flags);
}

function encodeForm(fields: FormFields): string {
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) form.append(name, String(value));
  }
  return form.toString();
}

function describeForLog(error: unknown): Record<string, unknown> {
  if (isNimError(error)) return { kind: error.kind, code: error.code, desc: error.desc };
  return { error: error instanceof Error ? error.name : String(error) };
}

function missingField(endpoint: string, field: string): NimError {
  return new NimError("invalid-response", 0, `success answer without ${field}`, false, endpoint);
}

function objectField(record: Record<string, unknown>, name: string): Record<string, unknown> | undefined {
  const value = record[name];
  return isRecord(value) ? value : undefined;
}

function stringField(record: Record<string, unknown> | undefined, name: string): string | undefined {
  const value = record?.[name];
  return typeof value === "string" ? value : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
