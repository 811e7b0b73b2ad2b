/**
 * A fake OpenAI-compatible server for pictures and voice, on 127.0.0.1 (a free port), speaking the
 * real wire formats and recording every request:
 *
 * - `POST /v1/chat/completions` with vision content parts. Each `image_url` is checked the way
 *   OpenAI checks it (an https URL, or a `data:image/{jpeg,png,gif,webp};base64,` URL whose base64
 *   decodes) and refused with OpenAI's 400 `invalid_image_url` / `invalid_image_format` otherwise.
 *   The decoded images are recorded so tests can compare them with what was fetched. Answers one
 *   `chat.completion` (or a short SSE stream with `stream: true`).
 * - `POST /v1/audio/transcriptions`: `multipart/form-data` parsed with the platform's own parser;
 *   the file (name, type, bytes) and every field are recorded. Answers per `response_format`: `json`
 *   `{text}`, `verbose_json` `{task, language, duration, text, segments}`, `text` plain. With
 *   `acceptedExtensions` it refuses other file names like OpenAI does ("Invalid file format").
 *
 * @example
 * const fake = await startFakeOpenAiMedia({ transcription: { text: "你好" } });
 * // … fake.transcriptions[0].file.name === "voice.aac" …
 * await fake.close();
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeTranscriptionSegment {
  text: string;
  avg_logprob?: number;
  no_speech_prob?: number;
  compression_ratio?: number;
}

export interface FakeTranscriptionScenario {
  text: string;
  /** Segments for `verbose_json`; default one segment holding the whole text, confidently heard. */
  segments?: FakeTranscriptionSegment[];
  language?: string;
  /** Answer this HTTP error (OpenAI's error body) instead. */
  errorStatus?: number;
}

export interface RecordedTranscription {
  headers: Record<string, string>;
  /** Every non-file field of the multipart body (`model`, `response_format`, `language` …). */
  fields: Record<string, string>;
  file: { name: string; type: string; bytes: Buffer } | undefined;
}

export interface RecordedImage {
  /** `data` for a data URL, `url` for a URL the model would fetch itself. */
  source: "data" | "url";
  url: string;
  mimeType?: string;
  bytes?: Buffer;
  detail?: string;
}

export interface RecordedChat {
  headers: Record<string, string>;
  body: { model?: string; messages?: unknown[]; stream?: boolean; [field: string]: unknown };
  images: RecordedImage[];
}

export interface FakeOpenAiMediaOptions {
  apiKey?: string;
  /** What transcriptions answer. Default: the text "你好，今天天气怎么样？" heard confidently. */
  transcription?: FakeTranscriptionScenario;
  /** The assistant's answer to chat completions. */
  chatAnswer?: string;
  /** File extensions the transcription endpoint accepts (default: any). */
  acceptedExtensions?: readonly string[];
}

export interface FakeOpenAiMedia {
  /** Base URL including `/v1`. */
  readonly url: string;
  readonly transcriptions: RecordedTranscription[];
  readonly chats: RecordedChat[];
  setTranscription(scenario: FakeTranscriptionScenario): void;
  close(): Promise<void>;
}

const DATA_URL = /^data:(image\/(?:jpeg|png|gif|webp));base64,([A-Za-z0-9+/]*={0,2})$/;

export async function startFakeOpenAiMedia(options: FakeOpenAiMediaOptions = {}): Promise<FakeOpenAiMedia> {
  let transcription: FakeTranscriptionScenario = options.transcription ?? { text: "你好，今天天气怎么样？" };
  const transcriptions: RecordedTranscription[] = [];
  const chats: RecordedChat[] = [];

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      console.error("fake-openai-media failed", error);
      if (!response.headersSent) sendError(response, 500, "fake-openai-media failed", "server_error");
      else response.destroy();
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request);
    const headers = flattenHeaders(request);
    const path = (request.url ?? "").split("?")[0];
    if (options.apiKey !== undefined && headers.authorization !== `Bearer ${options.apiKey}`) {
      sendError(response, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
      return;
    }
    if (request.method === "POST" && path === "/v1/audio/transcriptions") {
      await handleTranscription(headers, body, response);
      return;
    }
    if (request.method === "POST" && path === "/v1/chat/completions") {
      handleChat(headers, body, response);
      return;
    }
    sendError(response, 404, `Unknown request URL: ${request.method} ${path}`, "invalid_request_error");
  }

  async function handleTranscription(headers: Record<string, string>, body: Buffer, response: ServerResponse) {
    const contentType = headers["content-type"] ?? "";
    if (!contentType.startsWith("multipart/form-data")) {
      sendError(response, 400, "Expected multipart/form-data.", "invalid_request_error");
      return;
    }
    // The platform's own multipart parser (undici's FormData), so the fake reads what a server would.
    const form = await new Response(new Uint8Array(body), { headers: { "content-type": contentType } }).formData();
    const recorded: RecordedTranscription = { headers, fields: {}, file: undefined };
    for (const [name, value] of form.entries()) {
      if (typeof value === "string") recorded.fields[name] = value;
      else if (name === "file") {
        recorded.file = { name: value.name, type: value.type, bytes: Buffer.from(await value.arrayBuffer()) };
      }
    }
    transcriptions.push(recorded);
    if (recorded.file === undefined || recorded.fields.model === undefined) {
      sendError(response, 400, "file and model are required.", "invalid_request_error");
      return;
    }
    const extension = recorded.file.name.split(".").pop()?.toLowerCase() ?? "";
    if (options.acceptedExtensions && !options.acceptedExtensions.includes(extension)) {
      sendError(
        response,
        400,
        `Invalid file format. Supported formats: ${JSON.stringify(options.acceptedExtensions)}`,
        "invalid_request_error",
      );
      return;
    }
    const scenario = transcription;
    if (scenario.errorStatus !== undefined) {
      sendError(response, scenario.errorStatus, "The server had an error processing your request.", "server_error");
      return;
    }
    const format = recorded.fields.response_format ?? "json";
    if (format === "text") {
      response.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(scenario.text);
      return;
    }
    if (format === "verbose_json") {
      const segments = (scenario.segments ?? [{ text: scenario.text }]).map((segment, index) => ({
        id: index,
        seek: 0,
        start: index * 2,
        end: index * 2 + 2,
        text: segment.text,
        tokens: [50364],
        temperature: 0,
        avg_logprob: segment.avg_logprob ?? -0.2,
        compression_ratio: segment.compression_ratio ?? 1.1,
        no_speech_prob: segment.no_speech_prob ?? 0.01,
      }));
      sendJson(response, {
        task: "transcribe",
        language: scenario.language ?? "chinese",
        duration: segments.length * 2,
        text: scenario.text,
        segments,
      });
      return;
    }
    sendJson(response, { text: scenario.text });
  }

  function handleChat(headers: Record<string, string>, raw: Buffer, response: ServerResponse) {
    let body: RecordedChat["body"];
    try {
      body = JSON.parse(raw.toString("utf8")) as RecordedChat["body"];
    } catch {
      sendError(response, 400, "We could not parse the JSON body of your request.", "invalid_request_error");
      return;
    }
    const recorded: RecordedChat = { headers, body, images: [] };
    chats.push(recorded);
    if (typeof body.model !== "string" || !Array.isArray(body.messages)) {
      sendError(response, 400, "Request body must have model and messages.", "invalid_request_error");
      return;
    }
    for (const message of body.messages as Array<{ content?: unknown }>) {
      if (!Array.isArray(message.content)) continue;
      for (const part of message.content as Array<{ type?: string; image_url?: { url?: unknown; detail?: string } }>) {
        if (part.type === "text") continue;
        if (part.type !== "image_url" || typeof part.image_url?.url !== "string") {
          sendError(response, 400, `Invalid content part type: ${String(part.type)}`, "invalid_request_error");
          return;
        }
        const url = part.image_url.url;
        const detail = part.image_url.detail;
        if (url.startsWith("data:")) {
          const match = DATA_URL.exec(url);
          if (!match) {
            sendError(
              response,
              400,
              "You uploaded an unsupported image. Please make sure your image has of one the following formats: ['png', 'jpeg', 'gif', 'webp'].",
              "invalid_request_error",
              "invalid_image_format",
            );
            return;
          }
          const image: RecordedImage = {
            source: "data",
            url,
            mimeType: match[1]!,
            bytes: Buffer.from(match[2]!, "base64"),
          };
          if (detail !== undefined) image.detail = detail;
          recorded.images.push(image);
        } else if (url.startsWith("https://")) {
          const image: RecordedImage = { source: "url", url };
          if (detail !== undefined) image.detail = detail;
          recorded.images.push(image);
        } else {
          sendError(response, 400, "Invalid image URL.", "invalid_request_error", "invalid_image_url");
          return;
        }
      }
    }
    const answer = options.chatAnswer ?? `I see ${recorded.images.length} picture(s).`;
    const id = `chatcmpl-fake-media-${chats.length}`;
    const created = Math.floor(Date.now() / 1000);
    if (body.stream === true) {
      response.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
      const chunk = (delta: Record<string, unknown>, finish: string | null) =>
        `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: body.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      response.write(chunk({ role: "assistant", content: answer }, null));
      response.write(chunk({}, "stop"));
      response.end("data: [DONE]\n\n");
      return;
    }
    sendJson(response, {
      id,
      object: "chat.completion",
      created,
      model: body.model,
      choices: [{ index: 0, message: { role: "assistant", content: answer }, logprobs: null, finish_reason: "stop" }],
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    transcriptions,
    chats,
    setTranscription(scenario) {
      transcription = scenario;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}

function sendJson(response: ServerResponse, value: unknown) {
  response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(value));
}

function sendError(
  response: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null = null,
) {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify({ error: { message, type, param: null, code } }));
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

function flattenHeaders(request: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return headers;
}
