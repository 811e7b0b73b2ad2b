/**
 * What the rest of im-bridge knows about NIM's server API. Imports no implementation, so the
 * reply pipeline and the register service depend on this and tests can pass any NimClient.
 */

/** NIM's message `option` flags (all default true on NIM's side). */
export interface NimMessageOption {
  roam?: boolean;
  history?: boolean;
  sendersync?: boolean;
  push?: boolean;
  route?: boolean;
  badge?: boolean;
  needPushNick?: boolean;
  persistent?: boolean;
  sessionUpdate?: boolean;
}

export interface NimSendMessageRequest {
  from: string;
  to: string;
  /** 0 = P2P (default), 1 = team. */
  ope?: 0 | 1;
  /** 0 text, 100 custom, … */
  type: number;
  /** The body JSON string as NIM receives it (at most 5000 characters). Objects are JSON-encoded. */
  body: string | Record<string, unknown>;
  option?: NimMessageOption;
  pushcontent?: string;
  payload?: string;
  ext?: string;
  /**
   * Team @s (nim-protocol §10.3): a JSON array of the accids pushed even when they muted the team,
   * e.g. '["u_alice"]' (NIM: at most 100, else 811). src/teams `replyMentionFields` builds it.
   */
  forcepushlist?: string;
  /** The push text of those forced pushes. */
  forcepushcontent?: string;
}

export interface NimSendMessageResult {
  /** NIM's numeric message id, kept as a string (it can exceed 2^53). */
  msgid: string;
  timetag: number;
}

export interface NimAccount {
  accid: string;
  token: string;
  name?: string;
}

export interface NimUserInfo {
  accid: string;
  name?: string;
  [field: string]: unknown;
}

/**
 * `msg/recall.action` (消息撤回): withdraws a delivered message from both sides' devices, history
 * and offline queues. Parameters as in NIM's official server SDKs (yunxin-server-sdk-java
 * `RecallMessageRequestV1`, yunxin-server-sdk-golang `RecallMessageRequestV1`, both posting to
 * `/msg/recall.action`): deleteMsgid, timetag, type (7 P2P, 8 team), from, to, msg, ignoreTime,
 * pushcontent, payload, env, attach.
 */
export interface NimRecallRequest {
  /** The message's msgidServer (`deleteMsgid`): digits, kept as a string (it can exceed 2^53). */
  msgidServer: string;
  /** When NIM accepted it (`timetag`), ms: the copy's `msgTimestamp`. */
  timetag: number;
  /** `type` 7 (person to person) or 8 (team). */
  conversation: "person" | "team";
  /** The message's sender. */
  from: string;
  /** The receiver's accid (P2P) or the tid (team). */
  to: string;
  /** The note shown in place of the message (`msg`, at most 128 characters; NIM: "撤回了一条信息"). */
  description?: string;
  /** `ignoreTime=1`: recall regardless of the recall time limit (NIM: messages of the last 30 days). */
  ignoreTimeLimit?: boolean;
  pushcontent?: string;
  payload?: string;
  /** The environment whose message-copy URL gets the recall event. */
  env?: string;
  /** Extension, at most 5000 characters. */
  attach?: string;
}

/** Per-call overrides (a deadline or an abort from the caller). */
export interface NimCallOptions {
  signal?: AbortSignal;
  /** Overall deadline for this call including retries, in ms from now. */
  deadlineMs?: number;
}

export interface NimClient {
  createAccount(input: { accid: string; name?: string; token?: string }, options?: NimCallOptions): Promise<NimAccount>;
  updateToken(input: { accid: string; token: string }, options?: NimCallOptions): Promise<void>;
  refreshToken(accid: string, options?: NimCallOptions): Promise<NimAccount>;
  getUserInfos(accids: string[], options?: NimCallOptions): Promise<NimUserInfo[]>;
  sendMessage(request: NimSendMessageRequest, options?: NimCallOptions): Promise<NimSendMessageResult>;
  recallMessage(request: NimRecallRequest, options?: NimCallOptions): Promise<void>;
  /**
   * Closes the client's own connections once calls in flight end (a client given a shared sender
   * leaves it to its owner). Optional, so test doubles need not have it.
   */
  close?(): Promise<void>;
}

/** The largest `body` NIM accepts on msg/sendMsg.action, counted in characters of the JSON string. */
export const NIM_BODY_LIMIT = 5000;
/** The largest `pushcontent` NIM accepts. */
export const NIM_PUSHCONTENT_LIMIT = 500;
