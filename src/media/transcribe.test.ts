import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type FakeOpenAiMedia, startFakeOpenAiMedia } from "../testing/fake-openai-media.ts";
import {
  createTranscriber,
  heardPrefix,
  judgeTranscript,
  TranscriptionError,
  type TranscriptionSettings,
} from "./transcribe.ts";

// The first bytes of an ADTS AAC frame as NIM's clients record them (sync word 0xFFF1), then filler.
const AAC = Buffer.concat([Buffer.from([0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc]), Buffer.alloc(200, 0x21)]);

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

  it("hands the note to a converter when one is given", async () => {
    const converted = Buffer.from("RIFF....WAVEfmt ");
    const transcribe = createTranscriber(settings(), {
      convertAudio: async () => ({ bytes: converted, extension: "wav", mimeType: "audio/wav" }),
    });
    await transcribe({ bytes: AAC, extension: "aac", mimeType: "audio/aac" });
    expect(fake.transcriptions[0]?.file?.name).toBe("voice.wav");
    expect(fake.transcriptions[0]?.file?.bytes.equals(converted)).toBe(true);
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
