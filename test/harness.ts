/**
 * End-to-end harness: the NIM emulator and a fake OpenAI-compatible server in the test process,
 * and the bridge either in-process (createBridge) or as a real child process running
 * `src/cli/serve.ts` (so it can be SIGKILLed mid-stream and restarted), all on 127.0.0.1 ports.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { signCallback } from "../src/callback/sign.ts";
import { loadConfig } from "../src/config/index.ts";
import type { EmulatorMessage, NimEmulatorOptions } from "../src/emulator/index.ts";
import { type RunningNimEmulator, startNimEmulator } from "../src/emulator/index.ts";
import { type Bridge, type BridgeOverrides, createBridge } from "../src/server.ts";
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
      NIM_REQUEST_TIMEOUT_MS: "1000",
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
      const child = spawn(process.execPath, ["--import", "tsx", "src/cli/serve.ts"], {
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
      const deadline = Date.now() + 20_000;
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
    if (!child || child.exitCode !== null) return;
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
