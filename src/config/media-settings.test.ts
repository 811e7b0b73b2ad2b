import { describe, expect, it } from "vitest";
import { ConfigurationError, loadConfig } from "./index.ts";

describe("loadConfig: the media block", () => {
  it("defaults to NIM's storage hosts, https only, vision and speech off", () => {
    const { media } = loadConfig({});
    expect(media.allowedHosts.map((entry) => `${entry.wildcard ? "*." : ""}${entry.host}`)).toEqual([
      "nim-nosdn.netease.im",
      "nim.nosdn.127.net",
      "*.nosdn.127.net",
    ]);
    expect(media).toMatchObject({
      allowHttp: false,
      maxBytes: 20_000_000,
      timeoutMs: 15_000,
      maxRedirects: 3,
      concurrency: 4,
      vision: { enabled: false, passUrl: false, maxImageBytes: 4_000_000, maxSide: 2048, detail: "auto" },
      transcription: undefined,
      files: { maxBytes: 5_000_000, excerptCharacters: 6_000, pdfMaxPages: 30, parseTimeoutMs: 20_000 },
    });
  });

  it("reads every media setting", () => {
    const { media } = loadConfig({
      MEDIA_ALLOWED_HOSTS: "files.example.com:8443, *.cdn.example.com",
      MEDIA_ALLOW_HTTP: "true",
      MEDIA_MAX_BYTES: "1000",
      MEDIA_TIMEOUT_MS: "2000",
      MEDIA_MAX_REDIRECTS: "0",
      MEDIA_CONCURRENCY: "2",
      BOT_VISION: "yes",
      MEDIA_VISION_PASS_URL: "1",
      MEDIA_VISION_MAX_BYTES: "2000",
      MEDIA_VISION_MAX_SIDE: "1024",
      MEDIA_VISION_DETAIL: "low",
      ASR_BASE_URL: "http://127.0.0.1:9000/v1",
      ASR_MODEL: "sensevoice",
      ASR_API_KEY: "asr-secret",
      ASR_LANGUAGE: "zh",
      ASR_RESPONSE_FORMAT: "json",
      ASR_TIMEOUT_MS: "9000",
      ASR_AUDIO_FORMAT: "m4a",
      FILE_MAX_BYTES: "3000",
      FILE_EXCERPT_CHARACTERS: "400",
      FILE_PDF_MAX_PAGES: "2",
      FILE_PARSE_TIMEOUT_MS: "5000",
    });
    expect(media).toEqual({
      allowedHosts: [
        { host: "files.example.com", wildcard: false, port: 8443 },
        { host: "cdn.example.com", wildcard: true, port: undefined },
      ],
      maxBytes: 1000,
      timeoutMs: 2000,
      allowHttp: true,
      maxRedirects: 0,
      concurrency: 2,
      vision: { enabled: true, passUrl: true, maxImageBytes: 2000, maxSide: 1024, detail: "low" },
      transcription: {
        baseUrl: "http://127.0.0.1:9000/v1",
        model: "sensevoice",
        apiKey: "asr-secret",
        language: "zh",
        responseFormat: "json",
        timeoutMs: 9000,
        audioFormat: "m4a",
      },
      files: { maxBytes: 3000, excerptCharacters: 400, pdfMaxPages: 2, parseTimeoutMs: 5000 },
    });
  });

  it("names bad media settings together with the others, without echoing the ASR key", () => {
    let error: unknown;
    try {
      loadConfig({
        MEDIA_ALLOWED_HOSTS: "*.com",
        ASR_BASE_URL: "not a url",
        ASR_API_KEY: "asr-secret",
        MEDIA_VISION_DETAIL: "ultra",
        PORT: "99999",
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigurationError);
    const problems = (error as ConfigurationError).problems.join("\n");
    expect(problems).toContain("ASR_BASE_URL");
    expect(problems).toContain("MEDIA_VISION_DETAIL");
    expect(problems).toContain("PORT");
    expect(problems).toContain('MEDIA_ALLOWED_HOSTS: "*.com" must be *.domain.tld');
    expect(problems).not.toContain("asr-secret");
    expect(() => loadConfig({ MEDIA_ALLOWED_HOSTS: "*.com" })).toThrow(/MEDIA_ALLOWED_HOSTS/);
  });
});
