/**
 * The normalised shape of NIM's message-copy callback (消息抄送) bodies, as produced by
 * `parseCallbackEvent` (parse.ts). Types only: anything may import this without pulling in code.
 *
 * NIM sends nearly every value as a JSON *string* (`"eventType":"1"`, `"msgTimestamp":"1441977355557"`,
 * `"resendFlag":"0"`); other NIM products send numbers. The parser accepts both and hands out one
 * shape: ids as digit strings (they are 64-bit and exceed 2^53), times as numbers, flags as booleans.
 *
 * @module
 */

/** `convType` PERSON / TEAM / SUPER_TEAM. */
export type ConversationKind = "person" | "team" | "super-team";

/** `msgType` of a conversation message; anything not listed (or new) is "other". */
export type MessageType =
  | "text"
  | "picture"
  | "audio"
  | "video"
  | "location"
  | "notification"
  | "file"
  | "tips"
  | "custom"
  | "netcall"
  | "other";

/** NIM's validation request: the console POSTs a signed `{}` and wants 200 within 5 s. */
export interface ValidationEvent {
  kind: "validation";
}

/** eventType 1 with convType PERSON / TEAM / SUPER_TEAM: a message in a conversation. */
export interface MessageEvent {
  kind: "message";
  conversation: ConversationKind;
  messageType: MessageType;
  /** NIM's `msgType` as sent (e.g. "TEXT", "ROBOT"), useful when `messageType` is "other". */
  rawMessageType: string;
  /** Sender accid as sent (NIM stores accids lower-cased, but compare case-insensitively). */
  fromAccount: string;
  /** Receiver accid (person) or team id (team, super-team). */
  to: string;
  /** The plain text: set whenever `messageType` is "text" (NIM's `body` for TEXT is the text itself). */
  text?: string;
  /**
   * `attach`, when present and non-empty, always as a string. CUSTOM: the developer payload (NIM
   * puts it here and sends `body` ""). PICTURE, FILE, …: NIM's attachment JSON; NIM's doc examples
   * show it as a JSON *object* too, which is kept here as its JSON text.
   */
  attach?: string;
  /**
   * PICTURE, AUDIO, VIDEO, FILE, LOCATION: the attachment's fields, typed (numbers NIM sent as
   * strings are numbers here). Absent for other types or an attach that is not a JSON object.
   */
  media?: MediaAttachment;
  /** `body` for message types other than TEXT, when present and non-empty. */
  body?: string;
  /** NIM's server message id, digits only, exact (never passed through a float). */
  msgidServer: string;
  /** Client-generated id (UUID-like). */
  msgidClient?: string;
  /** When the sender sent it, milliseconds since the epoch. */
  msgTimestamp: number;
  /** AOS, IOS, PC, WEB, REST (server API), MAC, HARMONY; numeric codes are mapped to these names. */
  fromClientType?: string;
  fromDeviceId?: string;
  fromNick?: string;
  /** `resendFlag` "1": the *client* resent it (not a callback redelivery). Same msgidServer rules apply. */
  resend: boolean;
  /** `antispam` "true": NIM's moderation flagged the message. */
  antispam: boolean;
  /** `blacklist` "true": the receiver has blacklisted the sender (P2P). */
  blacklisted: boolean;
  ext?: string;
  /** Team messages: the members `tMembers` lists (NIM sends it as a string like "[123, 456]"). */
  teamMembers?: string[];
  /** NIM's own AI digital-human info, when the message involved one (an object, not a string). */
  aiParams?: Record<string, unknown>;
  /** The decoded body. Large numbers in it may have lost precision; use the fields above. */
  raw: Record<string, unknown>;
}

/**
 * eventType 1 with convType CUSTOM_PERSON / CUSTOM_TEAM and msgType CUSTOM_P2P_MSG / CUSTOM_TEAM_MSG:
 * a custom *system notification* (sendAttachMsg), which is not part of any conversation history.
 */
export interface CustomNotificationEvent {
  kind: "custom-notification";
  conversation: "person" | "team";
  from: string;
  to: string;
  /** The developer payload (a string, usually JSON). "" when NIM sent none. */
  attach: string;
  msgidServer?: string;
  msgTimestamp?: number;
  fromClientType?: string;
  fromNick?: string;
  /** `customSafeFlag` "1": stored for offline delivery. */
  storedOffline: boolean;
  /** `customApnsText`: the push text. */
  pushText?: string;
  raw: Record<string, unknown>;
}

/**
 * eventType 1 with convType CUSTOM_PERSON / CUSTOM_TEAM and any other msgType: friend and team
 * operations (FRIEND_ADD, FRIEND_DELETE, TEAM_APPLY, TEAM_INVITE, SUPERTEAM_*, …).
 */
export interface SystemEvent {
  kind: "system";
  conversation: "person" | "team";
  /** NIM's `msgType` as sent, e.g. "FRIEND_ADD". */
  systemType: string;
  from: string;
  to: string;
  attach?: string;
  msgidServer?: string;
  msgTimestamp?: number;
  raw: Record<string, unknown>;
}

/** eventType 2 (login) and 3 (logout). NIM may deliver these out of order or lose them. */
export interface PresenceEvent {
  kind: "login" | "logout";
  accid: string;
  clientType?: string;
  clientIp?: string;
  /** When it happened, ms since the epoch: order presence events by this, not by arrival. */
  timestamp?: number;
  deviceId?: string;
  sdkVersion?: string;
  /** NIM's result code for the login, e.g. "200". */
  code?: string;
  raw: Record<string, unknown>;
}

/**
 * A media message's attachment (nim-protocol §10.1), NIM's field names mapped to full words:
 * PICTURE `{md5,h,w,size,name,url,ext}`, AUDIO `{size,ext,dur,url,md5}`, VIDEO
 * `{url,md5,ext,h,w,size,name,dur}`, FILE `{ext,md5,name,size,url}`, LOCATION `{title,lng,lat}`.
 * Every field is optional: a field of the wrong type is dropped, not guessed. `url` is untrusted
 * (any client can send a media message with any URL): check the host before fetching it.
 */
export interface MediaAttachment {
  kind: "picture" | "audio" | "video" | "file" | "location";
  url?: string;
  /** Bytes. */
  size?: number;
  /** File extension as NIM reports it ("jpg", "aac", …), without a dot. */
  ext?: string;
  /** Audio and video length in milliseconds (NIM's `dur`). */
  duration?: number;
  name?: string;
  md5?: string;
  /** Pixels (NIM's `w`, `h`). */
  width?: number;
  height?: number;
  /** LOCATION: the place's title and coordinates (NIM's `lng`, `lat`). */
  title?: string;
  longitude?: number;
  latitude?: number;
}

/**
 * eventType 7 (P2P recall), 8 (team recall, `to` = tid) and 25 (super-team recall), with NIM's
 * real fields (nim-protocol §10.1 #1): `{"eventType":"7","from","to","msgId","clientId",
 * "deleteTime","sendTime","fromClientType","selfMsg","attach"}`. Older guesses (`fromAccount`,
 * `deleteMsgid`) are still read when the real names are absent.
 */
export interface RecallEvent {
  kind: "recall";
  conversation: "person" | "team" | "super-team";
  /** Who recalled it (NIM's `from`). */
  fromAccount?: string;
  /** The peer accid (P2P) or the team id. */
  to?: string;
  /** NIM's `msgId`: the server id of the recalled message (digits, exact). */
  recalledMsgidServer?: string;
  /** NIM's `clientId`: the recalled message's client id. */
  recalledMsgidClient?: string;
  /** When it was recalled, ms (`deleteTime`). */
  deleteTime?: number;
  /** When the recalled message had been sent, ms (`sendTime`). */
  sendTime?: number;
  fromClientType?: string;
  /** `selfMsg`: the sender recalled their own message (not a team manager someone else's). */
  selfRecall?: boolean;
  /** The recall notice's `attach` (a string, or an object kept as its JSON text). */
  attach?: string;
  raw: Record<string, unknown>;
}

/** Valid JSON that is not an event we understand: another eventType, missing or mistyped fields, a non-object. */
export interface UnknownEvent {
  kind: "unknown";
  /** The eventType as a string, when one could be read. */
  eventType?: string;
  /** Why it is unknown, for logs ("eventType 4 (chatroom) is not handled", "msgidServer is missing"). */
  reason: string;
  raw: unknown;
}

/** The body is not UTF-8, or not JSON. */
export interface InvalidJsonEvent {
  kind: "invalid-json";
  reason: "not-utf8" | "not-json";
}

export type CallbackEvent =
  | ValidationEvent
  | MessageEvent
  | CustomNotificationEvent
  | SystemEvent
  | PresenceEvent
  | RecallEvent
  | UnknownEvent
  | InvalidJsonEvent;

/** What `parseCallbackEvent` returns: every input yields one of these, nothing throws. */
export type ParseResult = CallbackEvent;

/** A text message whose `text` is known to be present (narrowed by `isUserToBotText`). */
export type TextMessageEvent = MessageEvent & { messageType: "text"; text: string };
