/**
 * One normalising parser for NIM's message-copy callback (消息抄送) bodies. It runs after
 * verification, on the raw bytes, and never throws: every input yields a `ParseResult`, so the route
 * can always answer NIM within its 5-second limit and log what it ignored.
 *
 * NIM's quirks handled here (nim-protocol.md §4):
 * - eventType 1 copies send every value as a JSON string (`"eventType":"1"`, `"msgTimestamp":"…"`,
 *   `"resendFlag":"0"`, `"antispam":"true"`); other NIM products send numbers. Both are accepted.
 * - `msgidServer` is a 64-bit id. Sent as a JSON number above 2^53, `JSON.parse` would round it,
 *   and two different messages could collapse into one de-duplication key. Its digits are therefore
 *   read from the raw text (see `topLevelNumberLiterals`), never from the parsed float.
 * - TEXT: `body` is the plain text itself (not `{"msg":…}`). CUSTOM: the payload is in `attach`
 *   and `body` is "".
 * - The console's validation request is a signed `{}`.
 *
 * Strictness: the fields that decide what the bridge does (eventType, convType, msgType, accids, ids,
 * timestamps, body, attach, flags) must have the right type, or the event is "unknown" with a
 * reason. Purely descriptive fields (fromNick, fromDeviceId, ext, clientIp, …) are dropped when
 * they have an odd type rather than discarding a user's message over a nickname.
 *
 * @module
 */
import type {
  CallbackEvent,
  ConversationKind,
  CustomNotificationEvent,
  MediaAttachment,
  MessageEvent,
  MessageType,
  ParseResult,
  PresenceEvent,
  RecallEvent,
  SystemEvent,
  TextMessageEvent,
} from "./events.ts";

/** A field that makes the event unusable; caught inside this module and turned into "unknown". */
class FieldProblem extends Error {}

type JsonObject = Record<string, unknown>;

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const DIGITS = /^[0-9]+$/;

const MESSAGE_TYPES: Record<string, MessageType> = {
  TEXT: "text",
  PICTURE: "picture",
  AUDIO: "audio",
  VIDEO: "video",
  LOCATION: "location",
  NOTIFICATION: "notification",
  FILE: "file",
  TIPS: "tips",
  CUSTOM: "custom",
  NRTC_NETCALL: "netcall",
};

const CONVERSATIONS: Record<string, ConversationKind> = {
  PERSON: "person",
  TEAM: "team",
  SUPER_TEAM: "super-team",
};

/** msgTypes of CUSTOM_PERSON / CUSTOM_TEAM that are developer notifications; the rest are friend/team ops. */
const CUSTOM_NOTIFICATION_TYPES = new Set(["CUSTOM_P2P_MSG", "CUSTOM_TEAM_MSG"]);

/** NIM's client type codes, listed in its docs next to the names that the copies actually carry. */
const CLIENT_TYPE_NAMES: Record<string, string> = {
  "1": "AOS",
  "2": "IOS",
  "4": "PC",
  "16": "WEB",
  "32": "REST",
  "64": "MAC",
  "65": "HARMONY",
};

/** eventTypes we recognise but do not act on, named for the log line. */
const IGNORED_EVENT_TYPES: Record<string, string> = {
  "4": "chatroom message",
  "5": "audio/video or whiteboard duration",
  "6": "audio/video or whiteboard file info",
  "9": "chatroom enter/leave",
  "10": "ECP call end",
  "11": "SMS receipt",
  "12": "SMS reply",
  "13": "audio/video room enter/leave",
  "14": "chatroom queue operation",
};

/**
 * Parses a callback body (the exact bytes received) into one normalised event. Never throws.
 */
export function parseCallbackEvent(rawBody: Buffer): ParseResult {
  let text: string;
  try {
    text = utf8Decoder.decode(rawBody);
  } catch {
    return { kind: "invalid-json", reason: "not-utf8" };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "invalid-json", reason: "not-json" };
  }
  if (!isJsonObject(parsed)) {
    return { kind: "unknown", reason: `the body is ${describeType(parsed)}, not an object`, raw: parsed };
  }
  if (Object.keys(parsed).length === 0) return { kind: "validation" };

  // Read the event type outside the try below so an unknown event can still report it.
  let eventType: string | undefined;
  try {
    const fields = new FieldReader(parsed, topLevelNumberLiterals(text));
    eventType = fields.eventType();
    return parseEvent(eventType, fields);
  } catch (error) {
    const reason =
      error instanceof FieldProblem
        ? error.message
        : `unexpected parser failure: ${error instanceof Error ? error.message : String(error)}`;
    return withoutUndefined({ kind: "unknown" as const, eventType, reason, raw: parsed });
  }
}

/**
 * True for the one kind of event the bridge answers: a P2P text message from a user to the bot.
 * Accids are compared case-insensitively (NIM stores them lower-cased, senders may not be).
 * Messages *from* the bot are excluded: NIM copies the bot's own sends back to us too.
 */
export function isUserToBotText(event: CallbackEvent, botAccid: string): event is TextMessageEvent {
  if (event.kind !== "message") return false;
  if (event.conversation !== "person" || event.messageType !== "text" || event.text === undefined) return false;
  const bot = botAccid.toLowerCase();
  if (bot === "") return false;
  return event.to.toLowerCase() === bot && event.fromAccount.toLowerCase() !== bot;
}

function parseEvent(eventType: string, fields: FieldReader): CallbackEvent {
  switch (eventType) {
    case "1":
      return parseConversationEvent(fields);
    case "2":
    case "3":
      return parsePresenceEvent(eventType === "2" ? "login" : "logout", fields);
    case "7":
    case "8":
    case "25":
      return parseRecallEvent(eventType === "7" ? "person" : eventType === "8" ? "team" : "super-team", fields);
    default: {
      const name = IGNORED_EVENT_TYPES[eventType];
      const reason = name ? `eventType ${eventType} (${name}) is not handled` : `eventType ${eventType} is unknown`;
      return { kind: "unknown", eventType, reason, raw: fields.record };
    }
  }
}

function parseConversationEvent(fields: FieldReader): CallbackEvent {
  const convType = fields.requiredWord("convType");
  const msgType = fields.requiredWord("msgType");
  const conversation = CONVERSATIONS[convType];
  if (conversation) return parseMessage(conversation, msgType, fields);
  if (convType === "CUSTOM_PERSON" || convType === "CUSTOM_TEAM") {
    const customConversation = convType === "CUSTOM_PERSON" ? "person" : "team";
    return CUSTOM_NOTIFICATION_TYPES.has(msgType)
      ? parseCustomNotification(customConversation, fields)
      : parseSystemEvent(customConversation, msgType, fields);
  }
  return { kind: "unknown", eventType: "1", reason: `convType ${convType} is not handled`, raw: fields.record };
}

function parseMessage(conversation: ConversationKind, msgType: string, fields: FieldReader): MessageEvent {
  const messageType = MESSAGE_TYPES[msgType] ?? "other";
  const body = fields.optionalString("body");
  if (messageType === "text" && body === undefined) throw new FieldProblem("a TEXT message has no body");
  const attach = fields.attachText("attach");
  return withoutUndefined({
    kind: "message" as const,
    conversation,
    messageType,
    rawMessageType: msgType,
    fromAccount: fields.requiredIdentifier("fromAccount"),
    to: fields.requiredIdentifier("to"),
    text: messageType === "text" ? body : undefined,
    attach: attach === "" ? undefined : attach,
    media: mediaAttachment(messageType, fields.attachObject("attach")),
    body: messageType !== "text" && body !== "" ? body : undefined,
    msgidServer: fields.requiredDigits("msgidServer"),
    msgidClient: fields.optionalIdentifier("msgidClient"),
    msgTimestamp: fields.requiredTimestamp("msgTimestamp"),
    fromClientType: fields.clientType("fromClientType"),
    fromDeviceId: fields.descriptiveText("fromDeviceId"),
    fromNick: fields.descriptiveText("fromNick"),
    resend: fields.flag("resendFlag"),
    antispam: fields.flag("antispam"),
    blacklisted: fields.flag("blacklist"),
    ext: fields.descriptiveText("ext"),
    teamMembers: fields.teamMembers("tMembers"),
    aiParams: fields.objectField("aiParams"),
    raw: fields.record,
  });
}

function parseCustomNotification(conversation: "person" | "team", fields: FieldReader): CustomNotificationEvent {
  return withoutUndefined({
    kind: "custom-notification" as const,
    conversation,
    from: fields.requiredIdentifier("fromAccount"),
    to: fields.requiredIdentifier("to"),
    attach: fields.optionalString("attach") ?? "",
    msgidServer: fields.optionalDigits("msgidServer"),
    msgTimestamp: fields.optionalTimestamp("msgTimestamp"),
    fromClientType: fields.clientType("fromClientType"),
    fromNick: fields.descriptiveText("fromNick"),
    storedOffline: fields.flag("customSafeFlag"),
    pushText: fields.descriptiveText("customApnsText"),
    raw: fields.record,
  });
}

function parseSystemEvent(conversation: "person" | "team", msgType: string, fields: FieldReader): SystemEvent {
  const attach = fields.optionalString("attach");
  return withoutUndefined({
    kind: "system" as const,
    conversation,
    systemType: msgType,
    from: fields.requiredIdentifier("fromAccount"),
    to: fields.requiredIdentifier("to"),
    attach: attach === "" ? undefined : attach,
    msgidServer: fields.optionalDigits("msgidServer"),
    msgTimestamp: fields.optionalTimestamp("msgTimestamp"),
    raw: fields.record,
  });
}

function parsePresenceEvent(kind: "login" | "logout", fields: FieldReader): PresenceEvent {
  return withoutUndefined({
    kind,
    accid: fields.requiredIdentifier("accid"),
    clientType: fields.clientType("clientType"),
    clientIp: fields.descriptiveText("clientIp"),
    timestamp: fields.optionalTimestamp("timestamp"),
    deviceId: fields.descriptiveText("deviceId"),
    sdkVersion: fields.descriptiveText("sdkVersion"),
    code: fields.descriptiveText("code"),
    raw: fields.record,
  });
}

function parseRecallEvent(conversation: RecallEvent["conversation"], fields: FieldReader): RecallEvent {
  const attach = fields.attachText("attach");
  return withoutUndefined({
    kind: "recall" as const,
    conversation,
    fromAccount: fields.optionalIdentifier("from") ?? fields.optionalIdentifier("fromAccount"),
    to: fields.optionalIdentifier("to"),
    recalledMsgidServer: fields.optionalDigits("msgId") ?? fields.optionalDigits("deleteMsgid"),
    recalledMsgidClient: fields.optionalIdentifier("clientId"),
    deleteTime: fields.optionalTimestamp("deleteTime"),
    sendTime: fields.optionalTimestamp("sendTime"),
    fromClientType: fields.clientType("fromClientType"),
    selfRecall: fields.optionalFlag("selfMsg"),
    attach: attach === "" ? undefined : attach,
    raw: fields.record,
  });
}

/** NIM's attachment fields per media type (nim-protocol §10.1), read leniently and typed. */
function mediaAttachment(messageType: MessageType, attach: JsonObject | undefined): MediaAttachment | undefined {
  if (attach === undefined) return undefined;
  if (
    messageType !== "picture" &&
    messageType !== "audio" &&
    messageType !== "video" &&
    messageType !== "file" &&
    messageType !== "location"
  ) {
    return undefined;
  }
  const text = (name: string) => {
    const value = attach[name];
    return typeof value === "string" && value !== "" ? value : undefined;
  };
  const number = (name: string) => {
    const value = attach[name];
    const parsed = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
    return typeof parsed === "number" && Number.isFinite(parsed) ? parsed : undefined;
  };
  const count = (name: string) => {
    const value = number(name);
    return value !== undefined && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  };
  if (messageType === "location") {
    const latitude = number("lat");
    const longitude = number("lng");
    return withoutUndefined({
      kind: messageType,
      title: text("title"),
      latitude: latitude !== undefined && Math.abs(latitude) <= 90 ? latitude : undefined,
      longitude: longitude !== undefined && Math.abs(longitude) <= 180 ? longitude : undefined,
    });
  }
  return withoutUndefined({
    kind: messageType,
    url: text("url"),
    size: count("size"),
    ext: text("ext"),
    duration: messageType === "audio" || messageType === "video" ? count("dur") : undefined,
    name: text("name"),
    md5: text("md5"),
    width: messageType === "picture" || messageType === "video" ? count("w") : undefined,
    height: messageType === "picture" || messageType === "video" ? count("h") : undefined,
  });
}

/** Typed access to the top-level fields of one body, accepting NIM's strings and plain JSON types. */
class FieldReader {
  constructor(
    readonly record: JsonObject,
    /** Raw text of every top-level number literal, by key: exact digits for 64-bit ids. */
    private readonly numberLiterals: Map<string, string>,
  ) {}

  /** Own properties only, so "constructor" or "__proto__" can never come from the prototype. */
  private value(name: string): unknown {
    return Object.hasOwn(this.record, name) ? this.record[name] : undefined;
  }

  /** The exact decimal text of an integer field sent as a JSON number, or undefined. */
  private integerText(name: string, value: number): string | undefined {
    const literal = this.numberLiterals.get(name);
    // The literal must be the one JSON.parse kept (duplicate keys: both take the last occurrence).
    if (literal !== undefined && DIGITS.test(literal) && Number(literal) === value) return literal;
    if (Number.isSafeInteger(value) && value >= 0) return String(value);
    return undefined;
  }

  eventType(): string {
    const value = this.value("eventType");
    if (value === undefined || value === null || value === "") throw new FieldProblem("eventType is missing");
    if (typeof value === "string" && DIGITS.test(value)) return String(Number(value));
    if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return String(value);
    throw new FieldProblem(`eventType is ${describeType(value)}, not a number`);
  }

  /** An enum-like word such as convType or msgType, upper-cased. */
  requiredWord(name: string): string {
    const value = this.value(name);
    if (value === undefined || value === null || value === "") throw new FieldProblem(`${name} is missing`);
    if (typeof value !== "string") throw new FieldProblem(`${name} is ${describeType(value)}, not a string`);
    return value.toUpperCase();
  }

  /** An accid or team id. Team ids (and all-digit accids) may arrive as numbers. */
  requiredIdentifier(name: string): string {
    const value = this.optionalIdentifier(name);
    if (value === undefined) throw new FieldProblem(`${name} is missing`);
    return value;
  }

  optionalIdentifier(name: string): string | undefined {
    const value = this.value(name);
    if (value === undefined || value === null || value === "") return undefined;
    if (typeof value === "string") return value;
    if (typeof value === "number") {
      const digits = this.integerText(name, value);
      if (digits !== undefined) return digits;
    }
    throw new FieldProblem(`${name} is ${describeType(value)}, not an identifier`);
  }

  requiredDigits(name: string): string {
    const value = this.optionalDigits(name);
    if (value === undefined) throw new FieldProblem(`${name} is missing`);
    return value;
  }

  /** A 64-bit id as a digit string, exact whether it came as "123" or as 123. */
  optionalDigits(name: string): string | undefined {
    const value = this.value(name);
    if (value === undefined || value === null || value === "") return undefined;
    if (typeof value === "string" && DIGITS.test(value)) return value;
    if (typeof value === "number") {
      const digits = this.integerText(name, value);
      if (digits !== undefined) return digits;
    }
    throw new FieldProblem(`${name} is not a string of digits`);
  }

  requiredTimestamp(name: string): number {
    const value = this.optionalTimestamp(name);
    if (value === undefined) throw new FieldProblem(`${name} is missing`);
    return value;
  }

  /** Milliseconds since the epoch, from "1441977355557" or 1441977355557. */
  optionalTimestamp(name: string): number | undefined {
    const value = this.value(name);
    if (value === undefined || value === null || value === "") return undefined;
    const number = typeof value === "string" && DIGITS.test(value) ? Number(value) : value;
    if (typeof number === "number" && Number.isSafeInteger(number) && number >= 0) return number;
    throw new FieldProblem(`${name} is not a timestamp in milliseconds`);
  }

  /** A string field whose content matters (body, attach): any other type is a problem. */
  optionalString(name: string): string | undefined {
    const value = this.value(name);
    if (value === undefined || value === null) return undefined;
    if (typeof value === "string") return value;
    throw new FieldProblem(`${name} is ${describeType(value)}, not a string`);
  }

  /**
   * `attach`: a string as NIM's field table says, or a JSON object as its own examples show; an
   * object is handed on as its JSON text so consumers see one type. Anything else is a problem.
   */
  attachText(name: string): string | undefined {
    const value = this.value(name);
    if (isJsonObject(value)) return JSON.stringify(value);
    return this.optionalString(name);
  }

  /** `attach` as an object: the object itself, or a string that holds a JSON object. */
  attachObject(name: string): JsonObject | undefined {
    return this.objectField(name);
  }

  /** A descriptive flag: true/false when it is one, undefined when absent or odd. */
  optionalFlag(name: string): boolean | undefined {
    const value = this.value(name);
    if (value === undefined || value === null || value === "") return undefined;
    try {
      return this.flag(name);
    } catch {
      return undefined;
    }
  }

  /** A descriptive string (nickname, device, ip): kept when it is text or a number, dropped otherwise. */
  descriptiveText(name: string): string | undefined {
    const value = this.value(name);
    if (typeof value === "string") return value === "" ? undefined : value;
    if (typeof value === "number" && Number.isFinite(value)) return this.numberLiterals.get(name) ?? String(value);
    return undefined;
  }

  /** Client type by name (what the copies carry); NIM's numeric codes are mapped to those names. */
  clientType(name: string): string | undefined {
    const text = this.descriptiveText(name);
    if (text === undefined) return undefined;
    return CLIENT_TYPE_NAMES[text] ?? text;
  }

  /**
   * NIM's flags: "true"/"false", "1"/"0", booleans or 0/1. Absent, null or "" mean false. Anything
   * else is a problem rather than a guess: reading an odd `antispam` value as false would let
   * flagged content through.
   */
  flag(name: string): boolean {
    const value = this.value(name);
    if (value === undefined || value === null || value === "") return false;
    if (value === true || value === 1) return true;
    if (value === false || value === 0) return false;
    if (typeof value === "string") {
      const lower = value.toLowerCase();
      if (lower === "true" || lower === "1") return true;
      if (lower === "false" || lower === "0") return false;
    }
    throw new FieldProblem(`${name} is not a boolean flag`);
  }

  /** `tMembers`: a string like "[123, 456]" or '["a","b"]' (or, leniently, a real array). */
  teamMembers(name: string): string[] | undefined {
    const value = this.value(name);
    let items: unknown[];
    if (Array.isArray(value)) {
      items = value;
    } else if (typeof value === "string") {
      // Split the text instead of JSON.parse so that numeric accids keep all their digits.
      const inner = /^\s*\[([\s\S]*)\]\s*$/.exec(value)?.[1];
      if (inner === undefined) return undefined;
      if (inner.trim() === "") return [];
      items = inner.split(",").map((item) => item.trim().replace(/^"(.*)"$/, "$1"));
    } else {
      return undefined;
    }
    const members = items.map((item) => (typeof item === "number" ? String(item) : item));
    return members.every((member): member is string => typeof member === "string" && member !== "")
      ? members
      : undefined;
  }

  /** A field NIM sends as a JSON object (aiParams); a JSON string holding an object is accepted too. */
  objectField(name: string): JsonObject | undefined {
    const value = this.value(name);
    if (isJsonObject(value)) return value;
    if (typeof value === "string") {
      try {
        const parsed: unknown = JSON.parse(value);
        return isJsonObject(parsed) ? parsed : undefined;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
}

/**
 * The raw text of every number literal that is a direct value of the top-level object, by key, so
 * 64-bit ids sent as JSON numbers keep their exact digits. Node 20's JSON.parse offers no reviver
 * `context.source`, and a regex over the text would also match inside string values (a user's TEXT
 * body can contain `"msgidServer":1`), so this is a small scanner that skips strings and nesting.
 * It runs only on text JSON.parse already accepted as an object, so it can assume valid JSON.
 */
export function topLevelNumberLiterals(json: string): Map<string, string> {
  const literals = new Map<string, string>();
  let depth = 0;
  let expectingKey = false;
  let currentKey: string | undefined;
  let index = 0;
  while (index < json.length) {
    const character = json[index];
    if (character === '"') {
      let end = index + 1;
      while (end < json.length && json[end] !== '"') end += json[end] === "\\" ? 2 : 1;
      if (depth === 1 && expectingKey) {
        currentKey = JSON.parse(json.slice(index, end + 1)) as string;
        expectingKey = false;
      }
      index = end + 1;
    } else if (character === "{" || character === "[") {
      depth += 1;
      if (depth === 1) expectingKey = character === "{";
      index += 1;
    } else if (character === "}" || character === "]") {
      depth -= 1;
      index += 1;
    } else if (character === ",") {
      // At depth 1 we are inside the root object, so a comma always precedes a key.
      if (depth === 1) expectingKey = true;
      index += 1;
    } else if (character === "-" || (character !== undefined && character >= "0" && character <= "9")) {
      let end = index + 1;
      while (end < json.length && /[0-9eE.+-]/.test(json[end] ?? "")) end += 1;
      if (depth === 1 && currentKey !== undefined) literals.set(currentKey, json.slice(index, end));
      index = end;
    } else {
      // Whitespace, ':' and the letters of true / false / null.
      index += 1;
    }
  }
  return literals;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}

/** Drops keys whose value is undefined so events log and compare cleanly. */
function withoutUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as Array<keyof T>) {
    if (value[key] === undefined) delete value[key];
  }
  return value;
}
