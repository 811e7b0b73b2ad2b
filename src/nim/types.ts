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
}

/** The largest `body` NIM accepts on msg/sendMsg.action, counted in characters of the JSON string. */
export const NIM_BODY_LIMIT = 5000;
/** The largest `pushcontent` NIM accepts. */
export const NIM_PUSHCONTENT_LIMIT = 500;
