/**
 * `npm start` without a browser: startLocalStack on free ports serves the demo site, its demo JWT
 * is accepted by /im/register, and a user talking through the emulator's gateway (with the `ws`
 * package, as the page does with the browser's WebSocket) gets a whole streamed demo reply.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  DEMO_BOT_ACCID,
  DEMO_TUTOR_ACCID,
  type LocalStack,
  PortInUseError,
  startLocalStack,
} from "../src/cli/start.ts";
import { fromEmulatorMessage, type ReplyState, StreamAssembler } from "../src/client/index.ts";
import { startStack } from "./harness.ts";

/** The environment startLocalStack reads instead of process.env: hermetic, quiet, quick. */
const ENVIRONMENT = { LOG_LEVEL: "silent", REPLY_PACING_MS: "20" };

interface Frame {
  type: string;
  [key: string]: unknown;
}

/** A gateway client that keeps every frame and lets a test wait for one. */
class GatewayClient {
  readonly frames: Frame[] = [];
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: WebSocket) {
    socket.on("message", (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      for (const waiter of this.waiters) waiter();
    });
  }

  static async open(url: string): Promise<GatewayClient> {
    const socket = new WebSocket(url);
    const client = new GatewayClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    return client;
  }

  send(frame: Frame): void {
    this.socket.send(JSON.stringify(frame));
  }

  waitFor(match: (frame: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.frames.find(match);
        if (!found) return;
        cleanup();
        resolve(found);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames).slice(0, 2000)}`),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  close(): void {
    this.socket.close();
  }
}

async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe("npm start: startLocalStack", () => {
  let stack: LocalStack;
  let directory: string;

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-start-"));
    stack = await startLocalStack({ port: 0, host: "127.0.0.1", dataDirectory: directory, env: ENVIRONMENT });
  });

  afterAll(async () => {
    await stack?.close();
    rmSync(directory, { recursive: true, force: true });
  });

  it("serves the chat page, its assets and the demo configuration", async () => {
    expect(stack.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(stack.generator).toBe("demo");

    const page = await fetch(stack.url);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toContain('src="/app.js"');
    expect(html).toContain('href="/styles.css"');

    for (const [path, type] of [
      ["app.js", "text/javascript"],
      ["styles.css", "text/css"],
    ] as const) {
      const asset = await fetch(`${stack.url}${path}`);
      expect(asset.status, path).toBe(200);
      expect(asset.headers.get("content-type"), path).toContain(type);
    }
    // Only the files of web/ are served, nothing else from the disk.
    expect((await fetch(`${stack.url}..%2Fpackage.json`)).status).toBe(404);

    const config = await (await fetch(`${stack.url}demo/config`)).json();
    expect(config).toEqual({
      gatewayUrl: `${stack.emulatorUrl.replace("http", "ws")}/gateway`,
      bot: DEMO_BOT_ACCID,
      bots: [
        { accid: DEMO_BOT_ACCID, name: "顾问" },
        { accid: DEMO_TUTOR_ACCID, name: "导师" },
      ],
      generator: "demo",
      room: true,
      uploadUrl: `${stack.emulatorUrl}/nos/upload`,
    });
  });

  it("serves src/client as a browser ES module", async () => {
    const response = await fetch(`${stack.url}demo/client.js`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/javascript");
    const source = await response.text();
    expect(source).not.toMatch(/\bfrom\s+["']node:/);
    const module = await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);
    expect(typeof module.StreamAssembler).toBe("function");
    expect(typeof module.fromEmulatorMessage).toBe("function");
  });

  it("signs a demo JWT that /im/register accepts, and refuses a bad name", async () => {
    const login = await postJson(`${stack.url}demo/login`, { name: "  Alice Demo " });
    expect(login.status).toBe(200);
    expect(login.body.user_id).toBe("Alice Demo");
    const token = String(login.body.token);
    const [header, payload] = token
      .split(".")
      .slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, "base64url").toString()));
    expect(header.alg).toBe("HS256");
    expect(payload.sub).toBe("Alice Demo");
    expect(payload.exp - payload.iat).toBe(3600);

    const registered = await postJson(
      `${stack.url}im/register`,
      { user_id: "Alice Demo", name: "Alice Demo" },
      { authorization: `Bearer ${token}` },
    );
    expect(registered.status).toBe(200);
    expect(registered.body.bot).toBe(DEMO_BOT_ACCID);
    expect(stack.emulator.state.findAccount(String(registered.body.accid))?.token).toBe(registered.body.token);

    // The JWT is for its own user only.
    const other = await postJson(`${stack.url}im/register`, { user_id: "bob" }, { authorization: `Bearer ${token}` });
    expect(other.status).toBe(403);

    for (const name of ["", "   ", 42, "x".repeat(65), "a\u0000b"]) {
      const refused = await postJson(`${stack.url}demo/login`, { name });
      expect(refused.status, JSON.stringify(name)).toBe(400);
    }
    // Nothing handed to the browser holds the AppSecret.
    expect(JSON.stringify(login.body) + JSON.stringify(registered.body)).not.toContain(
      stack.emulator.settings.appSecret,
    );
  });

  it("answers a message sent through the gateway with a whole streamed demo reply", async () => {
    const login = await postJson(`${stack.url}demo/login`, { name: "gateway-user" });
    const registered = await postJson(
      `${stack.url}im/register`,
      { user_id: "gateway-user" },
      { authorization: `Bearer ${String(login.body.token)}` },
    );
    const { gatewayUrl } = (await (await fetch(`${stack.url}demo/config`)).json()) as { gatewayUrl: string };
    const client = await GatewayClient.open(gatewayUrl);
    try {
      client.send({ type: "login", accid: String(registered.body.accid), token: String(registered.body.token) });
      const loggedIn = await client.waitFor((frame) => frame.type === "login");
      expect(loggedIn.code).toBe(200);

      const assembler = new StreamAssembler();
      const states: ReplyState[] = [];
      assembler.onChange((reply) => states.push(reply));
      client.socket.on("message", (data) => {
        const frame = JSON.parse(data.toString()) as Frame;
        if (frame.type === "message") assembler.accept(fromEmulatorMessage(frame.message));
      });

      client.send({ type: "send", to: DEMO_BOT_ACCID, text: "你好，demo", clientId: "c-1" });
      const sent = await client.waitFor((frame) => frame.type === "sent");
      expect(sent.code).toBe(200);
      await client.waitFor(
        (frame) => frame.type === "message" && (fromEmulatorMessage(frame["message"])?.done ?? false),
        20_000,
      );

      const reply = states.at(-1)!;
      expect(reply.done).toBe(true);
      expect(reply.status).toBe("ok");
      expect(reply.replyTo).toBe(sent.msgid);
      expect(reply.text).toContain("你好，demo");
      // It streamed: several segments before the final, each a longer prefix of the answer.
      const streaming = states.filter((state) => !state.done && state.text !== "");
      expect(streaming.length).toBeGreaterThanOrEqual(2);
      for (const state of streaming) expect(reply.text.startsWith(state.text)).toBe(true);
    } finally {
      client.close();
    }
  });

  it("fails with a clear message when the port is taken", async () => {
    const port = Number(new URL(stack.url).port);
    const error = await startLocalStack({
      port,
      host: "127.0.0.1",
      dataDirectory: join(directory, "second"),
      env: ENVIRONMENT,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PortInUseError);
    expect((error as Error).message).toContain(`Port ${port}`);
    expect((error as Error).message).toContain("PORT=");
  });
});

describe("npm run serve: the same bridge without the demo site", () => {
  it("has no demo routes: no page, no client bundle and above all no /demo/login", async () => {
    const stack = await startStack();
    try {
      for (const [method, path] of [
        ["POST", "/demo/login"],
        ["GET", "/demo/config"],
        ["GET", "/demo/client.js"],
        ["GET", "/"],
        ["GET", "/app.js"],
      ] as const) {
        const response = await fetch(`${stack.bridgeUrl}${path}`, {
          method,
          ...(method === "POST"
            ? { headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "mallory" }) }
            : {}),
        });
        expect(response.status, `${method} ${path}`).toBe(404);
      }
    } finally {
      await stack.close();
    }
  });
});
