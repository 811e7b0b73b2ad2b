/**
 * Lossless AAC → M4A for speech endpoints that do not take raw AAC. NIM's voice notes are AAC in
 * ADTS framing (`.aac`); OpenAI's hosted transcription lists m4a but not aac among its formats. The
 * audio itself is already AAC, so it only needs a different container: `mediabunny` (a maintained,
 * pure-TypeScript media toolkit, no binaries, no download) reads the ADTS frames and writes them into
 * an MP4 file unchanged. No codec runs, so nothing is re-encoded and it costs milliseconds.
 *
 * `mediabunny` is imported on the first voice note that needs it (about 15 MB of resident memory
 * otherwise paid at start by every bridge).
 */
import type { AudioInput } from "./transcribe.ts";

export class AudioConversionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AudioConversionError";
  }
}

/** True for the input this module converts: AAC in ADTS framing. */
export function isAdtsAac(audio: Pick<AudioInput, "mimeType">): boolean {
  return audio.mimeType === "audio/aac";
}

/**
 * ADTS AAC to an M4A file (`voice.m4a`, `audio/mp4`); any other input is returned as it is.
 * Throws {@link AudioConversionError} when the bytes are not a stream it can remux.
 *
 * @example
 * const m4a = await remuxAacToM4a({ bytes, extension: "aac", mimeType: "audio/aac" });
 */
export async function remuxAacToM4a(audio: AudioInput): Promise<AudioInput> {
  if (!isAdtsAac(audio)) return audio;
  // Outside the try below: a mediabunny that cannot be loaded is a broken install, not a bad voice note.
  const { ALL_FORMATS, BufferSource, BufferTarget, Conversion, Input, Mp4OutputFormat, Output } = await import(
    "mediabunny"
  );
  try {
    const input = new Input({ source: new BufferSource(audio.bytes), formats: ALL_FORMATS });
    const target = new BufferTarget();
    const output = new Output({ format: new Mp4OutputFormat(), target });
    const conversion = await Conversion.init({ input, output });
    if (!conversion.isValid) throw new AudioConversionError("voice note has no audio track that can be remuxed");
    await conversion.execute();
    if (target.buffer === null) throw new AudioConversionError("remuxing the voice note produced nothing");
    return { bytes: Buffer.from(target.buffer), extension: "m4a", mimeType: "audio/mp4" };
  } catch (error) {
    if (error instanceof AudioConversionError) throw error;
    throw new AudioConversionError(
      `voice note could not be remuxed: ${error instanceof Error ? error.message : "unknown"}`,
    );
  }
}
