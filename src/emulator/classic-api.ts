/**
 * The emulator's classic server API: `POST /nimserver/<path>` with form-encoded bodies, answered the
 * way NIM answers (nim-protocol §1–3): HTTP 200 with `{"code":…,"desc":…}` for every NIM-level
 * error, 414 for bad parameters and failed authentication, 416 for frequency control.
 *
 * Every request runs the same pipeline: latency → "before" fault → authentication → frequency
 * control → the endpoint → "after" fault → answer.
 */

import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { apiCheckSum } from "../nim/checksum.ts";
import { ClassicApiError } from "./errors.ts";
import { defaultDescription, type FaultAction, selectFaults, takeQueuedFault } from "./faults.ts";
import { pause } from "./pause.ts";
import { recallMessage } from "./recall.ts";
import {
  DEFAULT_MESSAGE_OPTION,
  type EmulatorAccount,
  type EmulatorMessageOption,
  type EmulatorNotificationOption,
  type EmulatorRequestRecord,
  NimEmulatorState,
} from "./state.ts";
import {
  addTeamMembers,
  createTeam,
  kickTeamMembers,
  parseAccidList,
  requireTeamSender,
  TEAM_MEMBER_LIMIT,
} from "./teams.ts";

export interface ClassicApiOptions {
  state: NimEmulatorState;
  /** Aborted when the emulator closes, so held (delayed) requests end at once. */
  closing: AbortSignal;
}

type Fields = Record<string, string>;
/** A success envelope; bigint values are written as bare JSON numbers (msgid beyond 2^53). */
type Envelope = { code: number } & Record<string, unknown>;
type Endpoint = (fields: Fields, state: NimEmulatorState) => Envelope;

/** A NIM-level error: answered with HTTP 200 and `{"desc":…,"code":…}` (errors.ts). */
export { ClassicApiError };

const accidPattern = /^[a-zA-Z0-9_@.-]+$/;
const accidLimit = 32;
const tokenLimit = 128;
const userInfoBatchLimit = 200;
const messageTypes = new Set([0, 1, 2, 3, 4, 6, 10, 100]);

export async function classicApi(app: FastifyInstance, options: ClassicApiOptions): Promise<void> {
  const { state, closing } = options;

  // NIM's classic API speaks only form encoding; JSON and the rest fall to the error handler below.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  // Fastify's own request failures (unsupported media type, oversized body …) become NIM's 414; an
  // emulator bug becomes NIM's 500, so it cannot pass for a parameter error in a test.
  app.setErrorHandler((error: { statusCode?: number; message?: string }, _request, reply) => {
    const isRequestError = typeof error.statusCode === "number" && error.statusCode < 500;
    const envelope = isRequestError
      ? { desc: error.message ?? "parameter error", code: 414 }
      : { desc: "server error", code: 500 };
    void reply.code(200).type("application/json;charset=utf-8").send(serialize(envelope));
  });

  for (const [path, endpoint] of Object.entries(endpoints)) {
    app.post(`/${path}`, (request, reply) => handle(path, endpoint, request, reply));
  }

  async function handle(path: string, endpoint: Endpoint, request: FastifyRequest, reply: FastifyReply) {
    const record: EmulatorRequestRecord = { path, receivedAt: state.now() };
    state.requests.push(record);
    if (state.settings.latencyMs > 0) await pause(state.settings.latencyMs, closing);

    const { before, randomAfter } = selectFaults(state, path);
    if (before) {
      record.fault = `${before.kind} before`;
      if (before.kind === "delay") {
        await pause(before.ms, closing);
        // The client gave up while the request was "on its way": NIM never saw it.
        if (connectionGone(request)) return abandon(request, reply);
      } else {
        return applyFault(before, request, reply, record);
      }
    }

    let envelope: Envelope;
    try {
      const fields = (request.body ?? {}) as Fields;
      authenticate(request, state);
      if (!state.frequencyControl.tryTake(path)) throw new ClassicApiError(416, "frequency control");
      envelope = endpoint(fields, state);
    } catch (error) {
      if (!(error instanceof ClassicApiError)) throw error;
      envelope = { desc: error.desc, code: error.code };
    }

    // Processed and recorded: from here a fault means the answer is lost or wrong, not the request.
    const after = takeQueuedFault(state, path, "after") ?? randomAfter;
    if (after) {
      record.fault = `${after.kind} after`;
      if (after.kind === "delay") {
        await pause(after.ms, closing);
        if (connectionGone(request)) return abandon(request, reply);
      } else {
        return applyFault(after, request, reply, record);
      }
    }
    return answer(reply, record, envelope);
  }

  function connectionGone(request: FastifyRequest): boolean {
    return closing.aborted || request.raw.socket.destroyed;
  }
}

function answer(reply: FastifyReply, record: EmulatorRequestRecord, envelope: Envelope, status = 200) {
  record.code = envelope.code;
  record.httpStatus = status;
  return reply.code(status).type("application/json;charset=utf-8").send(serialize(envelope));
}

function applyFault(
  fault: Exclude<FaultAction, { kind: "delay" }>,
  request: FastifyRequest,
  reply: FastifyReply,
  record: EmulatorRequestRecord,
) {
  switch (fault.kind) {
    case "code":
      return answer(reply, record, { desc: fault.desc ?? defaultDescription(fault.code), code: fault.code });
    default:
      return answerTransportFault(fault, request, reply, record);
  }
}

/**
 * Faults "in front of" NIM, the same for every API: a gateway's non-2xx page, or a connection
 * that dies without an answer.
 */
export function answerTransportFault(
  fault: Extract<FaultAction, { kind: "http-status" | "drop" }>,
  request: FastifyRequest,
  reply: FastifyReply,
  record: EmulatorRequestRecord,
) {
  if (fault.kind === "drop") return abandon(request, reply);
  record.httpStatus = fault.status;
  return reply
    .code(fault.status)
    .headers(fault.headers ?? {})
    .type("text/html")
    .send(fault.body ?? `<html><body><h1>${fault.status}</h1></body></html>`);
}

/** Ends the exchange without an answer, the way a lost connection looks to the client. */
export function abandon(request: FastifyRequest, reply: FastifyReply) {
  reply.hijack();
  request.raw.socket.destroy();
}

/**
 * Checks the four auth headers like NIM: AppKey, then CheckSum = sha1(AppSecret + Nonce + CurTime)
 * (lowercase hex, compared exactly, so a client that upper-cases it is caught here), then CurTime
 * freshness in **seconds** (a client sending milliseconds lands far in the future and fails).
 * All failures are 414 with NIM's observed desc strings. The v2 API (v2-api.ts) uses the same check:
 * NIM signs both generations of its server API identically (nim-protocol §5).
 */
export function authenticate(request: FastifyRequest, state: NimEmulatorState): void {
  const settings = state.settings;
  const header = (name: string) => {
    const value = request.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  if (header("appkey") !== settings.appKey) throw new ClassicApiError(414, "appkey");
  const nonce = header("nonce");
  const curTime = header("curtime");
  const checkSum = header("checksum");
  if (!nonce || nonce.length > 128 || !curTime || !checkSum) throw new ClassicApiError(414, "checksum");
  if (checkSum !== apiCheckSum(settings.appSecret, nonce, curTime)) throw new ClassicApiError(414, "checksum");
  const nowSeconds = Math.floor(state.now() / 1000);
  const seconds = /^\d+$/.test(curTime) ? Number(curTime) : Number.NaN;
  const { pastSeconds, futureSeconds } = settings.curTimeWindow;
  if (!(nowSeconds - seconds <= pastSeconds && seconds - nowSeconds <= futureSeconds)) {
    throw new ClassicApiError(414, "CurTime is expired");
  }
  if (settings.rejectReplayedNonce) {
    for (const [key, seenAt] of state.seenNonces) {
      if (nowSeconds - seenAt > pastSeconds + futureSeconds) state.seenNonces.delete(key);
    }
    const key = `${nonce}|${curTime}`;
    if (state.seenNonces.has(key)) throw new ClassicApiError(431, "HTTP request repeated");
    state.seenNonces.set(key, nowSeconds);
  }
}

const endpoints: Record<string, Endpoint> = {
  "user/create.action": (fields, state) => {
    const accid = requireAccid(fields);
    const account: EmulatorAccount = { accid: accid.toLowerCase(), token: "", createdAt: state.now() };
    for (const [name, limit] of [
      ["name", 64],
      ["icon", 1024],
      ["sign", 256],
      ["email", 64],
      ["birth", 16],
      ["mobile", 32],
      ["ex", 1024],
    ] as const) {
      const value = optionalField(fields, name, limit);
      if (value !== undefined) account[name] = value;
    }
    optionalField(fields, "props", 1024);
    if (fields.gender !== undefined && fields.gender !== "") {
      if (!/^[012]$/.test(fields.gender)) throw new ClassicApiError(414, "gender illegal");
      account.gender = Number(fields.gender);
    }
    const token = optionalField(fields, "token", tokenLimit);
    // Checked after the parameters: NIM validates the request before looking the account up.
    if (state.findAccount(accid)) throw new ClassicApiError(414, "already register");
    account.token = token ? token : NimEmulatorState.generateToken();
    state.addAccount(account);
    const info: Record<string, unknown> = { token: account.token, accid: account.accid };
    if (account.name !== undefined) info.name = account.name;
    return { code: 200, info };
  },

  // An unknown accid answers 414 "accid not exist". NIM's status table also has 404 ("object not
  // found"), but no source shows which one user/update returns; 414 is what integrators handle for
  // every account-parameter problem, so the bridge must treat both as "no such account" anyway.
  "user/update.action": (fields, state) => {
    const account = requireExistingAccount(fields, state);
    const token = optionalField(fields, "token", tokenLimit);
    optionalField(fields, "props", 1024);
    if (token) account.token = token;
    return { code: 200 };
  },

  "user/refreshToken.action": (fields, state) => {
    const account = requireExistingAccount(fields, state);
    account.token = NimEmulatorState.generateToken();
    return { code: 200, info: { accid: account.accid, token: account.token } };
  },

  // Unknown accids are left out of `uinfos` rather than failing the call (unconfirmed at NIM).
  "user/getUinfos.action": (fields, state) => {
    const text = requireField(fields, "accids");
    let accids: unknown;
    try {
      accids = JSON.parse(text);
    } catch {
      throw new ClassicApiError(414, "accids is not a JSON array");
    }
    if (!Array.isArray(accids) || !accids.every((accid) => typeof accid === "string")) {
      throw new ClassicApiError(414, "accids is not a JSON array of strings");
    }
    if (accids.length > userInfoBatchLimit) throw new ClassicApiError(414, "accids too many, max 200");
    const uinfos = [];
    for (const accid of accids as string[]) {
      const account = state.findAccount(accid);
      if (!account) continue;
      const { token: _token, createdAt: _createdAt, ...visible } = account;
      uinfos.push(visible);
    }
    return { code: 200, uinfos };
  },

  "msg/sendMsg.action": (fields, state) => {
    const from = requireField(fields, "from");
    const ope = requireChoice(fields, "ope", ["0", "1"]);
    const to = requireField(fields, "to");
    const typeText = requireField(fields, "type");
    const type = /^\d+$/.test(typeText) ? Number(typeText) : Number.NaN;
    if (!messageTypes.has(type)) throw new ClassicApiError(414, "type illegal");
    const body = requireField(fields, "body");
    if (body.length > state.settings.bodyLimit) throw new ClassicApiError(414, "body too long");
    const parsedBody = parseJson(body, "body");
    // A text message's body is {"msg":"…"}; NIM copies the inner text to 抄送 as `body`.
    if (type === 0 && (!isRecord(parsedBody) || typeof parsedBody.msg !== "string")) {
      throw new ClassicApiError(414, 'body of a text message must be {"msg":"…"}');
    }
    const option = parseOption<EmulatorMessageOption>(fields.option, { ...DEFAULT_MESSAGE_OPTION });
    const pushcontent = optionalField(fields, "pushcontent", 500) ?? optionalField(fields, "pushContent", 500);
    const payload = optionalJsonField(fields, "payload", 2048);
    const ext = optionalField(fields, "ext", 1024);
    // The old docs spell these lowercase, the official Java SDK camelCase; NIM LIKELY takes both.
    const forcePushList = optionalForcePushList(fields);
    const forcePushContent =
      optionalField(fields, "forcepushcontent", 500) ?? optionalField(fields, "forcePushContent", 500);
    const sender = requireKnownSender(from, state);
    const receiver = requireKnownReceiver(ope, to, sender.accid, state);

    const msgid = state.allocateMessageId();
    const timetag = state.now();
    state.recordMessage({
      msgid,
      // The server API takes no client id; NIM still copies one (a UUID-like string) for every message.
      msgidClient: randomUUID(),
      source: "server",
      fromClientType: "REST",
      fromDeviceId: "",
      from: sender.accid,
      to: receiver,
      ope: ope === "1" ? 1 : 0,
      type,
      body,
      option,
      pushcontent,
      payload,
      ext,
      ...(forcePushList !== undefined && { forcePushList }),
      ...(forcePushContent !== undefined && { forcePushContent }),
      timetag,
      fields: { ...fields },
    });
    return { code: 200, data: { msgid: BigInt(msgid), timetag, antispam: false } };
  },

  "team/create.action": (fields, state) => {
    const name = requireField(fields, "tname");
    if (name.length > 64) throw new ClassicApiError(414, "tname too long");
    const owner = requireField(fields, "owner");
    const members = parseAccidList(requireField(fields, "members"), "members", TEAM_MEMBER_LIMIT);
    requireField(fields, "msg");
    optionalField(fields, "msg", 150);
    const magree = requireChoice(fields, "magree", ["0", "1"]);
    requireChoice(fields, "joinmode", ["0", "1", "2"]);
    for (const [optional, limit] of [
      ["announcement", 1024],
      ["intro", 512],
      ["icon", 1024],
      ["custom", 1024],
    ] as const) {
      optionalField(fields, optional, limit);
    }
    const team = createTeam(state, { name, owner, members, consentRequired: magree === "1" });
    return { code: 200, tid: team.tid };
  },

  "team/add.action": (fields, state) => {
    const tid = requireField(fields, "tid");
    const owner = requireField(fields, "owner");
    const members = parseAccidList(requireField(fields, "members"), "members", TEAM_MEMBER_LIMIT);
    requireField(fields, "msg");
    const magree = requireChoice(fields, "magree", ["0", "1"]);
    addTeamMembers(state, { tid, owner, members, consentRequired: magree === "1" });
    return { code: 200 };
  },

  // `member` (one accid) or `members` (a JSON array), as the Java SDK's KickTeamRequestV1 sends.
  "team/kick.action": (fields, state) => {
    const tid = requireField(fields, "tid");
    const owner = requireField(fields, "owner");
    const members =
      fields.members !== undefined && fields.members !== ""
        ? parseAccidList(fields.members, "members", TEAM_MEMBER_LIMIT)
        : [requireField(fields, "member")];
    const { notMembers } = kickTeamMembers(state, { tid, owner, members });
    return notMembers.length > 0 ? { code: 200, faccid: { accid: notMembers, msg: "not in team" } } : { code: 200 };
  },

  /**
   * The server's recall (消息撤回): `deleteMsgid` and `timetag` (the message's send time) identify
   * the message, `type` 7 (P2P) or 8 (team) must match it, `from` is its sender, `to` its receiver
   * or tid. `msg` is the postscript copied as `attach`; `ignoreTime` 1 lifts the time limit.
   */
  "msg/recall.action": (fields, state) => {
    const msgid = requireField(fields, "deleteMsgid");
    const timetag = requireField(fields, "timetag");
    const type = requireChoice(fields, "type", ["7", "8"]);
    const from = requireField(fields, "from");
    const to = requireField(fields, "to");
    const postscript = optionalField(fields, "msg", 500);
    const ignoreTime = fields.ignoreTime === "1";
    if (!/^\d+$/.test(msgid)) throw new ClassicApiError(414, "deleteMsgid illegal");
    const message = state.messages.find((candidate) => candidate.msgid === msgid);
    if (message) {
      if (String(message.timetag) !== timetag) throw new ClassicApiError(414, "timetag does not match the message");
      if ((message.ope === 1 ? "8" : "7") !== type) throw new ClassicApiError(414, "type does not match the message");
      if (message.to !== to.toLowerCase()) throw new ClassicApiError(414, "to does not match the message");
    }
    recallMessage(state, {
      msgid,
      by: from,
      source: "server",
      ...(postscript !== undefined && { postscript }),
      ignoreTime,
    });
    return { code: 200 };
  },

  "msg/sendAttachMsg.action": (fields, state) => {
    const from = requireField(fields, "from");
    const msgtype = requireChoice(fields, "msgtype", ["0", "1"]);
    const to = requireField(fields, "to");
    const attach = requireField(fields, "attach");
    if (attach.length > 4096) throw new ClassicApiError(414, "attach too long");
    const saveText = fields.save === undefined || fields.save === "" ? "2" : fields.save;
    if (saveText !== "1" && saveText !== "2") throw new ClassicApiError(414, "save illegal");
    // Unlike sendMsg, needPushNick defaults to false here (nim-protocol §2.8).
    const option = parseOption<EmulatorNotificationOption>(fields.option, {
      badge: true,
      needPushNick: false,
      route: true,
    });
    const pushcontent = optionalField(fields, "pushcontent", 500) ?? optionalField(fields, "pushContent", 500);
    const payload = optionalJsonField(fields, "payload", 2048);
    const sound = optionalField(fields, "sound", 30);
    const sender = requireKnownSender(from, state);
    const receiver = requireKnownReceiver(msgtype, to, sender.accid, state);
    state.recordNotification({
      from: sender.accid,
      to: receiver,
      msgtype: msgtype === "1" ? 1 : 0,
      attach,
      save: saveText === "1" ? 1 : 2,
      option,
      pushcontent,
      payload,
      sound,
      timetag: state.now(),
      fields: { ...fields },
    });
    return { code: 200 };
  },
};

function requireField(fields: Fields, name: string): string {
  const value = fields[name];
  if (value === undefined || value === "") throw new ClassicApiError(414, `${name} is required`);
  return value;
}

function requireChoice(fields: Fields, name: string, choices: string[]): string {
  const value = requireField(fields, name);
  if (!choices.includes(value)) throw new ClassicApiError(414, `${name} illegal`);
  return value;
}

function optionalField(fields: Fields, name: string, limit: number): string | undefined {
  const value = fields[name];
  if (value === undefined) return undefined;
  if (value.length > limit) throw new ClassicApiError(414, `${name} too long`);
  return value;
}

function optionalJsonField(fields: Fields, name: string, limit: number): string | undefined {
  const value = optionalField(fields, name, limit);
  if (value) parseJson(value, name);
  return value;
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ClassicApiError(414, `${name} is not valid JSON`);
  }
}

/** NIM's option JSON: every missing flag keeps its default; a malformed option is a 414. */
function parseOption<T extends object>(text: string | undefined, defaults: T): T {
  if (text === undefined || text === "") return defaults;
  const parsed = parseJson(text, "option");
  if (!isRecord(parsed)) throw new ClassicApiError(414, "option is not a JSON object");
  const option = { ...defaults };
  for (const name of Object.keys(defaults) as Array<keyof T & string>) {
    const value = parsed[name];
    if (typeof value === "boolean") (option as Record<string, unknown>)[name] = value;
  }
  return option;
}

/** `forcepushlist` / `forcePushList`: a JSON array of at most 100 accids (NIM: 811 above that). */
function optionalForcePushList(fields: Fields): string[] | undefined {
  const text = optionalField(fields, "forcepushlist", 10_000) ?? optionalField(fields, "forcePushList", 10_000);
  if (text === undefined || text === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ClassicApiError(414, "forcepushlist is not a JSON array");
  }
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === "string")) {
    throw new ClassicApiError(414, "forcepushlist is not a JSON array of accids");
  }
  if (parsed.length > 100) throw new ClassicApiError(811, "forcepushlist over limit (100)");
  return parsed as string[];
}

function requireAccid(fields: Fields): string {
  const accid = requireField(fields, "accid");
  if (accid.length > accidLimit) throw new ClassicApiError(414, "accid too long");
  if (!accidPattern.test(accid)) throw new ClassicApiError(414, "accid illegal");
  return accid;
}

function requireExistingAccount(fields: Fields, state: NimEmulatorState): EmulatorAccount {
  const account = state.findAccount(requireField(fields, "accid"));
  if (!account) throw new ClassicApiError(414, "accid not exist");
  return account;
}

// Unregistered sender or receiver: 414 with "… accid not exists", the desc integrators report from
// NIM's message APIs (the code in that report is not recorded; 414 "parameter error" is the family
// NIM uses for bad accids elsewhere, and the bridge treats any non-retryable code as final anyway).
function requireKnownSender(from: string, state: NimEmulatorState): EmulatorAccount {
  const account = state.findAccount(from);
  if (!account) throw new ClassicApiError(414, "from accid not exists");
  return account;
}

/**
 * The receiver: a person's stored accid, or (`ope` 1) a tid whose member the sender is: 803 for an
 * unknown team, 804 "not in team" when the sender is not a member (the bot must be one).
 */
function requireKnownReceiver(ope: string, to: string, sender: string, state: NimEmulatorState): string {
  if (ope === "1") return requireTeamSender(state, to, sender).tid;
  const account = state.findAccount(to);
  if (!account) throw new ClassicApiError(414, "to accid not exists");
  return account.accid;
}

/** JSON with bigint values written as bare numbers, as NIM's Java side writes a long msgid. */
export function serialize(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    typeof item === "bigint" ? `\u0000bigint:${item.toString()}\u0000` : item,
  ).replace(/"\\u0000bigint:(\d+)\\u0000"/g, "$1");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
