/**
 * Builds an AAC stream in ADTS framing, the way NIM's clients store voice notes (`ext: "aac"`):
 * each frame is a 7-byte ADTS header (sync word 0xFFF, MPEG-4, no CRC, AAC-LC, the sampling rate's
 * index, mono) and the frame's raw AAC payload. The default payload is a silent AAC-LC mono frame,
 * so the stream is valid for parsers and muxers (tests remux it; nothing here encodes audio).
 *
 * @example
 * const voice = buildAdtsStream({ frames: 50 }); // ~3.2 s at 16 kHz
 */
const SAMPLING_RATE_INDEX: Record<number, number> = { 48000: 3, 44100: 4, 32000: 5, 24000: 6, 16000: 8, 8000: 11 };

export function buildAdtsStream(options: { frames?: number; sampleRate?: number; payload?: Buffer } = {}): Buffer {
  const payload = options.payload ?? Buffer.from([0x00, 0xc8, 0x00, 0x80, 0x23, 0x80]);
  const rateIndex = SAMPLING_RATE_INDEX[options.sampleRate ?? 16_000];
  if (rateIndex === undefined) throw new RangeError("unsupported sample rate");
  const length = 7 + payload.length;
  const header = Buffer.from([
    0xff,
    0xf1, // sync word, MPEG-4, layer 0, no CRC
    (1 << 6) | (rateIndex << 2), // profile AAC-LC (object type 2, written as 1), rate index, channel bit 2 = 0
    (1 << 6) | ((length >> 11) & 0x3), // channels = 1, frame length bits 12-11
    (length >> 3) & 0xff, // frame length bits 10-3
    ((length & 0x7) << 5) | 0x1f, // frame length bits 2-0, buffer fullness (VBR)
    0xfc, // buffer fullness, one raw data block
  ]);
  const frame = Buffer.concat([header, payload]);
  return Buffer.concat(Array.from({ length: options.frames ?? 50 }, () => frame));
}
