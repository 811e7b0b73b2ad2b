import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { buildAdtsStream } from "../testing/adts.ts";
import { type FakeOpenAiMedia, startFakeOpenAiMedia } from "../testing/fake-openai-media.ts";
import { buildTextPdf } from "../testing/text-pdf.ts";
import {
  createMediaDependencies,
  type MediaDependencies,
  type MediaSettings,
  parseAllowedHosts,
  prepareMediaTurn,
  readMediaAttachment,
} from "./index.ts";

const AAC = buildAdtsStream({ frames: 30 });

describe("prepareMediaTurn", () => {
  let nos: Server;
  let origin: string;
  let asr: FakeOpenAiMedia;
  let png: Buffer;
  const files = new Map<string, Buffer>();

  beforeAll(async () => {
    png = await sharp({ create: { width: 30, height: 20, channels: 3, background: "#3366ff" } })
      .png()
      .toBuffer();
    // A stand-in for NIM's storage (NOS): serves whatever the test put in `files`.
    nos = createServer((request, response) => {
      const body = files.get(request.url ?? "");
      if (body === undefined) response.writeHead(404).end();
      else response.writeHead(200, { "content-type": "application/octet-stream" }).end(body);
    });
    nos.listen(0, "127.0.0.1");
    await once(nos, "listening");
    origin = `http://127.0.0.1:${(nos.address() as AddressInfo).port}`;
    asr = await startFakeOpenAiMedia({ apiKey: "asr-key" });
  });

  afterAll(async () => {
    nos.closeAllConnections();
    nos.close();
    await asr.close();
  });

  beforeEach(() => {
    files.clear();
    asr.transcriptions.length = 0;
    asr.setTranscription({ text: "帮我查一下明天的天气" });
  });

  const settings = (
    overrides: {
      vision?: Partial<MediaSettings["vision"]>;
      files?: Partial<MediaSettings["files"]>;
      asr?: boolean;
      maxBytes?: number;
    } = {},
  ): MediaSettings => ({
    allowedHosts: parseAllowedHosts(`127.0.0.1:${new URL(origin).port}`),
    maxBytes: overrides.maxBytes ?? 1_000_000,
    timeoutMs: 5_000,
    allowHttp: true,
    maxRedirects: 3,
    concurrency: 2,
    vision: {
      enabled: true,
      passUrl: false,
      maxImageBytes: 1_000_000,
      maxSide: 2048,
      detail: "auto",
      ...overrides.vision,
    },
    transcription:
      overrides.asr === false
        ? undefined
        : { baseUrl: asr.url, model: "whisper-1", apiKey: "asr-key", responseFormat: "verbose_json", timeoutMs: 5_000 },
    files: { maxBytes: 100_000, excerptCharacters: 500, pdfMaxPages: 5, parseTimeoutMs: 60_000, ...overrides.files },
  });

  const run = (
    messageType: string,
    attach: unknown,
    current: MediaSettings = settings(),
    extra: Partial<MediaDependencies> = {},
  ) => {
    const attachment = readMediaAttachment(messageType, attach);
    if (attachment === undefined) throw new Error("not media");
    return prepareMediaTurn(attachment, current, { ...createMediaDependencies(current), ...extra });
  };

  describe("pictures", () => {
    it("sends a picture to a vision model as a data URL, and keeps a placeholder for history", async () => {
      files.set("/picture", png);
      const turn = await run("PICTURE", JSON.stringify({ url: `${origin}/picture`, ext: "png", w: "30", h: "20" }));
      expect(turn.note).toBeUndefined();
      expect(turn.userText).toBe("[图片 / picture]");
      expect(turn.modelContent).toEqual([
        { type: "text", text: "[图片 / picture]" },
        { type: "image_url", image_url: { url: `data:image/png;base64,${png.toString("base64")}`, detail: "auto" } },
      ]);
      expect(turn.outcome).toEqual({ kind: "picture", status: "read" });
    });

    it("passes the checked URL when the model fetches pictures itself, without downloading", async () => {
      const current = settings({ vision: { passUrl: true } });
      const turn = await run("PICTURE", { url: `${origin}/never-fetched` }, current);
      expect(turn.modelContent?.[1]).toEqual({
        type: "image_url",
        image_url: { url: `${origin}/never-fetched`, detail: "auto" },
      });
      const refused = await run("PICTURE", { url: "https://169.254.169.254/latest" }, current);
      expect(refused.outcome).toMatchObject({ status: "note", reason: "refused", detail: "host-not-allowed" });
    });

    it("answers with a note when vision is off", async () => {
      const turn = await run("PICTURE", { url: `${origin}/picture` }, settings({ vision: { enabled: false } }));
      expect(turn.note).toContain("看不了图片");
      expect(turn.note).toContain("can't see pictures");
      expect(turn.modelContent).toBeUndefined();
      expect(turn.userText).toBe("[图片 / picture]");
    });

    it("refuses a picture that is not one", async () => {
      files.set("/fake.jpg", Buffer.from("<svg onload=alert(1)>"));
      const turn = await run("PICTURE", { url: `${origin}/fake.jpg`, ext: "jpg" });
      expect(turn.outcome).toMatchObject({ status: "note", reason: "wrong-type" });
    });

    it("refuses pictures above the byte limit, declared or counted", async () => {
      files.set("/picture", png);
      const counted = await run("PICTURE", { url: `${origin}/picture` }, settings({ maxBytes: 50 }));
      expect(counted.outcome).toMatchObject({ reason: "too-large", detail: "too-large" });
      expect(counted.note).toContain("50 B");
      const declared = await run("PICTURE", { url: `${origin}/picture`, size: "5000000" });
      expect(declared.outcome).toMatchObject({ reason: "too-large", detail: "declared-size" });
    });

    it("refuses a picture the model limits cannot take even after scaling", async () => {
      files.set("/picture", png);
      const turn = await run("PICTURE", { url: `${origin}/picture` }, settings({ vision: { maxImageBytes: 10 } }));
      expect(turn.outcome).toMatchObject({ reason: "too-large", detail: "image-limits" });
    });

    it.each([
      ["https://evil.example/picture.png", "host-not-allowed"],
      ["http://169.254.169.254/latest/meta-data/", "host-not-allowed"],
      ["file:///etc/passwd", "bad-url"],
      ["http://user:pass@127.0.0.1/x", "bad-url"],
    ])("refuses the URL %s with a note", async (url, detail) => {
      const turn = await run("PICTURE", { url });
      expect(turn.outcome).toMatchObject({ status: "note", reason: "refused", detail });
      expect(turn.note).toContain("allowed to fetch");
    });

    it("says the download failed for a missing file", async () => {
      const turn = await run("PICTURE", { url: `${origin}/missing` });
      expect(turn.outcome).toMatchObject({ reason: "unavailable", detail: "http-status" });
      expect((await run("PICTURE", "{}")).outcome).toMatchObject({ reason: "unavailable", detail: "no-url" });
    });
  });

  describe("voice", () => {
    it("makes the transcript the user's turn, sending NIM's AAC as it is", async () => {
      files.set("/voice", AAC);
      const turn = await run("AUDIO", { url: `${origin}/voice`, ext: "aac", dur: "3200", size: String(AAC.length) });
      expect(turn).toEqual({ userText: "帮我查一下明天的天气", outcome: { kind: "audio", status: "read" } });
      expect(asr.transcriptions[0]?.file?.name).toBe("voice.aac");
      expect(asr.transcriptions[0]?.file?.type).toBe("audio/aac");
      expect(asr.transcriptions[0]?.file?.bytes.equals(AAC)).toBe(true);
    });

    it("says what it heard when the transcript is uncertain", async () => {
      files.set("/voice", AAC);
      asr.setTranscription({ text: "明天开会", segments: [{ text: "明天开会", avg_logprob: -1.3 }] });
      const turn = await run("AUDIO", { url: `${origin}/voice` });
      expect(turn.userText).toBe("明天开会");
      expect(turn.replyPrefix).toBe('（我听到的是：“明天开会” / I heard: "明天开会"）\n');
      expect(turn.outcome.detail).toBe("uncertain");
    });

    it("answers silence, failures and a missing ASR with notes", async () => {
      files.set("/voice", AAC);
      asr.setTranscription({ text: "", segments: [] });
      expect((await run("AUDIO", { url: `${origin}/voice` })).outcome.reason).toBe("no-speech");
      asr.setTranscription({ text: "x", errorStatus: 500 });
      expect((await run("AUDIO", { url: `${origin}/voice` })).outcome.reason).toBe("transcription-failed");
      const off = await run("AUDIO", { url: `${origin}/voice` }, settings({ asr: false }));
      expect(off.outcome.reason).toBe("unsupported");
      expect(off.note).toContain("听不了语音");
    });

    it("refuses a voice note that is not audio", async () => {
      files.set("/voice", png);
      expect((await run("AUDIO", { url: `${origin}/voice` })).outcome.reason).toBe("wrong-type");
      expect(asr.transcriptions).toHaveLength(0);
    });
  });

  describe("files", () => {
    it("gives the model a bounded excerpt of a text file with its name", async () => {
      files.set("/notes", Buffer.from(`# 会议记录\n${"内容".repeat(400)}`));
      const turn = await run("FILE", { url: `${origin}/notes`, name: "会议.md", ext: "md" });
      expect(turn.note).toBeUndefined();
      expect(turn.userText.startsWith("[文件 / file: 会议.md]\n# 会议记录\n")).toBe(true);
      expect(turn.userText.endsWith("[文件结束，已截断 / end of file, cut at 500 characters]")).toBe(true);
      expect(turn.modelContent).toBeUndefined();
    });

    it("reads CSV and JSON", async () => {
      files.set("/scores.csv", Buffer.from("name,score\nAda,90\n"));
      files.set("/data.json", Buffer.from('{"a":1}'));
      expect((await run("FILE", { url: `${origin}/scores.csv`, name: "scores.csv" })).userText).toContain("Ada,90");
      expect((await run("FILE", { url: `${origin}/data.json`, ext: "json" })).userText).toContain('{"a":1}');
    });

    it("reads a PDF's text", async () => {
      files.set("/report.pdf", buildTextPdf(["Sales rose in March", "Appendix"]));
      const turn = await run("FILE", { url: `${origin}/report.pdf`, name: "report.pdf", ext: "pdf" });
      expect(turn.userText).toContain("[文件 / file: report.pdf, 2 pages]");
      expect(turn.userText).toContain("Sales rose in March");
      expect(turn.outcome).toEqual({ kind: "file", status: "read", detail: "pdf" });
    });

    it("answers other file types, oversized, disguised and unreadable files with notes", async () => {
      const docx = await run("FILE", { url: `${origin}/x.docx`, name: "x.docx", ext: "docx" });
      expect(docx.outcome.reason).toBe("unsupported-file-type");
      expect(docx.note).toContain(".docx");
      expect(docx.userText).toBe("[文件 / file: x.docx]");

      files.set("/big.txt", Buffer.alloc(2_000, 0x61));
      const big = await run("FILE", { url: `${origin}/big.txt`, ext: "txt" }, settings({ files: { maxBytes: 1_000 } }));
      expect(big.outcome).toMatchObject({ reason: "too-large", detail: "too-large" });
      expect(big.note).toContain("1 KB");

      files.set("/fake.pdf", Buffer.from("just text"));
      expect((await run("FILE", { url: `${origin}/fake.pdf`, ext: "pdf" })).outcome.reason).toBe("wrong-type");
      files.set("/picture.txt", png);
      expect((await run("FILE", { url: `${origin}/picture.txt`, ext: "txt" })).outcome.reason).toBe("wrong-type");
      files.set("/scan.pdf", buildTextPdf([""]));
      expect((await run("FILE", { url: `${origin}/scan.pdf`, ext: "pdf" })).outcome.reason).toBe("unreadable");
    });
  });

  describe("video and location", () => {
    it("answers a video with its note, without downloading it", async () => {
      const turn = await run("VIDEO", { url: `${origin}/video`, ext: "mp4", dur: 5238 });
      expect(turn.note).toContain("看不了视频");
      expect(turn.userText).toBe("[视频 / video]");
    });

    it("turns a location into text", async () => {
      const turn = await run("LOCATION", '{"title":"杭州市滨江区网商路599号","lat":"30.19","lng":"120.19"}');
      expect(turn).toEqual({
        userText: "[位置 / location] 杭州市滨江区网商路599号 (latitude 30.19, longitude 120.19)",
        outcome: { kind: "location", status: "read" },
      });
      expect((await run("LOCATION", "{}")).outcome.reason).toBe("unreadable");
    });
  });

  it("downloads through the shared concurrency limit; locations and videos do not wait for it", async () => {
    const limited: string[] = [];
    const limit = <T>(work: () => Promise<T>) => {
      limited.push("slot");
      return work();
    };
    files.set("/picture", png);
    await run("PICTURE", { url: `${origin}/picture` }, settings(), { limit });
    await run("FILE", { url: `${origin}/x.docx`, ext: "docx" }, settings(), { limit });
    await run("LOCATION", { title: "here" }, settings(), { limit });
    await run("VIDEO", { url: `${origin}/v` }, settings(), { limit });
    expect(limited).toEqual(["slot", "slot"]);
  });

  it("stops downloading when the reply is cancelled", async () => {
    const controller = new AbortController();
    controller.abort();
    files.set("/picture", png);
    const turn = await run("PICTURE", { url: `${origin}/picture` }, settings(), { signal: controller.signal });
    expect(turn.outcome).toMatchObject({ reason: "unavailable", detail: "timeout" });
  });
});
