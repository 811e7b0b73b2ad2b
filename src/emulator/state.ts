/**
 * Everything the local NIM emulator remembers: accounts, accepted messages and notifications, a log
 * of requests, message-copy callback attempts, v2 stream messages, per-user offline queues, the
 * fault queue and the mutable settings. Routes (classic-api.ts, v2-api.ts, gateway.ts) and the
 * callback dispatcher (callbacks.ts) read and write it; tests inspect it and await events on it.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { CallbackFaults, FaultRule, RandomFaults } from "./faults.ts";
import { FrequencyControl } from "./frequency-control.ts";

export interface EmulatorAccount {
  /** Lower-cased, as NIM stores it. */
  accid: string;
  token: string;
  name?: string;
  icon?: string;
  sign?: string;
  email?: string;
  birth?: string;
  mobile?: string;
  gender?: number;
  ex?: string;
  createdAt: number;
}

/** sendMsg `option` after NIM's defaults (every flag true unless the request said false). */
export interface EmulatorMessageOption {
  roam: boolean;
  history: boolean;
  sendersync: boolean;
  push: boolean;
  route: boolean;
  badge: boolean;
  needPushNick: boolean;
  persistent: boolean;
  sessionUpdate: boolean;
}

/**
 * Where a message came from, which decides how NIM copies it (消息抄送):
 * - "server": the classic server API (`msg/sendMsg.action`), copied as `fromClientType` REST, only
 *   when `copyServerMessages` is on and `option.route` is not false;
 * - "client": a user's client through the gateway (like an SDK send), always copied, as WEB;
 * - "stream": the merged message of a finished or terminated v2 stream message (server side).
 */
export type EmulatorMessageSource = "server" | "client" | "stream";

/** Why a v2 stream message was terminated before its `finish` chunk. */
export type StreamTerminationReason = "timeout" | "too-long";

/** NIM's `option` defaults: every flag true (a normal, stored, pushed, copied message). */
export const DEFAULT_MESSAGE_OPTION: Readonly<EmulatorMessageOption> = Object.freeze({
  roam: true,
  history: true,
  sendersync: true,
  push: true,
  route: true,
  badge: true,
  needPushNick: true,
  persistent: true,
  sessionUpdate: true,
});

export interface EmulatorMessage {
  /** Decimal digits; may exceed 2^53, so never a number. */
  msgid: string;
  /** The client's id for the message (UUID-like): `msgidClient` in the copy. */
  msgidClient: string;
  source: EmulatorMessageSource;
  /** WEB for gateway sends, REST for the server APIs (what the copy's `fromClientType` says). */
  fromClientType: string;
  /** The sending device; "" for the server APIs, as NIM copies REST messages. */
  fromDeviceId: string;
  /** Set on the merged message of a v2 stream: how the stream ended. */
  stream?: { status: "complete" | "terminated"; reason?: StreamTerminationReason };
  from: string;
  to: string;
  ope: 0 | 1;
  type: number;
  /** The body JSON string exactly as received. */
  body: string;
  option: EmulatorMessageOption;
  pushcontent?: string;
  payload?: string;
  ext?: string;
  /** sendMsg `forcepushlist` / `forcePushList`: the accounts pushed even when muted (team @s). */
  forcePushList?: string[];
  /** sendMsg `forcepushcontent` / `forcePushContent`. */
  forcePushContent?: string;
  /** Set once the message is recalled: it leaves history and offline queues. */
  recalled?: { at: number; by: string };
  /** Acceptance time, ms. */
  timetag: number;
  /** Every form field as received, for parameters the emulator does not model. */
  fields: Record<string, string>;
}

/** An advanced team (高级群): `tid` is what team messages carry in `to`. */
export interface EmulatorTeam {
  /** Decimal digits, as NIM's tids. */
  tid: string;
  name: string;
  /** Lower-cased accid; always a member. */
  owner: string;
  /** Lower-cased accids in joining order, the owner first. */
  members: string[];
  createdAt: number;
}

/** One recall as the emulator performed it (the copy, eventType 7 or 8, follows from it). */
export interface EmulatorRecall {
  /** The recalled message (its `recalled` is set). */
  message: EmulatorMessage;
  /** Who recalled it: the sender (a client) or the `from` of msg/recall.action. */
  by: string;
  /** "client" through the gateway, "server" through msg/recall.action. */
  source: "client" | "server";
  /** The recall's postscript (`msg` of msg/recall.action), copied as `attach`. */
  postscript: string;
  deleteTime: number;
}

export interface EmulatorNotificationOption {
  badge: boolean;
  needPushNick: boolean;
  route: boolean;
}

/** A custom system notification (sendAttachMsg): not part of any conversation. */
export interface EmulatorNotification {
  from: string;
  to: string;
  msgtype: 0 | 1;
  attach: string;
  /** 1 = online only, 2 = stored for offline devices. */
  save: 1 | 2;
  option: EmulatorNotificationOption;
  pushcontent?: string;
  payload?: string;
  sound?: string;
  timetag: number;
  fields: Record<string, string>;
}

/** One v2 stream message (nim-protocol §5.1), from its first chunk to its merge. */
export interface EmulatorStream {
  messageServerId: string;
  messageClientId: string;
  /** As given in the URL, e.g. "bot|1|u_42". */
  conversationId: string;
  from: string;
  to: string;
  /** The chunks' texts concatenated in index order. */
  text: string;
  /** The index the next chunk must carry. */
  nextIndex: number;
  status: "streaming" | "complete" | "terminated";
  terminationReason?: StreamTerminationReason;
  createdAt: number;
  lastChunkAt: number;
  chunks: Array<{ index: number; text: string; finish: 0 | 1; receivedAt: number }>;
  /** The option the merged message is recorded with (from message_config / route_config). */
  option: EmulatorMessageOption;
  /** Fires when no chunk arrived for `streamChunkTimeoutMs`; cleared on finish, termination, reset. */
  timer?: ReturnType<typeof setTimeout>;
}

/** One message-copy (or validation) POST attempt, as the emulator made it. */
export interface EmulatorCallbackRecord {
  /** "recall-copy": NIM's recall copy, eventType 7 (P2P) or 8 (team), see recall.ts. */
  kind: "message-copy" | "recall-copy" | "validation";
  url: string;
  /** The exact body sent (the signature covers these bytes). */
  body: string;
  headers: Record<string, string>;
  /** The copied (or recalled) message's msgid (absent for validation). */
  msgidServer?: string;
  /** 1 for the first try, 2+ for retries. */
  attempt: number;
  /** A fault-injected second delivery of a copy already delivered. */
  duplicate: boolean;
  startedAt: number;
  durationMs: number;
  /** HTTP status of the answer; undefined on a network error or timeout. */
  status?: number;
  error?: string;
  /** Counted as delivered (status in `callbackDeliveredStatuses`, within the timeout). */
  delivered: boolean;
}

/** One request as the emulator answered it. */
export interface EmulatorRequestRecord {
  path: string;
  receivedAt: number;
  /** NIM body code of the answer (undefined when there was no JSON answer). */
  code?: number;
  /** HTTP status of the answer (undefined when the connection was dropped or the client left). */
  httpStatus?: number;
  /** The fault applied, if any. */
  fault?: string;
}

export interface EmulatorSettings {
  appKey: string;
  appSecret: string;
  /**
   * How far CurTime (seconds) may lie behind / ahead of the emulator's clock. NIM documents 5 minutes
   * of validity from CurTime; whether future times are rejected is unconfirmed, hence configurable.
   */
  curTimeWindow: { pastSeconds: number; futureSeconds: number };
  /** Token-bucket rates (and burst sizes) per path group; exceeding one answers 416. */
  frequencyLimits: { userPerSecond: number; messagePerSecond: number };
  /** Added before every answer, ms. */
  latencyMs: number;
  randomFaults: RandomFaults | undefined;
  /**
   * Answer 431 ("HTTP request repeated") to a reused (Nonce, CurTime) pair. Off by default: NIM's
   * trigger for 431 is undocumented and public samples reuse one Nonce freely.
   */
  rejectReplayedNonce: boolean;
  /** sendMsg body limit in characters (5000 on standard plans; configurable on flagship+). */
  bodyLimit: number;
  /** Where message copies are POSTed; undefined: copies are off (like an unconfigured console). */
  callbackUrl: string | undefined;
  /** The secret copies are signed with; the app secret unless a test wants a wrong one. */
  callbackAppSecret: string;
  /**
   * Copy messages sent through the server APIs too (NIM does, unless `option.route` is false), so
   * the bridge sees its own bot messages come back and must ignore them. Default true.
   */
  copyServerMessages: boolean;
  /** How long one copy attempt may take; NIM's documented limit is 5 s. */
  callbackTimeoutMs: number;
  /**
   * Retries after a failed attempt. NIM's real policy (count, backoff, whether it redelivers at all)
   * is undocumented (nim-protocol §4.2, §9.1); the default 2 keeps a briefly failing bridge from
   * losing messages in local runs, and tests can set 0 to model "no redelivery".
   */
  callbackRetries: number;
  /** Wait before retry n (1-based) is `callbackRetryDelayMs × 2^(n-1)`. Default 1000. */
  callbackRetryDelayMs: number;
  /**
   * HTTP statuses that count as delivered. Default [200]. NIM's English "Data Sync Overview" says
   * 200 *or 500* within 5 s counts as delivered; set [200, 500] to model that reading.
   */
  callbackDeliveredStatuses: number[];
  callbackFaults: CallbackFaults;
  /** v2 stream messages: the longest allowed gap between chunks before termination (NIM: 30 s). */
  streamChunkTimeoutMs: number;
  /** v2 stream messages: the most characters all chunks together may carry (NIM: 5000). */
  streamTextLimit: number;
  /**
   * Copy team messages (convType TEAM), including the bot's own team sends. At NIM team 抄送 is a
   * class of its own that must be switched on in the console (nim-protocol §10.3); default on, so
   * tests model a correctly configured app and can switch it off to model a forgotten switch.
   */
  copyTeamMessages: boolean;
  /**
   * How long after sending a client may recall its message. NIM's default is 2 minutes and the
   * console can change it; msg/recall.action with `ignoreTime` 1 is not bound by it.
   */
  recallWindowMs: number;
}

export interface EmulatorStateOptions {
  appKey: string;
  appSecret: string;
  now?: () => number;
  /** The first msgid handed out, e.g. "9007199254740993" to exercise ids beyond 2^53. */
  firstMessageId?: string | bigint;
  curTimeWindow?: Partial<EmulatorSettings["curTimeWindow"]>;
  frequencyLimits?: Partial<EmulatorSettings["frequencyLimits"]>;
  latencyMs?: number;
  randomFaults?: RandomFaults;
  rejectReplayedNonce?: boolean;
  bodyLimit?: number;
  callbackUrl?: string;
  /** Default: `appSecret`. */
  callbackAppSecret?: string;
  copyServerMessages?: boolean;
  callbackTimeoutMs?: number;
  callbackRetries?: number;
  callbackRetryDelayMs?: number;
  callbackDeliveredStatuses?: number[];
  callbackFaults?: CallbackFaults;
  streamChunkTimeoutMs?: number;
  streamTextLimit?: number;
  copyTeamMessages?: boolean;
  recallWindowMs?: number;
  /** The first tid handed out. */
  firstTeamId?: string | bigint;
}

export interface MessageFilter {
  from?: string;
  to?: string;
  type?: number;
  /** Any further condition. */
  where?: (message: EmulatorMessage) => boolean;
}

export interface CallbackFilter {
  kind?: EmulatorCallbackRecord["kind"];
  msgidServer?: string;
  /** Only attempts counted as delivered. */
  delivered?: boolean;
  where?: (record: EmulatorCallbackRecord) => boolean;
}

export interface NotificationFilter {
  from?: string;
  to?: string;
  where?: (notification: EmulatorNotification) => boolean;
}

/** Thirteen digits, like the msgids in NIM's public samples (e.g. 1200510468189). */
const defaultFirstMessageId = 1_200_000_000_000n;
/** Ten digits, like the tids in NIM's public samples (e.g. 1505206112). */
const defaultFirstTeamId = 1_500_000_000n;
const defaultWaitMs = 5_000;

export class NimEmulatorState {
  readonly accounts = new Map<string, EmulatorAccount>();
  readonly messages: EmulatorMessage[] = [];
  readonly notifications: EmulatorNotification[] = [];
  readonly requests: EmulatorRequestRecord[] = [];
  /** Every message-copy and validation POST attempt, in the order they completed. */
  readonly callbacks: EmulatorCallbackRecord[] = [];
  /** v2 stream messages by message_server_id. */
  readonly streams = new Map<string, EmulatorStream>();
  /** Teams by tid. */
  readonly teams = new Map<string, EmulatorTeam>();
  /** Every recall, oldest first. */
  readonly recalls: EmulatorRecall[] = [];
  /**
   * Per recipient accid: stored messages that arrived while the recipient had no open gateway
   * session. Flushed (as the `offline` frame) at the next login, like NIM's offline messages.
   */
  readonly undelivered = new Map<string, EmulatorMessage[]>();
  /** Queued faults, consumed in order; push to inject. */
  readonly faults: FaultRule[] = [];
  readonly settings: EmulatorSettings;
  readonly now: () => number;
  readonly frequencyControl: FrequencyControl;
  /** (Nonce, CurTime) pairs seen within the CurTime window, for `rejectReplayedNonce`. */
  readonly seenNonces = new Map<string, number>();
  private nextMessageId: bigint;
  private readonly firstMessageId: bigint;
  private nextTeamId: bigint;
  private readonly firstTeamId: bigint;
  private readonly events = new EventEmitter();

  constructor(options: EmulatorStateOptions) {
    this.now = options.now ?? Date.now;
    this.firstMessageId = BigInt(options.firstMessageId ?? defaultFirstMessageId);
    this.nextMessageId = this.firstMessageId;
    this.firstTeamId = BigInt(options.firstTeamId ?? defaultFirstTeamId);
    this.nextTeamId = this.firstTeamId;
    this.settings = {
      appKey: options.appKey,
      appSecret: options.appSecret,
      curTimeWindow: { pastSeconds: 300, futureSeconds: 300, ...options.curTimeWindow },
      frequencyLimits: { userPerSecond: 10_000, messagePerSecond: 10_000, ...options.frequencyLimits },
      latencyMs: options.latencyMs ?? 0,
      randomFaults: options.randomFaults,
      rejectReplayedNonce: options.rejectReplayedNonce ?? false,
      bodyLimit: options.bodyLimit ?? 5000,
      callbackUrl: options.callbackUrl,
      callbackAppSecret: options.callbackAppSecret ?? options.appSecret,
      copyServerMessages: options.copyServerMessages ?? true,
      callbackTimeoutMs: options.callbackTimeoutMs ?? 5_000,
      callbackRetries: options.callbackRetries ?? 2,
      callbackRetryDelayMs: options.callbackRetryDelayMs ?? 1_000,
      callbackDeliveredStatuses: options.callbackDeliveredStatuses ?? [200],
      callbackFaults: options.callbackFaults ?? {},
      streamChunkTimeoutMs: options.streamChunkTimeoutMs ?? 30_000,
      streamTextLimit: options.streamTextLimit ?? 5000,
      copyTeamMessages: options.copyTeamMessages ?? true,
      recallWindowMs: options.recallWindowMs ?? 120_000,
    };
    this.frequencyControl = new FrequencyControl(this.settings, this.now);
    // Tests commonly have many waiters on one emulator.
    this.events.setMaxListeners(0);
  }

  /** Accids are case-insensitive at NIM: every lookup goes through the lower-cased form. */
  findAccount(accid: string): EmulatorAccount | undefined {
    return this.accounts.get(accid.toLowerCase());
  }

  addAccount(account: EmulatorAccount): void {
    this.accounts.set(account.accid, account);
    this.events.emit("account", account);
  }

  /** The team with this tid (digits; surrounding white space is not a tid). */
  findTeam(tid: string): EmulatorTeam | undefined {
    return this.teams.get(tid);
  }

  /** Whether `accid` (any case) is a member of team `tid`. */
  isTeamMember(tid: string, accid: string): boolean {
    return this.teams.get(tid)?.members.includes(accid.toLowerCase()) ?? false;
  }

  /** Creates a team; `members` may repeat the owner or each other (kept once). Accids must exist. */
  createTeam(input: { name: string; owner: string; members: string[] }): EmulatorTeam {
    const tid = this.nextTeamId.toString();
    this.nextTeamId += 1n;
    const team: EmulatorTeam = {
      tid,
      name: input.name,
      owner: input.owner.toLowerCase(),
      members: [],
      createdAt: this.now(),
    };
    for (const accid of [input.owner, ...input.members]) {
      const lower = accid.toLowerCase();
      if (!team.members.includes(lower)) team.members.push(lower);
    }
    this.teams.set(tid, team);
    this.events.emit("team", team);
    return team;
  }

  /** Listens to team creation and membership changes; returns the unsubscribe function. */
  onTeamChange(listener: (team: EmulatorTeam) => void): () => void {
    this.events.on("team", listener);
    return () => this.events.off("team", listener);
  }

  /** Called after members were added or removed. */
  recordTeamChange(team: EmulatorTeam): void {
    this.events.emit("team", team);
  }

  /** Records a recall (the message is already marked); delivery and the copy listen to this. */
  recordRecall(recall: EmulatorRecall): void {
    this.recalls.push(recall);
    this.events.emit("recall", recall);
  }

  onRecall(listener: (recall: EmulatorRecall) => void): () => void {
    this.events.on("recall", listener);
    return () => this.events.off("recall", listener);
  }

  allocateMessageId(): string {
    const id = this.nextMessageId;
    this.nextMessageId += 1n;
    return id.toString();
  }

  recordMessage(message: EmulatorMessage): void {
    this.messages.push(message);
    this.events.emit("message", message);
  }

  recordCallback(record: EmulatorCallbackRecord): void {
    this.callbacks.push(record);
    this.events.emit("callback", record);
  }

  /** Called by the v2 API when a stream is created, advances, finishes or is terminated. */
  recordStreamChange(stream: EmulatorStream): void {
    this.events.emit("stream", stream);
  }

  recordNotification(notification: EmulatorNotification): void {
    this.notifications.push(notification);
    this.events.emit("notification", notification);
  }

  /** Listens to every accepted message; returns the unsubscribe function. */
  onMessage(listener: (message: EmulatorMessage) => void): () => void {
    this.events.on("message", listener);
    return () => this.events.off("message", listener);
  }

  onNotification(listener: (notification: EmulatorNotification) => void): () => void {
    this.events.on("notification", listener);
    return () => this.events.off("notification", listener);
  }

  onCallback(listener: (record: EmulatorCallbackRecord) => void): () => void {
    this.events.on("callback", listener);
    return () => this.events.off("callback", listener);
  }

  onStreamChange(listener: (stream: EmulatorStream) => void): () => void {
    this.events.on("stream", listener);
    return () => this.events.off("stream", listener);
  }

  onAccount(listener: (account: EmulatorAccount) => void): () => void {
    this.events.on("account", listener);
    return () => this.events.off("account", listener);
  }

  messagesMatching(filter: MessageFilter = {}): EmulatorMessage[] {
    return this.messages.filter((message) => matchesMessage(message, filter));
  }

  /**
   * Resolves with the matching messages once at least `count` have been accepted (already-accepted
   * ones count); rejects after `timeoutMs` naming what was expected and what arrived.
   */
  waitForMessages(filter: MessageFilter & { count: number; timeoutMs?: number }): Promise<EmulatorMessage[]> {
    return this.waitFor(
      "message",
      () => this.messagesMatching(filter),
      filter.count,
      filter.timeoutMs,
      `${filter.count} message(s) ${describeFilter(filter)}`,
    );
  }

  callbacksMatching(filter: CallbackFilter = {}): EmulatorCallbackRecord[] {
    return this.callbacks.filter(
      (record) =>
        (filter.kind === undefined || record.kind === filter.kind) &&
        (filter.msgidServer === undefined || record.msgidServer === filter.msgidServer) &&
        (filter.delivered === undefined || record.delivered === filter.delivered) &&
        (filter.where === undefined || filter.where(record)),
    );
  }

  /** Resolves once at least `count` matching callback attempts have completed. */
  waitForCallbacks(filter: CallbackFilter & { count: number; timeoutMs?: number }): Promise<EmulatorCallbackRecord[]> {
    return this.waitFor(
      "callback",
      () => this.callbacksMatching(filter),
      filter.count,
      filter.timeoutMs,
      `${filter.count} callback attempt(s)`,
    );
  }

  /** Stored, unrecalled messages of a team, oldest first. */
  teamHistory(tid: string, limit: number): EmulatorMessage[] {
    const messages = this.messages.filter(
      (message) => isStoredMessage(message) && message.ope === 1 && message.to === tid && !message.recalled,
    );
    return limit > 0 ? messages.slice(-limit) : [];
  }

  /** Stored, unrecalled messages of a person-to-person conversation, both directions, oldest first. */
  conversationHistory(accid: string, peer: string, limit: number): EmulatorMessage[] {
    const self = accid.toLowerCase();
    const other = peer.toLowerCase();
    const messages = this.messages.filter(
      (message) =>
        isStoredMessage(message) &&
        message.ope === 0 &&
        !message.recalled &&
        ((message.from === self && message.to === other) || (message.from === other && message.to === self)),
    );
    return limit > 0 ? messages.slice(-limit) : [];
  }

  waitForNotifications(
    filter: NotificationFilter & { count: number; timeoutMs?: number },
  ): Promise<EmulatorNotification[]> {
    return this.waitFor(
      "notification",
      () =>
        this.notifications.filter(
          (notification) =>
            (filter.from === undefined || notification.from === filter.from.toLowerCase()) &&
            (filter.to === undefined || notification.to === filter.to.toLowerCase()) &&
            (filter.where === undefined || filter.where(notification)),
        ),
      filter.count,
      filter.timeoutMs,
      `${filter.count} notification(s) ${describeFilter(filter)}`,
    );
  }

  /**
   * Forgets accounts, messages, requests, callback records, streams (stopping their timers), teams,
   * recalls, offline queues, queued faults and rate-limit buckets; settings stay.
   */
  reset(): void {
    this.accounts.clear();
    this.messages.length = 0;
    this.notifications.length = 0;
    this.requests.length = 0;
    this.callbacks.length = 0;
    for (const stream of this.streams.values()) clearTimeout(stream.timer);
    this.streams.clear();
    this.teams.clear();
    this.recalls.length = 0;
    this.nextTeamId = this.firstTeamId;
    this.undelivered.clear();
    this.faults.length = 0;
    this.seenNonces.clear();
    this.frequencyControl.reset();
    this.nextMessageId = this.firstMessageId;
  }

  /** A server-generated token: 32 lowercase hex characters, the shape seen in NIM's public samples. */
  static generateToken(): string {
    return randomBytes(16).toString("hex");
  }

  private waitFor<T>(
    event: "message" | "notification" | "callback",
    current: () => T[],
    count: number,
    timeoutMs: number | undefined,
    description: string,
  ): Promise<T[]> {
    const initial = current();
    if (initial.length >= count) return Promise.resolve(initial);
    return new Promise((resolve, reject) => {
      const check = () => {
        const matching = current();
        if (matching.length < count) return;
        cleanup();
        resolve(matching);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`NIM emulator: expected ${description}, got ${current().length}`));
      }, timeoutMs ?? defaultWaitMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.events.off(event, check);
      };
      this.events.on(event, check);
    });
  }
}

/**
 * Whether NIM keeps the message for offline delivery and history. The emulator decides on
 * `option.persistent` alone (NIM: "whether to store offline"); `roam` and `history` switch off
 * roaming and cloud history at NIM, which the emulator does not model separately, and the bridge's
 * transient segments set all three to false anyway.
 */
export function isStoredMessage(message: EmulatorMessage): boolean {
  return message.option.persistent !== false;
}

function matchesMessage(message: EmulatorMessage, filter: MessageFilter): boolean {
  return (
    (filter.from === undefined || message.from === filter.from.toLowerCase()) &&
    (filter.to === undefined || message.to === filter.to.toLowerCase()) &&
    (filter.type === undefined || message.type === filter.type) &&
    (filter.where === undefined || filter.where(message))
  );
}

function describeFilter(filter: { from?: string; to?: string; type?: number }): string {
  const parts = [
    filter.from !== undefined && `from ${filter.from}`,
    filter.to !== undefined && `to ${filter.to}`,
    filter.type !== undefined && `of type ${filter.type}`,
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(" ") : "in total";
}
