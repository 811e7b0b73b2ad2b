/**
 * Voice notes to text through an OpenAI-compatible `POST {ASR_BASE_URL}/audio/transcriptions`
 * (multipart: `file`, `model`, `response_format`, optional `language`), sent with the official
 * `openai` SDK so the multipart body is exactly what OpenAI's clients send.
 *
 * AAC: NIM's voice notes are AAC in ADTS framing (`ext: "aac"`). ASR_AUDIO_FORMAT decides:
 * - `auto` (default): sent as they are (`voice.aac`, `audio/aac`; whisper.cpp and faster-whisper
 *   servers decode them with ffmpeg); when the endpoint refuses that with 400/415 (OpenAI's hosted
 *   API lists m4a but not aac), the note is remuxed to M4A (./convert.ts) and sent once more.
 * - `as-is`: never converted. `m4a`: always remuxed first (saves the refused request).
 * Remuxing only changes the container (the audio stays the same AAC), so no codec is involved.
 *
 * Uncertainty: with `response_format: "verbose_json"` (ASR_RESPONSE_FORMAT, default) Whisper-style
 * servers return per-segment `avg_logprob`, `no_speech_prob` and `compression_ratio`. A transcript is
 * "uncertain" when a segment crosses Whisper's own decoding thresholds (avg_logprob < -1.0,
 * no_speech_prob > 0.6, compression_ratio > 2.4: openai/whisper `transcribe.py` defaults), and "no
 * speech" when the text is empty or every segment is silence by Whisper's rule (no_speech_prob > 0.6
 * and avg_logprob < -1.0). Without segments (`json`, or a server that omits them) a non-empty
 * transcript counts as certain: there is nothing to judge it by.
 *
 * The SDK is imported on the first voice note, not at start (about 12 MB of resident memory that a
 * bridge without voice traffic should not hold).
 */
import type OpenAI from "openai";
import { AudioConversionError, isAdtsAac, remuxAacToM4a } from "./convert.ts";

export interface TranscriptionSettings {
  /** ASR_BASE_URL, e.g. `https://api.openai.com/v1`. */
  baseUrl: string;
  /** ASR_MODEL, e.g. `whisper-1`. */
  model: string;
  /** ASR_API_KEY (sent as Bearer; may be empty for a local server). */
  apiKey?: string | undefined;
  /** ASR_LANGUAGE: ISO-639-1 hint such as `zh`; unset lets the model detect it. */
  language?: string | undefined;
  /** ASR_RESPONSE_FORMAT: `verbose_json` (uncertainty detection) or `json`. */
  responseFormat: "verbose_json" | "json";
  /** ASR_TIMEOUT_MS. */
  timeoutMs: number;
  /** ASR_AUDIO_FORMAT: `auto` (default), `as-is` or `m4a` (see above). */
  audioFormat?: "auto" | "as-is" | "m4a";
}

export interface AudioInput {
  bytes: Buffer;
  /** Extension the endpoint sees in the file name (`aac`, `m4a`, `mp3` …). */
  extension: string;
  mimeType: string;
}

export interface Transcript {
  /** What was said, trimmed. */
  text: string;
  /** A segment crossed Whisper's doubt thresholds: tell the user what was heard. */
  uncertain: boolean;
  /** Nothing was said (or nothing recognisable). */
  noSpeech: boolean;
}

/** Failure of the speech endpoint (status, network, timeout); the message never holds the API key. */
export class TranscriptionError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "TranscriptionError";
  }
}

export interface TranscriberDependencies {
  /** Injected fetch for the SDK (tests); default the global fetch. */
  fetch?: typeof fetch;
  /** Converts audio the endpoint cannot take (default: AAC remuxed to M4A, ./convert.ts). */
  convertAudio?: (audio: AudioInput) => Promise<AudioInput>;
}

export type Transcriber = (audio: AudioInput, signal?: AbortSignal) => Promise<Transcript>;

/** Whisper's `logprob_threshold`, `no_speech_threshold` and `compression_ratio_threshold`. */
export const WHISPER_THRESHOLDS = { avgLogprob: -1.0, noSpeechProbability: 0.6, compressionRatio: 2.4 } as const;

interface Segment {
  text?: string;
  avg_logprob?: number;
  no_speech_prob?: number;
  compression_ratio?: number;
}

/**
 * @example
 * const transcribe = createTranscriber({ baseUrl: "http://127.0.0.1:8080/v1", model: "whisper-1",
 *   responseFormat: "verbose_json", timeoutMs: 30_000 });
 * const transcript = await transcribe({ bytes, extension: "aac", mimeType: "audio/aac" });
 */
export function createTranscriber(
  settings: TranscriptionSettings,
  dependencies: TranscriberDependencies = {},
): Transcriber {
  let loading: Promise<{ sdk: OpenAiModule; client: OpenAI }> | undefined;
  const load = () =>
    (loading ??= import("openai").then((sdk) => ({
      sdk,
      client: new sdk.default({
        baseURL: settings.baseUrl,
        // Local Whisper servers take no key; the SDK insists on one, and an unused value does no harm.
        apiKey: settings.apiKey || "no-key",
        timeout: settings.timeoutMs,
        maxRetries: 1,
        ...(dependencies.fetch ? { fetch: dependencies.fetch } : {}),
      }),
    })));

  const convertAudio = dependencies.convertAudio ?? remuxAacToM4a;
  const audioFormat = settings.audioFormat ?? "auto";

  const send = async (
    { sdk, client }: { sdk: OpenAiModule; client: OpenAI },
    audio: AudioInput,
    signal: AbortSignal | undefined,
  ): Promise<unknown> => {
    const file = await sdk.toFile(audio.bytes, `voice.${audio.extension}`, { type: audio.mimeType });
    return client.audio.transcriptions.create(
      {
        file,
        model: settings.model,
        response_format: settings.responseFormat,
        ...(settings.language ? { language: settings.language } : {}),
      },
      signal ? { signal } : {},
    );
  };

  return async (input, signal) => {
    // Not caught below: an SDK that cannot be loaded is a broken install, not a failed transcription.
    const loaded = await load();
    const { APIError } = loaded.sdk;
    const first = audioFormat === "m4a" ? await convertAudio(input) : input;
    try {
      return judgeTranscript(await send(loaded, first, signal));
    } catch (error) {
      const refusedFormat = error instanceof APIError && (error.status === 400 || error.status === 415);
      if (!(audioFormat === "auto" && refusedFormat && first === input && isAdtsAac(input))) {
        throw toTranscriptionError(error, APIError);
      }
    }
    // The endpoint refused raw AAC: the same audio in an M4A container, once.
    try {
      return judgeTranscript(await send(loaded, await convertAudio(input), signal));
    } catch (error) {
      throw toTranscriptionError(error, APIError);
    }
  };
}

type OpenAiModule = typeof import("openai");

function toTranscriptionError(error: unknown, APIError: OpenAiModule["APIError"]): Error {
  if (error instanceof AudioConversionError) return error;
  if (error instanceof APIError) {
    return new TranscriptionError(`speech endpoint answered ${error.status ?? "without a status"}`, error.status);
  }
  return new TranscriptionError(`speech endpoint failed: ${error instanceof Error ? error.name : "unknown error"}`);
}

/** Reads a `json` or `verbose_json` answer into a {@link Transcript}. */
export function judgeTranscript(response: unknown): Transcript {
  const body = (typeof response === "object" && response !== null ? response : {}) as {
    text?: unknown;
    segments?: unknown;
  };
  const text = typeof body.text === "string" ? body.text.trim() : typeof response === "string" ? response.trim() : "";
  const segments = Array.isArray(body.segments) ? (body.segments as Segment[]) : [];
  const silent = (segment: Segment) =>
    (segment.no_speech_prob ?? 0) > WHISPER_THRESHOLDS.noSpeechProbability &&
    (segment.avg_logprob ?? 0) < WHISPER_THRESHOLDS.avgLogprob;
  const doubtful = (segment: Segment) =>
    (segment.avg_logprob ?? 0) < WHISPER_THRESHOLDS.avgLogprob ||
    (segment.no_speech_prob ?? 0) > WHISPER_THRESHOLDS.noSpeechProbability ||
    (segment.compression_ratio ?? 0) > WHISPER_THRESHOLDS.compressionRatio;
  const noSpeech = text === "" || (segments.length > 0 && segments.every(silent));
  return { text: noSpeech ? "" : text, uncertain: !noSpeech && segments.some(doubtful), noSpeech };
}

/** Longest transcript quoted back to the user in {@link heardPrefix}. */
const QUOTE_CHARACTERS = 60;

/**
 * The line the reply starts with when the transcript is uncertain, so the user can spot a
 * mishearing: `我听到的是：“…” / I heard: "…"`, the quote cut at 60 characters.
 */
export function heardPrefix(transcript: string): string {
  const characters = [...transcript.replace(/\s+/g, " ").trim()];
  const quote =
    characters.length > QUOTE_CHARACTERS ? `${characters.slice(0, QUOTE_CHARACTERS).join("")}…` : characters.join("");
  return `（我听到的是：“${quote}” / I heard: "${quote}"）\n`;
}
