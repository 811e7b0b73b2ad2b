/**
 * The media module's own view of a NIM attachment. The callback parser owns the wire event; this
 * small type is what `prepareMediaTurn` needs, so the media code does not depend on how the parser
 * spells its fields.
 *
 * NIM's 抄送 shapes (nim-protocol.md §10.1): PICTURE `{md5,h,w,size,name,url,ext}`; AUDIO
 * `{size,ext:"aac",dur,url,md5}` (dur in milliseconds); VIDEO `{url,md5,ext,h,w,size,name,dur}`;
 * FILE `{ext,md5,name,size,url}`; LOCATION `{title,lng,lat}`. `attach` arrives as a JSON string or
 * as an object, and numbers are sometimes strings (`"size":"91680"`). Everything in it was written by
 * the sender's client, so nothing here is trusted: sizes are hints, names are shortened and cleaned.
 */

export type MediaKind = "picture" | "audio" | "video" | "file" | "location";

export interface MediaAttachment {
  kind: MediaKind;
  /** Where the bytes are (untrusted: the fetcher decides whether to go there). */
  url?: string;
  /** File name as the sender's client gave it, cleaned. */
  name?: string;
  /** Extension without a dot, lower case (`jpg`, `aac`, `pdf`). */
  extension?: string;
  /** Declared size in bytes (a hint; the fetcher counts the real bytes). */
  size?: number;
  width?: number;
  height?: number;
  /** Voice and video length in milliseconds. */
  durationMs?: number;
  md5?: string;
  /** LOCATION: the place's title, latitude and longitude. */
  title?: string;
  latitude?: number;
  longitude?: number;
}

const KIND_OF_MESSAGE_TYPE: Record<string, MediaKind> = {
  PICTURE: "picture",
  AUDIO: "audio",
  VIDEO: "video",
  FILE: "file",
  LOCATION: "location",
};

/** The media kind of a NIM `msgType`, or undefined for TEXT, CUSTOM and the rest. */
export function mediaKindOf(messageType: string): MediaKind | undefined {
  return KIND_OF_MESSAGE_TYPE[messageType.toUpperCase()];
}

/**
 * Reads a NIM `attach` (string or object) into a {@link MediaAttachment}. Returns undefined for a
 * `msgType` that is not media. An unreadable `attach` still gives an attachment of the right kind
 * (without a URL), so the user gets the note for that kind rather than silence.
 *
 * @example
 * readMediaAttachment("PICTURE", '{"url":"https://nim-nosdn.netease.im/x","ext":"jpg","size":"91680"}');
 * // { kind: "picture", url: "https://nim-nosdn.netease.im/x", extension: "jpg", size: 91680 }
 */
export function readMediaAttachment(messageType: string, attach: unknown): MediaAttachment | undefined {
  const kind = mediaKindOf(messageType);
  if (kind === undefined) return undefined;
  const fields = toRecord(attach);
  const attachment: MediaAttachment = { kind };
  // A URL is kept exactly or not at all: cleaning or shortening it would point somewhere else.
  if (typeof fields.url === "string" && fields.url.length <= 4096 && !/[\s\u0000-\u001f\u007f]/.test(fields.url)) {
    attachment.url = fields.url;
  }
  const name = text(fields.name, 200);
  if (name !== undefined) attachment.name = name;
  const extension = text(fields.ext, 16)?.toLowerCase().replace(/^\./, "");
  if (extension !== undefined && /^[a-z0-9]+$/.test(extension)) attachment.extension = extension;
  const size = whole(fields.size);
  if (size !== undefined) attachment.size = size;
  const width = whole(fields.w);
  if (width !== undefined) attachment.width = width;
  const height = whole(fields.h);
  if (height !== undefined) attachment.height = height;
  const durationMs = whole(fields.dur);
  if (durationMs !== undefined) attachment.durationMs = durationMs;
  const md5 = text(fields.md5, 64);
  if (md5 !== undefined) attachment.md5 = md5;
  if (kind === "location") {
    const title = text(fields.title, 200);
    if (title !== undefined) attachment.title = title;
    const latitude = finite(fields.lat);
    if (latitude !== undefined && Math.abs(latitude) <= 90) attachment.latitude = latitude;
    const longitude = finite(fields.lng);
    if (longitude !== undefined && Math.abs(longitude) <= 180) attachment.longitude = longitude;
  }
  return attachment;
}

function toRecord(attach: unknown): Record<string, unknown> {
  let value = attach;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch {
      return {};
    }
  }
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** A string with control characters and surrounding space removed, cut to `maximum` characters. */
function text(value: unknown, maximum: number): string | undefined {
  if (typeof value !== "string") return undefined;
  const cleaned = value
    .replace(/[\u0000-\u001f\u007f\u202a-\u202e\u2066-\u2069]/g, " ")
    .replace(/\s+/g, " ")
    .trim();
  if (cleaned === "") return undefined;
  return [...cleaned].slice(0, maximum).join("");
}

function finite(value: unknown): number | undefined {
  const number = typeof value === "number" ? value : typeof value === "string" ? Number(value) : Number.NaN;
  return Number.isFinite(number) && !(typeof value === "string" && value.trim() === "") ? number : undefined;
}

function whole(value: unknown): number | undefined {
  const number = finite(value);
  return number !== undefined && number >= 0 ? Math.floor(number) : undefined;
}
