/**
 * The emulator's client gateway: a WebSocket at `/gateway` that plays what NIM's client SDK does for
 * a web page (log in with accid + token, send text, receive messages), with JSON text frames instead
 * of NIM's binary protocol. The demo page and end-to-end tests use it as "the user's browser".
 *
 * Frames (client → server):
 *   {"type":"login","accid","token","authType"?}
 *                                           → {"type":"login","code":200,"accid":"<lower-cased>"}
 *                                             then {"type":"offline","messages":[…]} (always, maybe [])
 *                                           | {"type":"login","code":302,"desc":"wrong account or token"}
 *                                             then the socket is closed (code 4302)
 *                                           | {"type":"login","code":<dynamicTokenExpiredCode>,"desc":"token expired"}
 *                                             then the socket is closed (4000 + that code)
 *     authType 0 (default): the account's static token. authType 1: NIM's dynamic token
 *     (nim-protocol §10.4), checked against the app key and secret and the emulator's clock.
 *   {"type":"send","to","text","clientId"}  → {"type":"sent","clientId","code":200,"msgid","timetag"}
 *                                           | {"type":"sent","clientId","code":404|414,"desc"}
 *   {"type":"history","with","limit"?}      → {"type":"history","with","messages":[…]} (oldest first)
 *   {"type":"send","to","text","clientId","scene"?,"ext"?}
 *                                           → {"type":"sent","clientId","code":200,"msgid","timetag"}
 *                                           | {"type":"sent","clientId","code":404|414|803|804,"desc"}
 *     `scene` "team" sends to the team `to` (a tid): 803 no such team, 804 "not in team" for a
 *     sender who is not a member. `ext` (a string, like UIKit's JSON with `yxAitMsg`) is passed on
 *     to receivers and to the copy untouched, as NIM does.
 *   {"type":"send","to","clientId","msgType":"PICTURE"|"FILE","attach":{url,name,ext,size,md5,w?,h?},"scene"?}
 *                                           → as a text send; 414 for a missing or malformed attach field
 *     What NIM's SDK sends after uploading to NOS (see storage.ts): message type 1 (PICTURE, `w` and
 *     `h` required) or 6 (FILE); the stored body, and the copy's `attach`, is the attach as a JSON
 *     string, with the copy's `body` "". The URL is not checked against the storage: a real client
 *     can send any URL too (nim-protocol §10.1), which is why the bridge fetches only allowed hosts.
 *   {"type":"history","with","limit"?,"scene"?} → {"type":"history","with","scene","messages":[…]}
 *     (oldest first; a team's history only for its members, else 804)
 *   {"type":"recall","msgid"}               → {"type":"recalled","msgid","code":200}
 *                                           | {"type":"recalled","msgid","code":403|404|414|508,"desc"}
 *     (a user recalls their own message; NIM's recall copy, eventType 7 or 8, goes to the bridge)
 *   {"type":"teams"}                        → {"type":"teams","teams":[{tid,name,owner,members}]}
 *   {"type":"ping"}                         → {"type":"pong"}
 *   before login, anything but login        → {"type":"error","code":403,"desc":"login first"}
 *   malformed / unknown frames              → {"type":"error","code":414,"desc":…}
 *
 * Server → client, pushed:
 *   {"type":"message","message":{msgid,from,to,scene,type,body,timetag,option,ext?,fromNick?,…}} for
 *     every message to the logged-in accid, or to a team it is a member of (not its own team sends),
 *     to every open session of it, whichever API sent it;
 *   {"type":"recall","recall":{msgid,from,to,scene,deleteTime}} when a message of a conversation
 *     of this accid was recalled (both sides of a P2P conversation, every member of a team);
 *   {"type":"stream","message":{message_server_id,from,to,text,index,finish,…}} for each non-final
 *     chunk of a v2 stream message (`text` is the accumulated text); the finished stream then
 *     arrives as an ordinary stored `message` whose msgid equals message_server_id,
 *     with `ext` (the stream's extension) and `stream: {status, reason?, ragInfoList?}`; in a team
 *     the live chunks reach only the sender's sessions unless `teamStreamFramesToAllMembers`.
 *
 * Online-only versus stored (NIM's option semantics, decided on `option.persistent`, see
 * `isStoredMessage`): an online-only message reaches only the sessions open at that moment; a stored
 * message that finds the recipient with no open session is queued and sent in the `offline` frame at
 * the next login. So a user coming back sees the bot's final answer, not its transient segments.
 *
 * Not modelled: NIM's multi-device kick (417), sync of one's own sends to one's other devices, and
 * delivery acknowledgements (a frame lost in a dying socket is lost).
 */
import { randomBytes, randomUUID } from "node:crypto";
import websocket from "@fastify/websocket";
import type { FastifyInstance } from "fastify";
import { type RawData, WebSocket } from "ws";
import { checkDynamicToken } from "../nim/dynamic-token.ts";
import { ClassicApiError } from "./errors.ts";
import { askIntercept } from "./intercept.ts";
import { recallMessage } from "./recall.ts";
import {
  DEFAULT_MESSAGE_OPTION,
  type EmulatorMessage,
  type EmulatorMessageOption,
  type EmulatorRecall,
  isStoredMessage,
  type NimEmulatorState,
  type StreamTerminationReason,
} from "./state.ts";
import { requireTeamSender } from "./teams.ts";

/** A message as the gateway shows it to a client. */
export interface GatewayMessage {
  /** Digits; a string because it may exceed 2^53. */
  msgid: string;
  from: string;
  to: string;
  /** 0 text (body `{"msg":…}`), 100 custom (body exactly as the sender passed it), … */
  type: number;
  /** The body JSON string as NIM stores it. */
  body: string;
  /** Acceptance time, ms. */
  timetag: number;
  /** "team" for a team message (`to` is then the tid). */
  scene: "p2p" | "team";
  option: EmulatorMessageOption;
  msgidClient: string;
  fromClientType: string;
  /** 0 = P2P, 1 = team (`to` is the tid). */
  ope: 0 | 1;
  /** The sender's extension as sent (UIKit puts `yxAitMsg` here; v2 `extension`). */
  ext?: string;
  /** The sender's nickname, when the account has one. */
  fromNick?: string;
  /** Only on the merged message of a v2 stream message. */
  stream?: { status: "complete" | "terminated"; reason?: StreamTerminationReason; ragInfoList?: unknown[] };
}

/** A non-final chunk of a v2 stream message, as pushed to the receiver. */
export interface GatewayStreamChunk {
  message_server_id: string;
  message_client_id: string;
  from: string;
  to: string;
  /** All chunks so far, concatenated. */
  text: string;
  /** The chunk's own text. */
  delta: string;
  index: number;
  finish: 0 | 1;
  create_time: number;
  /** Present in a team conversation (`to` is then the tid). */
  scope?: "team";
  /** The stream's newest `extension`, as the request gave it. */
  extension?: string;
  /** The stream's newest `rag_info_list` (citations). */
  rag_info_list?: unknown[];
}

export type GatewayClientFrame =
  | { type: "login"; accid: string; token: string; authType?: 0 | 1 }
  | { type: "send"; to: string; text: string; clientId: string; scene?: "p2p" | "team"; ext?: string }
  | {
      type: "send";
      to: string;
      clientId: string;
      msgType: "PICTURE" | "FILE";
      attach: GatewayMediaAttach;
      scene?: "p2p" | "team";
      ext?: string;
    }
  | { type: "history"; with: string; limit?: number; scene?: "p2p" | "team" }
  | { type: "recall"; msgid: string }
  | { type: "teams" }
  | { type: "ping" };

/** A PICTURE's or FILE's attachment as a client sends it (NIM's 抄送 shape, nim-protocol §10.1). */
export interface GatewayMediaAttach {
  url: string;
  name: string;
  ext: string;
  size: number;
  md5: string;
  /** PICTURE only. */
  w?: number;
  h?: number;
}

/** The message types a client may send with an attach, as NIM numbers them. */
const mediaMessageTypes = { PICTURE: 1, FILE: 6 } as const;

/** A recall as pushed to the clients of the conversation. */
export interface GatewayRecall {
  msgid: string;
  from: string;
  to: string;
  scene: "p2p" | "team";
  deleteTime: number;
}

/** A team as the `teams` frame lists it. */
export interface GatewayTeam {
  tid: string;
  name: string;
  owner: string;
  members: string[];
}

export type GatewayServerFrame =
  | { type: "login"; code: 200; accid: string }
  | { type: "login"; code: number; desc: string }
  | { type: "offline"; messages: GatewayMessage[] }
  | { type: "sent"; clientId: string; code: 200; msgid: string; timetag: number }
  | { type: "sent"; clientId: string; code: number; desc: string }
  | { type: "message"; message: GatewayMessage }
  | { type: "stream"; message: GatewayStreamChunk }
  | { type: "history"; with: string; scene: "p2p" | "team"; messages: GatewayMessage[] }
  | { type: "recalled"; msgid: string; code: 200 }
  | { type: "recalled"; msgid: string; code: number; desc: string }
  | { type: "recall"; recall: GatewayRecall }
  | { type: "teams"; teams: GatewayTeam[] }
  | { type: "pong" }
  | { type: "error"; code: number; desc: string };

/** One open WebSocket. `accid` is set once the login succeeded. */
export interface GatewaySession {
  socket: WebSocket;
  accid: string | undefined;
  /** NIM's per-device id, copied as `fromDeviceId`: one per connection here. */
  deviceId: string;
}

/** The WebSocket close code after a failed login: 4000 + NIM's 302 (application codes are 4000–4999). */
export const loginFailedCloseCode = 4302;
/** Default and largest `limit` of a history request (NIM's history queries cap at 100). */
const defaultHistoryLimit = 50;
const maximumHistoryLimit = 100;

/** Who is online, and delivery of messages and stream chunks to them. */
export class GatewayHub {
  private readonly sessions = new Map<string, Set<GatewaySession>>();

  constructor(private readonly state: NimEmulatorState) {}

  /** Starts delivering every accepted message and every recall; returns the unsubscribe function. */
  start(): () => void {
    const stopMessages = this.state.onMessage((message) => this.deliver(message));
    const stopRecalls = this.state.onRecall((recall) => this.deliverRecall(recall));
    return () => {
      stopMessages();
      stopRecalls();
    };
  }

  /** A message as clients see it, with the sender's nickname. */
  view(message: EmulatorMessage): GatewayMessage {
    return toGatewayMessage(message, this.state.findAccount(message.from)?.name);
  }

  /** Accids with at least one open, logged-in session. */
  onlineAccids(): string[] {
    return [...this.sessions.keys()].filter((accid) => this.openSessionsOf(accid).length > 0);
  }

  isOnline(accid: string): boolean {
    return this.openSessionsOf(accid.toLowerCase()).length > 0;
  }

  /** Sends `frame` to every open session of `accid`; returns how many got it. */
  sendTo(accid: string, frame: GatewayServerFrame): number {
    const open = this.openSessionsOf(accid.toLowerCase());
    for (const session of open) send(session, frame);
    return open.length;
  }

  /**
   * Marks the session online and hands back the stored messages queued while the user had no open
   * session. Both happen in one synchronous step, so no message can fall between them.
   */
  login(session: GatewaySession, accid: string): EmulatorMessage[] {
    session.accid = accid;
    let sessions = this.sessions.get(accid);
    if (!sessions) {
      sessions = new Set();
      this.sessions.set(accid, sessions);
    }
    sessions.add(session);
    const queued = this.state.undelivered.get(accid) ?? [];
    this.state.undelivered.delete(accid);
    return queued;
  }

  logout(session: GatewaySession): void {
    if (session.accid === undefined) return;
    const sessions = this.sessions.get(session.accid);
    sessions?.delete(session);
    if (sessions?.size === 0) this.sessions.delete(session.accid);
  }

  /** P2P: to the receiver. Team: to every member but the sender (NIM's own-device sync is not modelled). */
  private deliver(message: EmulatorMessage): void {
    const frame: GatewayServerFrame = { type: "message", message: this.view(message) };
    const recipients =
      message.ope === 1
        ? (this.state.findTeam(message.to)?.members ?? []).filter((accid) => accid !== message.from)
        : [message.to];
    for (const recipient of recipients) {
      const delivered = this.sendTo(recipient, frame);
      if (delivered > 0 || !isStoredMessage(message)) continue;
      const queue = this.state.undelivered.get(recipient) ?? [];
      queue.push(message);
      this.state.undelivered.set(recipient, queue);
    }
  }

  /** Tells both sides of a P2P conversation, or every team member, that a message was recalled. */
  private deliverRecall(recall: EmulatorRecall): void {
    const message = recall.message;
    const scene = message.ope === 1 ? "team" : "p2p";
    const recipients =
      message.ope === 1 ? (this.state.findTeam(message.to)?.members ?? []) : [message.from, message.to];
    const frame: GatewayServerFrame = {
      type: "recall",
      recall: { msgid: message.msgid, from: message.from, to: message.to, scene, deleteTime: recall.deleteTime },
    };
    for (const recipient of new Set(recipients)) this.sendTo(recipient, frame);
  }

  private openSessionsOf(accid: string): GatewaySession[] {
    return [...(this.sessions.get(accid) ?? [])].filter((session) => session.socket.readyState === WebSocket.OPEN);
  }
}

export function toGatewayMessage(message: EmulatorMessage, fromNick?: string): GatewayMessage {
  const view: GatewayMessage = {
    msgid: message.msgid,
    from: message.from,
    to: message.to,
    type: message.type,
    body: message.body,
    timetag: message.timetag,
    scene: message.ope === 1 ? "team" : "p2p",
    option: { ...message.option },
    msgidClient: message.msgidClient,
    fromClientType: message.fromClientType,
    ope: message.ope,
  };
  if (message.ext !== undefined) view.ext = message.ext;
  if (fromNick) view.fromNick = fromNick;
  if (message.stream) view.stream = { ...message.stream };
  return view;
}

export interface GatewayOptions {
  state: NimEmulatorState;
  hub: GatewayHub;
}

/** Registers the WebSocket route `/gateway` (and @fastify/websocket in this plugin's scope). */
export async function gateway(app: FastifyInstance, options: GatewayOptions): Promise<void> {
  const { state, hub } = options;
  await app.register(websocket);

  app.get("/gateway", { websocket: true }, (socket) => {
    const session: GatewaySession = { socket, accid: undefined, deviceId: randomBytes(16).toString("hex") };
    socket.on("message", (data: RawData, isBinary: boolean) => {
      if (isBinary) send(session, { type: "error", code: 414, desc: "text frames only" });
      else handleFrame(session, rawText(data));
    });
    socket.on("close", () => hub.logout(session));
    // A broken connection ends in "close" as well; nothing else to do, but an unhandled "error"
    // event would crash the process.
    socket.on("error", () => {});
  });

  function handleFrame(session: GatewaySession, text: string): void {
    const answer = answerFrame(session, text);
    if (answer instanceof Promise) {
      // Only a send waiting for the third-party callback is asynchronous; it never rejects.
      void answer.then((frame) => send(session, frame));
    } else if (answer) send(session, answer);
  }

  /** The answer to one client frame; undefined when the handler sent its frames itself (login). */
  function answerFrame(
    session: GatewaySession,
    text: string,
  ): GatewayServerFrame | Promise<GatewayServerFrame> | undefined {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      return { type: "error", code: 414, desc: "frame is not JSON" };
    }
    if (!isRecord(frame) || typeof frame.type !== "string") {
      return { type: "error", code: 414, desc: 'frame must be an object with a "type"' };
    }
    if (frame.type === "login") {
      login(session, frame);
      return undefined;
    }
    if (session.accid === undefined) return { type: "error", code: 403, desc: "login first" };
    switch (frame.type) {
      case "send":
        return sendMessage(session, session.accid, frame);
      case "history":
        return history(session.accid, frame);
      case "recall":
        return recall(session.accid, frame);
      case "teams":
        return teams(session.accid);
      case "ping":
        return { type: "pong" };
      default:
        return { type: "error", code: 414, desc: `unknown frame type: ${frame.type}` };
    }
  }

  function login(session: GatewaySession, frame: Record<string, unknown>): void {
    if (session.accid !== undefined) {
      send(session, { type: "error", code: 417, desc: "already logged in" });
      return;
    }
    const account = typeof frame.accid === "string" ? state.findAccount(frame.accid) : undefined;
    const refuse = (code: number, desc: string) => {
      send(session, { type: "login", code, desc });
      session.socket.close(4000 + (code % 1000), desc);
    };
    const authType = frame.authType === undefined ? 0 : frame.authType;
    if (authType !== 0 && authType !== 1) {
      refuse(414, "authType must be 0 or 1");
      return;
    }
    if (!account || typeof frame.token !== "string") {
      // NIM's SDK login answers 302 for an unknown account and for a wrong token alike.
      refuse(302, "wrong account or token");
      return;
    }
    if (authType === 1) {
      const check = state.settings.dynamicTokenLogin
        ? checkDynamicToken({
            token: frame.token,
            appKey: state.settings.appKey,
            appSecret: state.settings.appSecret,
            accid: account.accid,
            nowMs: state.now(),
            futureToleranceMs: state.settings.dynamicTokenFutureToleranceMs,
          })
        : ({ ok: false, reason: "signature" } as const);
      if (!check.ok) {
        if (check.reason === "expired") refuse(state.settings.dynamicTokenExpiredCode, "token expired");
        else refuse(302, "wrong account or token");
        return;
      }
    } else if (frame.token !== account.token) {
      refuse(302, "wrong account or token");
      return;
    }
    const queued = hub.login(session, account.accid);
    send(session, { type: "login", code: 200, accid: account.accid });
    send(session, { type: "offline", messages: queued.map((message) => hub.view(message)) });
  }

  function sendMessage(
    session: GatewaySession,
    from: string,
    frame: Record<string, unknown>,
  ): GatewayServerFrame | Promise<GatewayServerFrame> {
    const clientId = typeof frame.clientId === "string" && frame.clientId !== "" ? frame.clientId : undefined;
    const answerClientId = clientId ?? "";
    const fail = (code: number, desc: string): GatewayServerFrame => ({
      type: "sent",
      clientId: answerClientId,
      code,
      desc,
    });
    if (typeof frame.to !== "string" || frame.to === "") return fail(414, "to is required");
    let content: { type: number; body: string };
    if (frame.msgType === undefined) {
      if (typeof frame.text !== "string" || frame.text === "") return fail(414, "text is required");
      // The SDK limit on a text message, the same 5000 characters as the server API's body.
      if (frame.text.length > state.settings.bodyLimit) return fail(414, "text too long");
      content = { type: 0, body: JSON.stringify({ msg: frame.text }) };
    } else {
      const media = parseMediaMessage(frame.msgType, frame.attach);
      if (typeof media === "string") return fail(414, media);
      content = media;
    }
    const scene = frame.scene ?? "p2p";
    if (scene !== "p2p" && scene !== "team") return fail(414, 'scene must be "p2p" or "team"');
    if (frame.ext !== undefined && typeof frame.ext !== "string") return fail(414, "ext must be a string");
    // The same 1024 characters as the server API's ext; NIM passes the content on unchecked.
    if (typeof frame.ext === "string" && frame.ext.length > 1024) return fail(414, "ext too long");
    let receiver: string;
    if (scene === "team") {
      try {
        receiver = requireTeamSender(state, frame.to, from).tid;
      } catch (error) {
        if (error instanceof ClassicApiError) return fail(error.code, error.desc);
        throw error;
      }
    } else {
      const account = state.findAccount(frame.to);
      // An SDK send to a missing account: 404 "object not found" (the server API says 414 instead).
      if (!account) return fail(404, "to accid not exists");
      receiver = account.accid;
    }

    const msgid = state.allocateMessageId();
    const timetag = state.now();
    const message: EmulatorMessage = {
      msgid,
      msgidClient: clientId ?? randomUUID(),
      source: "client",
      fromClientType: "WEB",
      fromDeviceId: session.deviceId,
      from,
      to: receiver,
      ope: scene === "team" ? 1 : 0,
      type: content.type,
      body: content.body,
      option: { ...DEFAULT_MESSAGE_OPTION },
      ...(typeof frame.ext === "string" && frame.ext !== "" && { ext: frame.ext }),
      timetag,
      fields: {},
    };
    const accepted = (): GatewayServerFrame => {
      // Recording delivers it to the receiver's sessions and starts the copy to the callback URL.
      state.recordMessage(message);
      return { type: "sent", clientId: answerClientId, code: 200, msgid, timetag };
    };
    const interceptUrl = state.settings.interceptUrl;
    if (!interceptUrl) return accepted();
    // NIM's third-party callback decides before delivery; a rejection is 403 in the sender's SDK.
    return askIntercept(state, interceptUrl, message).then((decision) =>
      decision === "allow" ? accepted() : fail(403, "rejected by the third-party callback"),
    );
  }

  function history(accid: string, frame: Record<string, unknown>): GatewayServerFrame {
    if (typeof frame.with !== "string" || frame.with === "") {
      return { type: "error", code: 414, desc: "with is required" };
    }
    const requested =
      typeof frame.limit === "number" && Number.isInteger(frame.limit) ? frame.limit : defaultHistoryLimit;
    const limit = Math.min(Math.max(requested, 1), maximumHistoryLimit);
    if (frame.scene === "team") {
      if (!state.isTeamMember(frame.with, accid)) return { type: "error", code: 804, desc: "not in team" };
      const messages = state.teamHistory(frame.with, limit).map((message) => hub.view(message));
      return { type: "history", with: frame.with, scene: "team", messages };
    }
    const peer = frame.with.toLowerCase();
    const messages = state.conversationHistory(accid, peer, limit).map((message) => hub.view(message));
    return { type: "history", with: peer, scene: "p2p", messages };
  }

  function recall(accid: string, frame: Record<string, unknown>): GatewayServerFrame {
    const msgid = typeof frame.msgid === "string" ? frame.msgid : "";
    if (!/^\d{1,20}$/.test(msgid)) return { type: "recalled", msgid, code: 414, desc: "msgid is required" };
    try {
      recallMessage(state, { msgid, by: accid, source: "client" });
    } catch (error) {
      if (error instanceof ClassicApiError) return { type: "recalled", msgid, code: error.code, desc: error.desc };
      throw error;
    }
    return { type: "recalled", msgid, code: 200 };
  }

  function teams(accid: string): GatewayServerFrame {
    const mine = [...state.teams.values()].filter((team) => team.members.includes(accid));
    return {
      type: "teams",
      teams: mine.map((team) => ({ tid: team.tid, name: team.name, owner: team.owner, members: [...team.members] })),
    };
  }
}

/**
 * The type and body of a PICTURE or FILE send, or why it is refused. Only the known fields are
 * kept, in NIM's shape; the bridge reads them as hostile input all the same.
 */
export function parseMediaMessage(msgType: unknown, attach: unknown): { type: number; body: string } | string {
  if (msgType !== "PICTURE" && msgType !== "FILE") return 'msgType must be "PICTURE" or "FILE"';
  if (!isRecord(attach)) return "attach must be an object";
  const { url, name, ext, size, md5, w, h } = attach;
  if (typeof url !== "string" || url.length > 1024 || !/^https?:\/\/[^\s]+$/.test(url)) {
    return "attach.url must be an http(s) URL of at most 1024 characters";
  }
  if (typeof name !== "string" || name === "" || name.length > 255) return "attach.name must be 1–255 characters";
  if (typeof ext !== "string" || !/^[A-Za-z0-9]{0,16}$/.test(ext))
    return "attach.ext must be up to 16 letters or digits";
  if (!isCount(size)) return "attach.size must be a non-negative integer";
  if (typeof md5 !== "string" || !/^[0-9a-f]{32}$/i.test(md5)) return "attach.md5 must be 32 hex digits";
  const kept: GatewayMediaAttach = { url, name, ext, size, md5 };
  if (msgType === "PICTURE") {
    if (!isCount(w) || !isCount(h) || w === 0 || h === 0) return "attach.w and attach.h must be positive integers";
    kept.w = w;
    kept.h = h;
  }
  return { type: mediaMessageTypes[msgType], body: JSON.stringify(kept) };
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function send(session: GatewaySession, frame: GatewayServerFrame): void {
  if (session.socket.readyState === WebSocket.OPEN) session.socket.send(JSON.stringify(frame));
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("utf8");
  return data.toString("utf8");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
