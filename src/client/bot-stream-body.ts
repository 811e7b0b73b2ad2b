/**
 * The wire format of a streamed bot reply, and the one validator every entry point goes through.
 *
 * im-bridge sends each reply as a series of NIM custom messages (type 100) whose body is one of:
 *
 * - segment: `{"kind":"bot_stream","stream_id":"…","reply_to":"…","seq":0,"delta":"Hel","done":false}`
 * - final:   `{"kind":"bot_stream","stream_id":"…","reply_to":"…","seq":N,"delta":"","done":true,"status":"ok","text":"<whole reply>"}`
 * - a final too long for one NIM body (5000 characters) is split into parts that each carry
 *   `"part": i` (1-based), `"parts": n`, `status` and a slice of `text`; only the last has `done: true`.
 *
 * This module has no imports so that it runs unchanged in a browser, a worker or Node.
 *
 * @module
 */

/** How a finished reply ended, as the server reports it in the final message. */
export type FinalStatus = "ok" | "error" | "blocked" | "limited" | "stopped";

/** A reply's status: `streaming` until the final message (and every final part) is in. */
export type ReplyStatus = "streaming" | FinalStatus;

/** One validated `bot_stream` body, field names exactly as on the wire. */
export interface BotStreamBody {
  kind: "bot_stream";
  /** Identifies one reply; every message of the reply carries it. */
  stream_id: string;
  /** The `msgidServer` of the user message this reply answers ("" when the sender omitted it). */
  reply_to: string;
  /** Position in the reply, from 0 without gaps; segments first, then the final part(s). */
  seq: number;
  /** The text this message adds; "" in final messages. */
  delta: string;
  /** True only on the last message of the reply. */
  done: boolean;
  /** On final messages; an unknown value is reported as `error` (see {@link parseBotStreamBody}). */
  status?: FinalStatus;
  /** On final messages: the whole reply, or this part's slice of it. */
  text?: string;
  /** On multi-part finals: this part's 1-based index. Always present together with `parts`. */
  part?: number;
  /** On multi-part finals: how many parts the final has. */
  parts?: number;
}

/**
 * The most parts a final may announce. The server needs about one part per 5000 characters, so a
 * real reply has a handful; the cap keeps a corrupt body from announcing millions of parts that
 * would keep a reply waiting forever.
 */
export const MAX_FINAL_PARTS = 1000;

const FINAL_STATUSES: ReadonlySet<string> = new Set<FinalStatus>(["ok", "error", "blocked", "limited", "stopped"]);

/** A plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Turns a JSON string into a value, passes an already parsed object through, and gives undefined
 * for anything else (including JSON that does not parse). NIM SDKs hand over the custom body as a
 * string, but test doubles and some wrappers hand over the object, so both are accepted.
 */
export function parseJsonValue(value: unknown): unknown {
  if (typeof value === "string") {
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return undefined;
    }
  }
  return isRecord(value) ? value : undefined;
}

/**
 * Checks that `value` is a `bot_stream` body and returns it in normalised form, or undefined.
 *
 * Rules, chosen so that a front end never crashes and never shows a half-understood message:
 * - `kind` must be "bot_stream", `stream_id` a non-empty string, `seq` an integer >= 0.
 * - `delta`, `reply_to` and `done` may be missing (then "", "" and false) but not of another type.
 * - `part` and `parts` come together, as integers with 1 <= part <= parts <= {@link MAX_FINAL_PARTS},
 *   and a part carries its `text`.
 * - `status` is kept when it is one of ok/error/blocked/limited. Any other value is reported as
 *   `error` rather than rejected: a newer server with a new status must still end the reply (and
 *   its typing indicator) instead of leaving it streaming forever.
 *
 * Never throws.
 */
export function parseBotStreamBody(value: unknown): BotStreamBody | undefined {
  try {
    return parseUnchecked(value);
  } catch {
    // Only reachable through exotic inputs (a getter or Proxy that throws); treat them as malformed.
    return undefined;
  }
}

function parseUnchecked(value: unknown): BotStreamBody | undefined {
  if (!isRecord(value) || value["kind"] !== "bot_stream") return undefined;
  const streamId = value["stream_id"];
  const seq = value["seq"];
  if (typeof streamId !== "string" || streamId === "" || !isNonNegativeInteger(seq)) return undefined;

  const delta = value["delta"] ?? "";
  const replyTo = value["reply_to"] ?? "";
  const done = value["done"] ?? false;
  const text = value["text"];
  if (typeof delta !== "string" || typeof replyTo !== "string" || typeof done !== "boolean") return undefined;
  if (text !== undefined && typeof text !== "string") return undefined;

  const body: BotStreamBody = { kind: "bot_stream", stream_id: streamId, reply_to: replyTo, seq, delta, done };
  if (text !== undefined) body.text = text;

  const part = value["part"];
  const parts = value["parts"];
  if (part !== undefined || parts !== undefined) {
    if (!isNonNegativeInteger(part) || !isNonNegativeInteger(parts)) return undefined;
    if (part < 1 || part > parts || parts > MAX_FINAL_PARTS || text === undefined) return undefined;
    body.part = part;
    body.parts = parts;
  }

  const status = value["status"];
  if (status !== undefined && status !== null) {
    body.status = typeof status === "string" && FINAL_STATUSES.has(status) ? (status as FinalStatus) : "error";
  }
  return body;
}
