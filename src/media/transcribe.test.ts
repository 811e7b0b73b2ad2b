import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildAdtsStream } from "../testing/adts.ts";
import { type FakeOpenAiMedia, startFakeOpenAiMedia } from "../testing/fake-openai-media.ts";
import {
  createTranscriber,
  heardPrefix,
  judgeTranscript,
  TranscriptionError,
  type TranscriptionSettings,
} from "./transcribe.ts";

// AAC in ADTS framing, as NIM's clients record voice notes.
const AAC = buildAdtsStream({ frames: 30 });

describe("createTranscriber", () => {
  let fake: FakeOpenAiMedia;

  beforeEach(async () => {
    fake = await startFakeOpenAiMedia({ apiKey: "asr-key" });
  });
  afterEach(async () => {
    await fake.close();
  });

  const settings = (overrides: Partial<TranscriptionSettings> = {}): TranscriptionSettings => ({
    baseUrl: fake.url,
    model: "whisper-1",
    apiKey: "asr-key",
    responseFormat: "verbose_json",
    timeoutMs: 5_000,
    ...overrides,
  });

  it("sends the AAC note as it is, multipart, with model, format and language", async () => {
    const transcribe = createTranscriber(settings({ language: "zh" }));
    const transcript = await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" });
    expect(transcript).toEqual({ text: "你好，今天天气怎么样？", uncertain: false, noSpeech: false });
    const [request] = fake.transcriptions;
    expect(request?.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);
    expect(request?.headers.authorization).toBe("Bearer asr-key");
    expect(request?.fields).toEqual({ model: "whisper-1", response_format: "verbose_json", language: "zh" });
    expect(request?.file?.name).toBe("voice.aac");
    expect(request?.file?.type).toBe("audio/aac");
    expect(request?.file?.bytes.equals(AAC)).toBe(true);
  });

  it("flags a transcript Whisper itself doubted", async () => {
    fake.setTranscription({
      text: "明天开会吗",
      segments: [
        { text: "明天", avg_logprob: -0.3 },
        { text: "开会吗", avg_logprob: -1.4 },
      ],
    });
    const transcribe = createTranscriber(settings());
    expect(await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" })).toEqual({
      text: "明天开会吗",
      uncertain: true,
      noSpeech: false,
    });
  });

  it("reports silence as no speech", async () => {
    fake.setTranscription({
      text: "Thank you.",
      segments: [{ text: "Thank you.", avg_logprob: -1.2, no_speech_prob: 0.9 }],
    });
    const transcribe = createTranscriber(settings());
    expect(await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" })).toEqual({
      text: "",
      uncertain: false,
      noSpeech: true,
    });
  });

  it("works with plain json answers, which carry no confidence", async () => {
    const transcribe = createTranscriber(settings({ responseFormat: "json" }));
    expect((await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" })).uncertain).toBe(false);
    expect(fake.transcriptions[0]?.fields.response_format).toBe("json");
  });

  it("with ASR_AUDIO_FORMAT=m4a hands every note to the converter first", async () => {
    const converted = Buffer.from("RIFF....WAVEfmt ");
    const transcribe = createTranscriber(settings({ audioFormat: "m4a" }), {
      convertAudio: async () => ({ bytes: converted, extension: "wav", mimeType: "audio/wav" }),
    });
    await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" });
    expect(fake.transcriptions[0]?.file?.name).toBe("voice.wav");
    expect(fake.transcriptions[0]?.file?.bytes.equals(converted)).toBe(true);
  });

  describe("an endpoint that refuses raw AAC (like OpenAI's hosted API)", () => {
    beforeEach(async () => {
      await fake.close();
      fake = await startFakeOpenAiMedia({ apiKey: "asr-key", acceptedExtensions: ["m4a", "mp3", "wav"] });
    });

    it("auto: sends AAC as it is, then once more remuxed to M4A when refused", async () => {
      const transcribe = createTranscriber(settings({ baseUrl: fake.url }));
      const transcript = await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" });
      expect(transcript.text).toBe("你好，今天天气怎么样？");
      expect(fake.transcriptions.map((request) => request.file?.name)).toEqual(["voice.aac", "voice.m4a"]);
      expect(fake.transcriptions[1]?.file?.type).toBe("audio/mp4");
      expect(fake.transcriptions[1]?.file?.bytes.subarray(4, 8).toString("latin1")).toBe("ftyp");
    });

    it("m4a: remuxes first and sends once", async () => {
      const transcribe = createTranscriber(settings({ baseUrl: fake.url, audioFormat: "m4a" }));
      await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" });
      expect(fake.transcriptions.map((request) => request.file?.name)).toEqual(["voice.m4a"]);
    });

    it("as-is: never converts, and the refusal is reported", async () => {
      const transcribe = createTranscriber(settings({ baseUrl: fake.url, audioFormat: "as-is" }));
      const failure = await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" }).catch((e) => e);
      expect(failure).toBeInstanceOf(TranscriptionError);
      expect(failure.status).toBe(400);
      expect(fake.transcriptions).toHaveLength(1);
    });

    it("auto: does not retry other formats or other errors", async () => {
      const transcribe = createTranscriber(settings({ baseUrl: fake.url }));
      const failure = await transcribe({ bytes: Buffer.from("OggS"), extension: "opus", mimeType: "audio/opus" }).catch(
        (e) => e,
      );
      expect(failure.status).toBe(400);
      expect(fake.transcriptions).toHaveLength(1);
    });
  });

  it("turns endpoint failures into TranscriptionError without the key", async () => {
    await fake.close();
    fake = await startFakeOpenAiMedia({ apiKey: "asr-key", acceptedExtensions: ["wav", "mp3"] });
    const transcribe = createTranscriber(settings());
    const failure = await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" }).catch((error) => error);
    expect(failure).toBeInstanceOf(TranscriptionError);
    expect(failure.status).toBe(400);
    const wrongKey = createTranscriber(settings({ baseUrl: fake.url, apiKey: "wrong-secret" }));
    const unauthorised = await wrongKey({ bytes: AAC, extension: "wav", mimeType: "audio/wav" }).catch((e) => e);
    expect(unauthorised.status).toBe(401);
    expect(String(unauthorised.message)).not.toContain("wrong-secret");
  });
});

describe("judgeTranscript", () => {
  it.each([
    [{ text: " hello " }, { text: "hello", uncertain: false, noSpeech: false }],
    [{ text: "" }, { text: "", uncertain: false, noSpeech: true }],
    ["plain text answer", { text: "plain text answer", uncertain: false, noSpeech: false }],
    [
      { text: "la la la la", segments: [{ avg_logprob: -0.2, compression_ratio: 3.1 }] },
      { text: "la la la la", uncertain: true, noSpeech: false },
    ],
    [
      { text: "hm", segments: [{ avg_logprob: -0.5, no_speech_prob: 0.7 }] },
      { text: "hm", uncertain: true, noSpeech: false },
    ],
    [
      { text: "ok", segments: "nonsense" },
      { text: "ok", uncertain: false, noSpeech: false },
    ],
  ])("judges %j", (response, expected) => {
    expect(judgeTranscript(response)).toEqual(expected);
  });
});

describe("heardPrefix", () => {
  it("quotes a short transcript in both languages", () => {
    expect(heardPrefix("明天 开会吗")).toBe('（我听到的是：“明天 开会吗” / I heard: "明天 开会吗"）\n');
  });

  it("cuts a long transcript", () => {
    const prefix = heardPrefix("很".repeat(100));
    expect(prefix).toContain(`${"很".repeat(60)}…`);
    expect(prefix).not.toContain("很".repeat(61));
  });
});
