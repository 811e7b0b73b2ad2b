/**
 * Scale-out harness: several bridge child processes (`src/cli/serve.ts`, each on its own port) that
 * share one PostgreSQL schema, one Redis key prefix, one NIM emulator and one fake OpenAI server,
 * all in the test process. Each instance reaches NIM through its own recording proxy, so a test can
 * tell which process sent which NIM message and when (the emulator alone cannot: every instance
 * signs with the same AppKey).
 *
 * Additive to ./harness.ts (same constants and helpers); kept in its own file so the single-bridge
 * harness stays as it is.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import pg from "pg";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { signCallback } from "../src/callback/sign.ts";
import type { NimEmulatorOptions, RunningNimEmulator } from "../src/emulator/index.ts";
import { startNimEmulator } from "../src/emulator/index.ts";
import { type FakeOpenAi, type FakeOpenAiScenario, startFakeOpenAi } from "../src/testing/fake-openai.ts";
import { APP_KEY, APP_SECRET, BOT, freePort, SERVICE_KEY, type StreamBody, sleep } from "./harness.ts";

/** One NIM API call as an instance's proxy saw it. */
export interface ProxiedNimCall {
  /** The label of the instance (process) that made the call, e.g. "A", "B", "A2" after a restart. */
  instance: string;
  /** e.g. "msg/sendMsg.action". */
  path: string;
  startedAt: number;
  /** When NIM's answer came back (also when the caller had died meanwhile); unset if it never did. */
  endedAt?: number;
  status?: number;
  /** For sendMsg: the bot_stream body that was sent. */
  stream?: StreamBody;
}

/**
 * A reverse proxy in front of the emulator for one instance: forwards every request unchanged and
 * records it under the instance's current label.
 */
export class RecordingNimProxy {
  label: string;
  private server: Server | undefined;
  port = 0;

  constructor(
    private readonly target: URL,
    label: string,
    private readonly calls: ProxiedNimCall[],
  ) {
    this.label = label;
  }

  get classicApiBase(): string {
    return `http://127.0.0.1:${this.port}/nimserver`;
  }

  async start(): Promise<void> {
    this.server = createServer((incoming, outgoing) => {
      const chunks: Buffer[] = [];
      incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
      incoming.on("end", () => {
        const body = Buffer.concat(chunks);
        const path = (incoming.url ?? "").replace(/^\/nimserver\//, "").split("?")[0] ?? "";
        const call: ProxiedNimCall = { instance: this.label, path, startedAt: Date.now() };
        const stream = sendMsgStreamBody(path, body);
        if (stream) call.stream = stream;
        this.calls.push(call);
        const upstream = httpRequest(
          {
            host: this.target.hostname,
            port: this.target.port,
            method: incoming.method,
            path: incoming.url,
            headers: forwardedHeaders(incoming),
          },
          (answer) => {
            const answerChunks: Buffer[] = [];
            answer.on("data", (chunk: Buffer) => answerChunks.push(chunk));
            answer.on("end", () => {
              call.endedAt = Date.now();
              call.status = answer.statusCode ?? 0;
              if (outgoing.destroyed) return;
              outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
              outgoing.end(Buffer.concat(answerChunks));
            });
          },
        );
        upstream.on("error", () => {
          call.endedAt = Date.now();
          outgoing.destroy();
        });
        upstream.end(body);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function forwardedHeaders(incoming: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(incoming.headers)) {
    if (value === undefined || name === "connection") continue;
    headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return headers;
}

function sendMsgStreamBody(path: string, body: Buffer): StreamBody | undefined {
  if (path !== "msg/sendMsg.action") return undefined;
  const form = new URLSearchParams(body.toString("utf8"));
  try {
    const parsed = JSON.parse(form.get("body") ?? "") as StreamBody;
    return parsed.kind === "bot_stream" ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** One bridge child process (`node --import tsx src/cli/serve.ts`). */
export class BridgeInstance {
  child: ChildProcess | undefined;
  output = "";
  readonly url: string;

  constructor(
    readonly proxy: RecordingNimProxy,
    readonly port: number,
    private readonly environment: Record<string, string>,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  get label(): string {
    return this.proxy.label;
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts the process (under `label`, for the proxy's records) and waits for /healthz. */
  async start(label = this.proxy.label): Promise<void> {
    this.proxy.label = label;
    this.output = "";
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/serve.ts"], {
      env: {
        ...process.env,
        ...this.environment,
        NIM_API_BASE: this.proxy.classicApiBase,
        PORT: String(this.port),
        HOST: "127.0.0.1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (data: Buffer) => {
      this.output = (this.output + data.toString()).slice(-20_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.child = child;
    const deadline = Date.now() + 45_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`bridge ${label} exited early: ${this.output}`);
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`bridge ${label} did not become healthy: ${this.output}`);
  }

  /** SIGKILL: no shutdown hook runs, exactly like a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM (graceful), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async register(userId: string): Promise<string> {
    const response = await fetch(`${this.url}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY },
      body: JSON.stringify({ user_id: userId }),
    });
    if (!response.ok) throw new Error(`register on ${this.label} failed: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { accid: string }).accid;
  }

  /** Posts a correctly signed message copy, as NIM does; resolves with the HTTP status. */
  async deliver(from: string, text: string, msgidServer: string): Promise<number> {
    const body = JSON.stringify(buildMessageCopy({ from, to: BOT, body: text, msgidServer }));
    const headers = signCallback({ appSecret: APP_SECRET, body, curTime: Date.now() });
    const response = await fetch(`${this.url}/im/callback`, {
      method: "POST",
      headers: { "content-type": "application/json", AppKey: APP_KEY, ...headers },
      body,
    });
    await response.arrayBuffer();
    return response.status;
  }

  async metrics(): Promise<string> {
    return (await fetch(`${this.url}/metrics`)).text();
  }
}

export interface MultiStackOptions {
  /** Instance labels, e.g. ["A", "B"]. */
  labels: string[];
  /** PostgreSQL URL of a database in which a fresh schema is made for this stack. */
  postgresUrl: string;
  redisUrl: string;
  scenario?: FakeOpenAiScenario;
  emulator?: Partial<NimEmulatorOptions>;
  /** Extra environment for every instance. */
  env?: Record<string, string>;
  /** Extra environment per instance label (e.g. SERVE_ROLE). */
  envByLabel?: Record<string, Record<string, string>>;
}

/** `postgresUrl` with `search_path` set to `schema` (as a libpq `options` parameter, URL-encoded). */
export function postgresUrlWithSchema(postgresUrl: string, schema: string): string {
  const url = new URL(postgresUrl);
  url.searchParams.delete("options");
  const query = url.searchParams.toString();
  const options = `options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  url.search = "";
  return `${url.toString()}?${query ? `${query}&` : ""}${options}`;
}

export class MultiStack {
  readonly calls: ProxiedNimCall[] = [];
  readonly instances: BridgeInstance[] = [];
  readonly proxies: RecordingNimProxy[] = [];
  /** The schema all instances share (dropped by close()). */
  readonly schema = `mi_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  /** The Redis key prefix all instances share (its keys are deleted by close()). */
  readonly redisKeyPrefix = `im-bridge-test-${randomUUID().slice(0, 8)}`;
  databaseUrl = "";
  emulator!: RunningNimEmulator;
  openai!: FakeOpenAi;

  constructor(private readonly options: MultiStackOptions) {}

  instance(label: string): BridgeInstance {
    const found = this.instances.find((instance) => instance.label === label);
    if (!found) throw new Error(`no instance labelled ${label}`);
    return found;
  }

  async start(): Promise<void> {
    const admin = new pg.Client({ connectionString: this.options.postgresUrl });
    await admin.connect();
    await admin.query(`create schema ${this.schema}`);
    await admin.end();
    this.databaseUrl = postgresUrlWithSchema(this.options.postgresUrl, this.schema);
    this.emulator = await startNimEmulator({ appKey: APP_KEY, appSecret: APP_SECRET, ...this.options.emulator });
    this.openai = await startFakeOpenAi(this.options.scenario ? { scenario: this.options.scenario } : {});
    const environment: Record<string, string> = {
      NIM_APP_KEY: APP_KEY,
      NIM_APP_SECRET: APP_SECRET,
      NIM_BOT_ACCID: BOT,
      NIM_REQUEST_TIMEOUT_MS: "5000",
      NIM_RETRY_DEADLINE_MS: "8000",
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: this.options.redisUrl,
      REDIS_KEY_PREFIX: this.redisKeyPrefix,
      OPENAI_BASE_URL: this.openai.url,
      OPENAI_API_KEY: "sk-e2e",
      OPENAI_MODEL: "fake-model",
      IM_SERVICE_API_KEY: SERVICE_KEY,
      LOG_LEVEL: "warn",
      REPLY_PACING_MS: "50",
      ...this.options.env,
    };
    const target = new URL(this.emulator.url);
    for (const label of this.options.labels) {
      const proxy = new RecordingNimProxy(target, label, this.calls);
      await proxy.start();
      this.proxies.push(proxy);
      const own = { ...environment, ...this.options.envByLabel?.[label] };
      this.instances.push(new BridgeInstance(proxy, await freePort(), own));
    }
    // Together: they also race on the migrations of the fresh schema, as a real rollout does.
    await Promise.all(this.instances.map((instance) => instance.start()));
  }

  /** Every bot_stream message NIM accepted for this reply, in arrival order. */
  delivered(replyTo: string): Array<{ body: StreamBody; raw: string; to: string; timetag: number }> {
    return this.emulator.state
      .messagesMatching({ from: BOT, type: 100 })
      .map((message) => ({
        body: JSON.parse(message.body) as StreamBody,
        raw: message.body,
        to: message.to,
        timetag: message.timetag,
      }))
      .filter((entry) => entry.body.kind === "bot_stream" && entry.body.reply_to === replyTo);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.instances.map((instance) => instance.stop()));
    await Promise.allSettled(this.proxies.map((proxy) => proxy.close()));
    await this.emulator?.close();
    await this.openai?.close();
    const redis = new Redis(this.options.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${this.redisKeyPrefix}:*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== "0");
    } finally {
      redis.disconnect();
    }
    if (this.databaseUrl) {
      const admin = new pg.Client({ connectionString: this.options.postgresUrl });
      await admin.connect();
      await admin.query(`drop schema if exists ${this.schema} cascade`);
      await admin.end();
    }
  }
}

export { newMessageIdServer };
