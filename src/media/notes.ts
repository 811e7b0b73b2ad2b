/**
 * The short notes a bot answers with when it cannot use what it was sent. The contract forbids
 * silence for a PICTURE, AUDIO, VIDEO, FILE or LOCATION message: each case here has its own note,
 * Chinese first and English second (the bridge does not know the user's language), and each ends by
 * saying what this bot can read, built from its settings so it never promises what is switched off.
 */
import type { MediaKind } from "./attachment.ts";

/** What this bot can read, from its settings. */
export interface MediaCapabilities {
  /** BOT_VISION: pictures go to the model. */
  vision: boolean;
  /** ASR_BASE_URL is set: voice notes are transcribed. */
  transcription: boolean;
}

/** Why a note is given; also logged and counted by the caller. */
export type MediaNoteReason =
  /** The bot cannot read this kind at all (video always; pictures without vision; voice without ASR). */
  | "unsupported"
  /** A file type other than text, Markdown, CSV, JSON or PDF. */
  | "unsupported-file-type"
  | "too-large"
  /** The URL is not one the bridge may fetch (host, scheme, address). */
  | "refused"
  /** The bytes are not what the message says they are. */
  | "wrong-type"
  /** Download failed or timed out. */
  | "unavailable"
  /** Bytes fetched, but nothing could be read from them (corrupt image, scanned PDF, unknown encoding). */
  | "unreadable"
  /** A voice note without recognisable speech. */
  | "no-speech"
  /** The speech-to-text service failed. */
  | "transcription-failed";

const KIND_NAMES: Record<MediaKind, { zh: string; en: string }> = {
  picture: { zh: "图片", en: "picture" },
  audio: { zh: "语音", en: "voice message" },
  video: { zh: "视频", en: "video" },
  file: { zh: "文件", en: "file" },
  location: { zh: "位置", en: "location" },
};

/** "我能读：文字、图片…" / "I can read: text, pictures…" for these capabilities. */
export function capabilitiesLine(capabilities: MediaCapabilities): { zh: string; en: string } {
  const zh = ["文字"];
  const en = ["text"];
  if (capabilities.vision) {
    zh.push("图片");
    en.push("pictures");
  }
  if (capabilities.transcription) {
    zh.push("语音");
    en.push("voice messages");
  }
  zh.push("位置", "txt/md/csv/json/pdf 文件");
  en.push("locations", "txt/md/csv/json/pdf files");
  return { zh: `我能读：${zh.join("、")}。`, en: `I can read: ${en.join(", ")}.` };
}

export interface MediaNoteOptions {
  /** For "too-large": the limit that was exceeded, in bytes. */
  limitBytes?: number;
  /** For "unsupported-file-type": the file's extension. */
  extension?: string;
}

/**
 * The note for one situation, two lines: Chinese, then English.
 *
 * @example
 * mediaNote("video", "unsupported", { vision: true, transcription: false });
 * // "抱歉，我还看不了视频。我能读：文字、图片、位置、txt/md/csv/json/pdf 文件。\n
 * //  Sorry, I can't watch videos yet. I can read: text, pictures, locations, txt/md/csv/json/pdf files."
 */
export function mediaNote(
  kind: MediaKind,
  reason: MediaNoteReason,
  capabilities: MediaCapabilities,
  options: MediaNoteOptions = {},
): string {
  const name = KIND_NAMES[kind];
  const can = capabilitiesLine(capabilities);
  const limit = options.limitBytes === undefined ? undefined : formatBytes(options.limitBytes);
  let zh: string;
  let en: string;
  switch (reason) {
    case "unsupported":
      if (kind === "video") {
        zh = "抱歉，我还看不了视频。";
        en = "Sorry, I can't watch videos yet.";
      } else if (kind === "audio") {
        zh = "抱歉，我还听不了语音，请打字告诉我。";
        en = "Sorry, I can't listen to voice messages yet; please type it.";
      } else if (kind === "picture") {
        zh = "抱歉，我还看不了图片，请用文字描述一下。";
        en = "Sorry, I can't see pictures yet; please describe it in words.";
      } else {
        zh = `抱歉，我读不了这种${name.zh}。`;
        en = `Sorry, I can't read this kind of ${name.en}.`;
      }
      break;
    case "unsupported-file-type": {
      const extension = options.extension ? ` .${options.extension}` : "";
      zh = `抱歉，我读不了${extension ? `${extension} ` : "这种"}文件。`;
      en = `Sorry, I can't read${extension ? extension : " this kind of"} files.`;
      break;
    }
    case "too-large":
      zh = `这个${name.zh}太大了${limit ? `（上限 ${limit}）` : ""}，我读不了。`;
      en = `This ${name.en} is too large for me${limit ? ` (limit ${limit})` : ""}.`;
      break;
    case "refused":
      zh = `这个${name.zh}的链接不是我可以打开的地址。`;
      en = `I can't open this ${name.en}: its link is not on an address I'm allowed to fetch.`;
      break;
    case "wrong-type":
      zh = `这个${name.zh}的内容和它的类型对不上，我没有读取。`;
      en = `This ${name.en}'s content doesn't match its type, so I didn't read it.`;
      break;
    case "unavailable":
      zh = `这个${name.zh}下载失败了，请稍后再发一次。`;
      en = `I couldn't download this ${name.en}; please send it again later.`;
      break;
    case "unreadable":
      zh = `这个${name.zh}里我没读出内容。`;
      en = `I couldn't read anything from this ${name.en}.`;
      break;
    case "no-speech":
      zh = "这段语音里我没听到说话内容。";
      en = "I couldn't hear any words in this voice message.";
      break;
    case "transcription-failed":
      zh = "语音识别暂时出错了，请稍后再试或打字告诉我。";
      en = "Speech recognition failed just now; please try again later or type it.";
      break;
  }
  return `${zh}${can.zh}\n${en} ${can.en}`;
}

/** "5 MB", "512 KB", "300 B": decimal units, as people read file sizes. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1_000_000) return `${trim(bytes / 1_000_000)} MB`;
  if (bytes >= 1_000) return `${trim(bytes / 1_000)} KB`;
  return `${bytes} B`;
}

function trim(value: number): string {
  return String(Math.round(value * 10) / 10);
}
