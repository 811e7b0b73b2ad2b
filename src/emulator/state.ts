/**
 * Everything the local NIM emulator remembers: accounts, accepted messages and notifications, a log
 * of requests, the fault queue and the mutable settings. Routes (classic-api.ts, and later the
 * WebSocket gateway and callbacks) read and write it; tests inspect it and await deliveries on it.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { FaultRule, RandomFaults } from "./faults.ts";
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

export interface EmulatorMessage {
  /** Decimal digits; may exceed 2^53, so never a number. */
  msgid: string;
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
  /** Acceptance time, ms. */
  timetag: number;
  /** Every form field as received, for parameters the emulator does not model. */
  fields: Record<string, string>;
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
}

export interface MessageFilter {
  from?: string;
  to?: string;
  type?: number;
  /** Any further condition. */
  where?: (message: EmulatorMessage) => boolean;
}

export interface NotificationFilter {
  from?: string;
  to?: string;
  where?: (notification: EmulatorNotification) => boolean;
}

/** Thirteen digits, like the msgids in NIM's public samples (e.g. 1200510468189). */
const defaultFirstMessageId = 1_200_000_000_000n;
const defaultWaitMs = 5_000;

export class NimEmulatorState {
  readonly accounts = new Map<string, EmulatorAccount>();
  readonly messages: EmulatorMessage[] = [];
  readonly notifications: EmulatorNotification[] = [];
  readonly requests: EmulatorRequestRecord[] = [];
  /** Queued faults, consumed in order; push to inject. */
  readonly faults: FaultRule[] = [];
  readonly settings: EmulatorSettings;
  readonly now: () => number;
  readonly frequencyControl: FrequencyControl;
  /** (Nonce, CurTime) pairs seen within the CurTime window, for `rejectReplayedNonce`. */
  readonly seenNonces = new Map<string, number>();
  private nextMessageId: bigint;
  private readonly firstMessageId: bigint;
  private readonly events = new EventEmitter();

  constructor(options: EmulatorStateOptions) {
    this.now = options.now ?? Date.now;
    this.firstMessageId = BigInt(options.firstMessageId ?? defaultFirstMessageId);
    this.nextMessageId = this.firstMessageId;
    this.settings = {
      appKey: options.appKey,
      appSecret: options.appSecret,
      curTimeWindow: { pastSeconds: 300, futureSeconds: 300, ...options.curTimeWindow },
      frequencyLimits: { userPerSecond: 10_000, messagePerSecond: 10_000, ...options.frequencyLimits },
      latencyMs: options.latencyMs ?? 0,
      randomFaults: options.randomFaults,
      rejectReplayedNonce: options.rejectReplayedNonce ?? false,
      bodyLimit: options.bodyLimit ?? 5000,
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

  allocateMessageId(): string {
    const id = this.nextMessageId;
    this.nextMessageId += 1n;
    return id.toString();
  }

  recordMessage(message: EmulatorMessage): void {
    this.messages.push(message);
    this.events.emit("message", message);
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

  /** Forgets accounts, messages, requests, queued faults and rate-limit buckets; settings stay. */
  reset(): void {
    this.accounts.clear();
    this.messages.length = 0;
    this.notifications.length = 0;
    this.requests.length = 0;
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
    event: "message" | "notification",
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
