/**
 * Non-text messages to a bot (contract: "Non-text messages"). One entry point, {@link prepareMediaTurn},
 * turns a PICTURE, AUDIO, VIDEO, FILE or LOCATION attachment into what the reply pipeline needs:
 *
 * - `userText`: the user's turn as text. It goes to moderation and into history: a transcript, a
 *   file excerpt, a location line, or a placeholder such as `[图片 / picture]` (never bytes).
 * - `modelContent`: only for pictures with vision: the OpenAI content parts to send for this turn
 *   instead of `userText` (placeholder text + image). Absent means "send `userText`".
 * - `note`: set when the bot cannot use the attachment: reply with this bilingual note directly and
 *   do not call the model.
 * - `replyPrefix`: set when a transcript is uncertain: start the reply with it ("I heard: …").
 *
 * @example
 * const media = createMediaDependencies(config.media);            // once, at start
 * const attachment = readMediaAttachment(event.msgType, event.attach);
 * if (attachment) {
 *   const turn = await prepareMediaTurn(attachment, { ...config.media, vision: { ...config.media.vision,
 *     enabled: bot.vision } }, media);
 *   if (turn.note) return replyWithText(turn.note);
 *   // moderate turn.userText, store it in history, send turn.modelContent ?? turn.userText to the model,
 *   // and prepend turn.replyPrefix (if any) to the reply.
 * }
 */
import type { ChatCompletionContentPart } from "openai/resources/chat/completions";
import type { MediaAttachment, MediaKind } from "./attachment.ts";
import { AudioConversionError } from "./convert.ts";
import { checkMediaUrl, createMediaFetcher, MediaFetchError, type MediaFetcher, type MediaTypeRule } from "./fetch.ts";
import {
  decodeTextFile,
  type ExtractedText,
  extractPdfText,
  type FileSettings,
  fileExcerpt,
  fileTypeRule,
  locationText,
  readableFileKind,
} from "./files.ts";
import type { AllowedHostEntry } from "./hosts.ts";
import { type ConcurrencyLimit, createConcurrencyLimit } from "./limit.ts";
import { type MediaCapabilities, type MediaNoteReason, mediaNote } from "./notes.ts";
import {
  createTranscriber,
  heardPrefix,
  type Transcriber,
  TranscriptionError,
  type TranscriptionSettings,
} from "./transcribe.ts";
import {
  imageContentParts,
  imageDataUrl,
  PICTURE_PLACEHOLDER,
  prepareImage,
  VISION_INPUT_TYPES,
  type VisionSettings,
} from "./vision.ts";

export type { MediaAttachment, MediaKind } from "./attachment.ts";
export { mediaKindOf, readMediaAttachment } from "./attachment.ts";
export type { MediaFetcher, MediaFetchFailure } from "./fetch.ts";
export { MediaFetchError } from "./fetch.ts";
export { DEFAULT_MEDIA_ALLOWED_HOSTS, parseAllowedHosts } from "./hosts.ts";
export type { MediaNoteReason } from "./notes.ts";

/** Every media setting (the MEDIA_*, BOT_VISION, ASR_* and FILE_* variables; see src/config). */
export interface MediaSettings {
  /** MEDIA_ALLOWED_HOSTS, parsed. */
  allowedHosts: readonly AllowedHostEntry[];
  /** MEDIA_MAX_BYTES: pictures and voice notes. */
  maxBytes: number;
  /** MEDIA_TIMEOUT_MS: one download, redirects and body included. */
  timeoutMs: number;
  /** MEDIA_ALLOW_HTTP. */
  allowHttp: boolean;
  /** MEDIA_MAX_REDIRECTS. */
  maxRedirects: number;
  /** MEDIA_CONCURRENCY: media turns downloaded and decoded at once per process. */
  concurrency: number;
  /** BOT_VISION (per bot: the caller passes the bot's own value) and the MEDIA_VISION_* limits. */
  vision: VisionSettings & { enabled: boolean };
  /** ASR_*: undefined when ASR_BASE_URL is not set (voice notes then get a note). */
  transcription: TranscriptionSettings | undefined;
  /** FILE_*. */
  files: FileSettings;
}

/** What is built once per process and shared by every turn. */
export interface MediaDependencies {
  fetchMedia: MediaFetcher;
  /** Present when speech-to-text is configured. */
  transcribe?: Transcriber | undefined;
  /** Cancels downloads and transcription (the reply's abort signal). */
  signal?: AbortSignal | undefined;
  /** Shared by every turn of the process: at most MEDIA_CONCURRENCY downloads and decodes at once. */
  limit?: ConcurrencyLimit | undefined;
}

/** How the turn went, for the caller's log line and metrics. */
export interface MediaOutcome {
  kind: MediaKind;
  /** `read`: the model gets it; `note`: the user gets a note instead. */
  status: "read" | "note";
  reason?: MediaNoteReason;
  /** Machine-readable detail: the fetch failure reason, `reencoded`, `uncertain` … */
  detail?: string;
}

export interface MediaTurn {
  userText: string;
  modelContent?: ChatCompletionContentPart[];
  note?: string;
  replyPrefix?: string;
  outcome: MediaOutcome;
}

/** Audio formats a voice note may arrive in (NIM records AAC; other clients send M4A, MP3, AMR …). */
const AUDIO_TYPES: MediaTypeRule = {
  mimeTypes: [
    "audio/aac",
    "audio/x-m4a",
    "audio/mp4",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "audio/ogg; codecs=opus",
    "audio/opus",
    "audio/flac",
    "audio/amr",
  ],
};

const PLACEHOLDERS: Record<MediaKind, string> = {
  picture: PICTURE_PLACEHOLDER,
  audio: "[语音 / voice message]",
  video: "[视频 / video]",
  file: "[文件 / file]",
  location: "[位置 / location]",
};

/**
 * Builds the fetcher (and the transcriber when ASR is configured) from the settings.
 *
 * @example
 * const media = createMediaDependencies(config.media);
 */
export function createMediaDependencies(
  settings: Omit<MediaSettings, "vision"> & { vision?: unknown },
  overrides: Partial<Pick<MediaDependencies, "fetchMedia" | "transcribe">> = {},
): MediaDependencies {
  return {
    fetchMedia:
      overrides.fetchMedia ??
      createMediaFetcher({
        allowedHosts: settings.allowedHosts,
        maxBytes: settings.maxBytes,
        timeoutMs: settings.timeoutMs,
        allowHttp: settings.allowHttp,
        maxRedirects: settings.maxRedirects,
      }),
    transcribe:
      overrides.transcribe ?? (settings.transcription ? createTranscriber(settings.transcription) : undefined),
    limit: createConcurrencyLimit(settings.concurrency),
  };
}

/**
 * Turns one attachment into the user's turn, or into a note. Never throws for anything the sender
 * controls: every failure becomes a note, so a media message is never met with silence. Pictures,
 * voice and files wait for a slot of the shared concurrency limit; locations and videos do not.
 */
export function prepareMediaTurn(
  attachment: MediaAttachment,
  settings: MediaSettings,
  dependencies: MediaDependencies,
): Promise<MediaTurn> {
  const downloads = attachment.kind === "picture" || attachment.kind === "audio" || attachment.kind === "file";
  if (downloads && dependencies.limit) {
    return dependencies.limit(() => prepareWithoutLimit(attachment, settings, dependencies));
  }
  return prepareWithoutLimit(attachment, settings, dependencies);
}

async function prepareWithoutLimit(
  attachment: MediaAttachment,
  settings: MediaSettings,
  dependencies: MediaDependencies,
): Promise<MediaTurn> {
  const capabilities: MediaCapabilities = {
    vision: settings.vision.enabled,
    transcription: dependencies.transcribe !== undefined,
  };
  const noteTurn = (reason: MediaNoteReason, detail?: string, limitBytes?: number): MediaTurn => {
    const options: { limitBytes?: number; extension?: string } = {};
    if (limitBytes !== undefined) options.limitBytes = limitBytes;
    if (attachment.extension !== undefined) options.extension = attachment.extension;
    const outcome: MediaOutcome = { kind: attachment.kind, status: "note", reason };
    if (detail !== undefined) outcome.detail = detail;
    return {
      userText: placeholderOf(attachment),
      note: mediaNote(attachment.kind, reason, capabilities, options),
      outcome,
    };
  };
  /** A fetch failure as a note; anything else is a bug and is thrown. */
  const fetchFailure = (error: unknown, limitBytes: number): MediaTurn => {
    if (!(error instanceof MediaFetchError)) throw error;
    switch (error.reason) {
      case "too-large":
        return noteTurn("too-large", error.reason, limitBytes);
      case "wrong-type":
        return noteTurn("wrong-type", error.reason);
      case "http-status":
      case "timeout":
      case "network":
        return noteTurn("unavailable", error.reason);
      default:
        return noteTurn("refused", error.reason);
    }
  };

  switch (attachment.kind) {
    case "location": {
      if (attachment.title === undefined && attachment.latitude === undefined) return noteTurn("unreadable");
      return { userText: locationText(attachment), outcome: { kind: "location", status: "read" } };
    }

    case "video":
      return noteTurn("unsupported");

    case "picture": {
      if (!settings.vision.enabled) return noteTurn("unsupported");
      if (attachment.url === undefined) return noteTurn("unavailable", "no-url");
      if (settings.vision.passUrl) {
        // The model downloads it: check the URL as the fetcher would, then hand it over unfetched.
        try {
          const { url } = checkMediaUrl(attachment.url, settings);
          return {
            userText: PICTURE_PLACEHOLDER,
            modelContent: imageContentParts(url.href, settings.vision),
            outcome: { kind: "picture", status: "read", detail: "url" },
          };
        } catch (error) {
          return fetchFailure(error, settings.maxBytes);
        }
      }
      if (declaredTooLarge(attachment, settings.maxBytes)) {
        return noteTurn("too-large", "declared-size", settings.maxBytes);
      }
      let fetched: Awaited<ReturnType<MediaFetcher>>;
      try {
        fetched = await dependencies.fetchMedia(
          attachment.url,
          withSignal({ accept: { mimeTypes: VISION_INPUT_TYPES } }, dependencies),
        );
      } catch (error) {
        return fetchFailure(error, settings.maxBytes);
      }
      const prepared = await prepareImage(fetched.bytes, fetched.mimeType, settings.vision);
      if (prepared.kind === "refused") {
        return prepared.reason === "too-large"
          ? noteTurn("too-large", "image-limits", settings.vision.maxImageBytes)
          : noteTurn("unreadable", "image-decode");
      }
      const outcome: MediaOutcome = { kind: "picture", status: "read" };
      if (prepared.reencoded) outcome.detail = "reencoded";
      return {
        userText: PICTURE_PLACEHOLDER,
        modelContent: imageContentParts(imageDataUrl(prepared), settings.vision),
        outcome,
      };
    }

    case "audio": {
      const transcribe = dependencies.transcribe;
      if (transcribe === undefined) return noteTurn("unsupported");
      if (attachment.url === undefined) return noteTurn("unavailable", "no-url");
      if (declaredTooLarge(attachment, settings.maxBytes)) {
        return noteTurn("too-large", "declared-size", settings.maxBytes);
      }
      let fetched: Awaited<ReturnType<MediaFetcher>>;
      try {
        fetched = await dependencies.fetchMedia(attachment.url, withSignal({ accept: AUDIO_TYPES }, dependencies));
      } catch (error) {
        return fetchFailure(error, settings.maxBytes);
      }
      let transcript: Awaited<ReturnType<Transcriber>>;
      try {
        transcript = await transcribe(
          {
            bytes: fetched.bytes,
            extension: fetched.extension ?? attachment.extension ?? "aac",
            mimeType: fetched.mimeType.split(";")[0]!,
          },
          dependencies.signal,
        );
      } catch (error) {
        if (error instanceof TranscriptionError)
          return noteTurn("transcription-failed", error.status === undefined ? "no-status" : String(error.status));
        if (error instanceof AudioConversionError) return noteTurn("unreadable", "audio-convert");
        throw error;
      }
      if (transcript.noSpeech) return noteTurn("no-speech");
      const turn: MediaTurn = { userText: transcript.text, outcome: { kind: "audio", status: "read" } };
      if (transcript.uncertain) {
        turn.replyPrefix = heardPrefix(transcript.text);
        turn.outcome.detail = "uncertain";
      }
      return turn;
    }

    case "file": {
      const fileKind = readableFileKind(attachment);
      if (fileKind === undefined) return noteTurn("unsupported-file-type");
      if (attachment.url === undefined) return noteTurn("unavailable", "no-url");
      if (declaredTooLarge(attachment, settings.files.maxBytes)) {
        return noteTurn("too-large", "declared-size", settings.files.maxBytes);
      }
      let fetched: Awaited<ReturnType<MediaFetcher>>;
      try {
        fetched = await dependencies.fetchMedia(
          attachment.url,
          withSignal({ accept: fileTypeRule(fileKind), maxBytes: settings.files.maxBytes }, dependencies),
        );
      } catch (error) {
        return fetchFailure(error, settings.files.maxBytes);
      }
      let extracted: ExtractedText | undefined;
      if (fileKind === "pdf") {
        extracted = await extractPdfText(fetched.bytes, {
          maxPages: settings.files.pdfMaxPages,
          maxCharacters: settings.files.excerptCharacters,
          timeoutMs: settings.files.parseTimeoutMs,
        });
      } else {
        const text = decodeTextFile(fetched.bytes);
        extracted = text === undefined || text.trim() === "" ? undefined : { text };
      }
      if (extracted === undefined) return noteTurn("unreadable", fileKind);
      const name = attachment.name ?? `file.${attachment.extension ?? fileKind}`;
      return {
        userText: fileExcerpt(name, extracted, settings.files.excerptCharacters),
        outcome: { kind: "file", status: "read", detail: fileKind },
      };
    }
  }
}

function placeholderOf(attachment: MediaAttachment): string {
  if (attachment.kind === "file" && attachment.name !== undefined) return `[文件 / file: ${attachment.name}]`;
  return PLACEHOLDERS[attachment.kind];
}

/** A declared size above the limit is refused before any download (a real one is counted anyway). */
function declaredTooLarge(attachment: MediaAttachment, limit: number): boolean {
  return attachment.size !== undefined && attachment.size > limit;
}

function withSignal<T extends object>(options: T, dependencies: MediaDependencies): T & { signal?: AbortSignal } {
  return dependencies.signal ? { ...options, signal: dependencies.signal } : options;
}
