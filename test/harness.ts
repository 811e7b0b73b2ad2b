/**
 * End-to-end harness: the NIM emulator and a fake OpenAI-compatible server in the test process,
 * and the bridge either in-process (createBridge) or as a real child process running
 * `src/cli/serve.ts` (so it can be SIGKILLed mid-stream and restarted), all on 127.0.0.1 ports.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { signCallback } from "../src/callback/sign.ts";
import { loadConfig } from "../src/config/index.ts";
import type { EmulatorMessage, NimEmulatorOptions } from "../src/emulator/index.ts";
import { type RunningNimEmulator, startNimEmulator } from "../src/emulator/index.ts";
import { type Bridge, type BridgeOverrides, createBridge } from "../src/server.ts";
import type { Database } from "../src/storage/database.ts";
import { type FakeOpenAi, type FakeOpenAiScenario, startFakeOpenAi } from "../src/testing/fake-openai.ts";

export const APP_KEY = "e2e-app-key";
export const APP_SECRET = "e2e-app-secret-never-logged";
export const BOT = "advisor_bot";
export const SERVICE_KEY = "e2e-service-key";

export interface StreamBody {
  kind: "bot_stream";
  stream_id: string;
  reply_to: string;
  seq: number;
  delta: string;
  done: boolean;
  status?: string;
  text?: string;
  part?: number;
  parts?: number;
}

export interface DeliveredReply {
  messages: Array<{ body: StreamBody; message: EmulatorMessage }>;
  segments: StreamBody[];
  finals: StreamBody[];
  /** Deltas concatenated in seq order (duplicates dropped). */
  deltaText: string;
  /** The final text (parts joined). */
  finalText: string;
  status: string | undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export interface StackOptions {
  /** Extra environment for the bridge (REPLY_PACING_MS, BOT_GENERATOR …). */
  env?: Record<string, string>;
  scenario?: FakeOpenAiScenario;
  emulator?: Partial<NimEmulatorOptions>;
  /** Run the bridge as a child process (needed to kill it). Default: in-process. */
  childProcess?: boolean;
  /** With childProcess: run the compiled build (`node dist/cli/serve.js`, what `npm run serve` runs) instead of tsx. */
  compiled?: boolean;
  overrides?: BridgeOverrides;
}

export class Stack {
  bridge: Bridge | undefined;
  child: ChildProcess | undefined;
  bridgeUrl = "";
  childOutput = "";
  private readonly directory = mkdtempSync(join(tmpdir(), "im-bridge-e2e-"));

  constructor(
    readonly emulator: RunningNimEmulator,
    readonly openai: FakeOpenAi,
    private readonly options: StackOptions,
    private port: number,
  ) {}

  get environment(): Record<string, string> {
    return {
      NIM_APP_KEY: APP_KEY,
      NIM_APP_SECRET: APP_SECRET,
      NIM_BOT_ACCID: BOT,
      NIM_API_BASE: this.emulator.classicApiBase,
      NIM_REQUEST_TIMEOUT_MS: "3000",
      NIM_RETRY_DEADLINE_MS: "8000",
      DATABASE_URL: `sqlite:${join(this.directory, "bridge.db")}`,
      PORT: String(this.port),
      HOST: "127.0.0.1",
      OPENAI_BASE_URL: this.openai.url,
      OPENAI_API_KEY: "sk-e2e",
      OPENAI_MODEL: "fake-model",
      IM_SERVICE_API_KEY: SERVICE_KEY,
      LOG_LEVEL: "silent",
      REPLY_PACING_MS: "50",
      ...this.options.env,
    };
  }

  async startBridge(): Promise<void> {
    if (this.options.childProcess) {
      this.childOutput = "";
      const command = this.options.compiled ? ["dist/cli/serve.js"] : ["--import", "tsx", "src/cli/serve.ts"];
      const child = spawn(process.execPath, command, {
        env: { ...process.env, ...this.environment },
        stdio: ["ignore", "pipe", "pipe"],
      });
      child.stdout?.on("data", (data: Buffer) => {
        this.childOutput += data.toString();
      });
      child.stderr?.on("data", (data: Buffer) => {
        this.childOutput += data.toString();
      });
      this.child = child;
      this.bridgeUrl = `http://127.0.0.1:${this.port}`;
      const deadline = Date.now() + 45_000;
      while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`bridge exited early: ${this.childOutput}`);
        try {
          const response = await fetch(`${this.bridgeUrl}/healthz`);
          if (response.ok) return;
        } catch {
          // not listening yet
        }
        await sleep(50);
      }
      throw new Error(`bridge did not become healthy: ${this.childOutput}`);
    }
    const config = loadConfig(this.environment);
    this.bridge = await createBridge(config, this.options.overrides);
    this.bridgeUrl = await this.bridge.start();
  }

  /** SIGKILL: no shutdown hook runs, exactly like a crash. */
  async killBridge(): Promise<void> {
    const child = this.child;
    // A child killed by a signal has exitCode null and signalCode set: it is gone all the same.
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  async stopBridge(): Promise<void> {
    if (this.bridge) {
      await this.bridge.close();
      this.bridge = undefined;
    }
    await this.killBridge();
  }

  /** Registers a site user through /im/register and returns the accid. */
  async register(userId: string): Promise<string> {
    const response = await fetch(`${this.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY },
      body: JSON.stringify({ user_id: userId }),
    });
    if (!response.ok) throw new Error(`register failed: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { accid: string }).accid;
  }

  /** Posts a correctly signed message copy, as NIM does when `from` writes to the bot. */
  async send(from: string, text: string, msgidServer = newMessageIdServer()): Promise<string> {
    const response = await this.postCallback(
      JSON.stringify(buildMessageCopy({ from, to: BOT, body: text, msgidServer })),
    );
    if (response.status !== 200) throw new Error(`callback answered ${response.status}`);
    return msgidServer;
  }

  async postCallback(body: string): Promise<Response> {
    const headers = signCallback({ appSecret: APP_SECRET, body, curTime: Date.now() });
    return fetch(`${this.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: { "content-type": "application/json", AppKey: APP_KEY, ...headers },
      body,
    });
  }

  /** Every bot_stream message NIM accepted for this reply, in arrival order. */
  delivered(replyTo: string): DeliveredReply {
    const messages = this.emulator.state
      .messagesMatching({ from: BOT, type: 100 })
      .map((message) => ({ message, body: JSON.parse(message.body) as StreamBody }))
      .filter((entry) => entry.body.kind === "bot_stream" && entry.body.reply_to === replyTo);
    const bySeq = new Map<number, StreamBody>();
    for (const entry of messages) if (!bySeq.has(entry.body.seq)) bySeq.set(entry.body.seq, entry.body);
    const ordered = [...bySeq.values()].sort((left, right) => left.seq - right.seq);
    const segments = ordered.filter((body) => !body.done && body.part === undefined);
    const finals = ordered.filter((body) => body.done || body.part !== undefined);
    return {
      messages,
      segments,
      finals,
      deltaText: ordered.map((body) => body.delta).join(""),
      finalText: finals.map((body) => body.text ?? "").join(""),
      status: finals.find((body) => body.done)?.status,
    };
  }

  /** Waits until the reply's done message has reached NIM. */
  async waitForReply(replyTo: string, timeoutMs = 15_000): Promise<DeliveredReply> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const reply = this.delivered(replyTo);
      if (reply.messages.some((entry) => entry.body.done)) return reply;
      await sleep(20);
    }
    throw new Error(
      `no done message for ${replyTo} within ${timeoutMs} ms; got ${this.delivered(replyTo).messages.length} messages\n${this.childOutput.slice(-2000)}`,
    );
  }

  async close(): Promise<void> {
    await this.stopBridge();
    await this.emulator.close();
    await this.openai.close();
    rmSync(this.directory, { recursive: true, force: true });
  }
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET, ...options.emulator });
  const openai = await startFakeOpenAi(options.scenario ? { scenario: options.scenario } : {});
  const stack = new Stack(emulator, openai, options, await freePort());
  await stack.startBridge();
  return stack;
}

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** One exchange over a raw TCP socket, as `rawHttp` saw it. */
export interface RawExchange {
  /** HTTP status of the answer; undefined when the server sent none. */
  status: number | undefined;
  /** Lower-cased header names (a repeated header keeps its last value). */
  headers: Record<string, string>;
  body: string;
  /** The server closed (or reset) the connection. */
  closed: boolean;
  /** Our own time limit ran out first (neither a full answer nor a close). */
  timedOut: boolean;
  /** From the first byte written to the answer or close. */
  elapsedMs: number;
}

/** A pause between the pieces given to `rawHttp`. */
export interface RawPause {
  pauseMs: number;
}

/**
 * Writes `pieces` to a raw TCP socket (pauses in between when asked) and collects the answer:
 * for requests no HTTP client would send (repeated or oddly cased headers, a body that stalls,
 * a chunked body that never ends). Resolves at a complete answer, a close, or `timeoutMs`.
 */
export function rawHttp(
  baseUrl: string,
  pieces: Array<string | Buffer | RawPause>,
  options: { timeoutMs?: number } = {},
): Promise<RawExchange> {
  const { hostname, port } = new URL(baseUrl);
  const timeoutMs = options.timeoutMs ?? 5_000;
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port) });
    const startedAt = Date.now();
    let received = Buffer.alloc(0);
    let settled = false;
    let writing = true;
    const finish = (closed: boolean, timedOut: boolean) => {
      if (settled) return;
      settled = true;
      writing = false;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...parseRawResponse(received), closed, timedOut, elapsedMs: Date.now() - startedAt });
    };
    const timer = setTimeout(() => finish(false, true), timeoutMs);
    socket.on("data", (data: Buffer) => {
      received = Buffer.concat([received, data]);
      if (rawResponseComplete(received)) finish(false, false);
    });
    socket.on("close", () => finish(true, false));
    socket.on("error", () => finish(true, false));
    socket.once("connect", async () => {
      for (const piece of pieces) {
        if (!writing) return;
        if (typeof piece === "object" && "pauseMs" in piece) await sleep(piece.pauseMs);
        else if (!socket.destroyed) socket.write(piece);
      }
    });
  });
}

function splitRawResponse(bytes: Buffer): { head: string; body: Buffer } | undefined {
  const end = bytes.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  return { head: bytes.subarray(0, end).toString("latin1"), body: bytes.subarray(end + 4) };
}

function rawHeaders(head: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

function rawResponseComplete(bytes: Buffer): boolean {
  const parts = splitRawResponse(bytes);
  if (!parts) return false;
  const headers = rawHeaders(parts.head);
  if (headers["content-length"] !== undefined) return parts.body.length >= Number(headers["content-length"]);
  if (headers["transfer-encoding"]?.toLowerCase() === "chunked") return parts.body.includes("\r\n0\r\n\r\n");
  return false;
}

function parseRawResponse(bytes: Buffer): Pick<RawExchange, "status" | "headers" | "body"> {
  const parts = splitRawResponse(bytes);
  if (!parts) return { status: undefined, headers: {}, body: "" };
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(parts.head)?.[1];
  const headers = rawHeaders(parts.head);
  let body = parts.body;
  if (headers["transfer-encoding"]?.toLowerCase() === "chunked") {
    const chunks: Buffer[] = [];
    let offset = 0;
    while (offset < body.length) {
      const lineEnd = body.indexOf("\r\n", offset);
      if (lineEnd < 0) break;
      const size = Number.parseInt(body.subarray(offset, lineEnd).toString("latin1"), 16);
      if (!Number.isFinite(size) || size === 0) break;
      chunks.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
      offset = lineEnd + 2 + size + 2;
    }
    body = Buffer.concat(chunks);
  }
  return { status: status === undefined ? undefined : Number(status), headers, body: body.toString("utf8") };
}

/** The signature headers NIM would send for this body (and Content-Type), as a plain object. */
export function signedCallbackHeaders(body: string | Buffer, curTime = Date.now()): Record<string, string> {
  return { "content-type": "application/json", ...signCallback({ appSecret: APP_SECRET, body, curTime }) };
}

/** Rows per table that a request could write (audit_events is reported too, but is allowed to grow). */
export const WRITABLE_TABLES = ["accounts", "inbox", "replies", "outbox", "messages", "conversation_contexts"] as const;

export async function countRows(database: Database): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of [...WRITABLE_TABLES, "audit_events"]) {
    const result = await sql<{ count: number | string }>`select count(*) as count from ${sql.table(table)}`.execute(
      database.kysely,
    );
    counts[table] = Number(result.rows[0]?.count ?? 0);
  }
  return counts;
}
