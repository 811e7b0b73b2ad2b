/**
 * Small clients for tests that talk to the emulator the way the outside world does: a WebSocket
 * gateway client (the user's browser) and an HTTP receiver for message copies (the bridge's
 * `/im/callback`). Real sockets on 127.0.0.1, no mocks.
 *
 * @example
 * const alice = await GatewayTestClient.connect(emulator.gatewayUrl);
 * await alice.login("alice", token);
 * const frame = await alice.take((frame) => frame.type === "message");
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocket } from "ws";
import { apiCheckSum, createNonce } from "../nim/checksum.ts";

export type Frame = Record<string, unknown> & { type: string };

const defaultWaitMs = 3_000;

export class GatewayTestClient {
  /** Frames received and not yet taken, in arrival order. */
  readonly frames: Frame[] = [];
  /** Resolves when the server or the client closed the socket. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: WebSocket) {
    socket.on("message", (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      for (const waiter of this.waiters) waiter();
    });
    this.closed = new Promise((resolve) => {
      socket.on("close", (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const waiter of this.waiters) waiter();
      });
    });
  }

  static connect(url: string): Promise<GatewayTestClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.once("open", () => resolve(new GatewayTestClient(socket)));
      socket.once("error", reject);
    });
  }

  /** Connects and logs in; resolves with the login answer (the offline frame stays queued). */
  static async loggedIn(url: string, accid: string, token: string): Promise<GatewayTestClient> {
    const client = await GatewayTestClient.connect(url);
    const answer = await client.login(accid, token);
    if (answer.code !== 200) throw new Error(`login of ${accid} failed: ${JSON.stringify(answer)}`);
    return client;
  }

  send(frame: Record<string, unknown>): void {
    this.socket.send(JSON.stringify(frame));
  }

  login(accid: string, token: string): Promise<Frame> {
    this.send({ type: "login", accid, token });
    return this.take((frame) => frame.type === "login");
  }

  /** Removes and returns the first frame matching `predicate`, waiting for it if needed. */
  take(predicate: (frame: Frame) => boolean, timeoutMs = defaultWaitMs): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const index = this.frames.findIndex(predicate);
        if (index < 0) return false;
        const [frame] = this.frames.splice(index, 1);
        cleanup();
        resolve(frame!);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching gateway frame within ${timeoutMs} ms; queued: ${JSON.stringify(this.frames)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter = () => void check();
      this.waiters.add(waiter);
      check();
    });
  }

  /** Waits `ms` and returns the matching frames that arrived meanwhile (expected: none). */
  async collect(predicate: (frame: Frame) => boolean, ms: number): Promise<Frame[]> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.frames.filter(predicate);
  }

  async close(): Promise<void> {
    if (this.socket.readyState !== WebSocket.CLOSED) this.socket.close();
    await this.closed;
  }
}

export interface ReceivedCallback {
  headers: IncomingHttpHeaders;
  rawBody: Buffer;
  receivedAt: number;
}

/**
 * An HTTP server that records every POST and answers with `respond(index)` (status, optional
 * delay): a stand-in for the bridge's callback route.
 */
export class CallbackReceiver {
  readonly received: ReceivedCallback[] = [];
  respond: (index: number) => { status: number; delayMs?: number } = () => ({ status: 200 });
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static start(): Promise<CallbackReceiver> {
    return new Promise((resolve) => {
      let receiver: CallbackReceiver | undefined;
      const server = createServer((request, response) => {
        const chunks: Buffer[] = [];
        request.on("data", (chunk: Buffer) => chunks.push(chunk));
        request.on("end", () => {
          const self = receiver!;
          const index = self.received.length;
          self.received.push({ headers: request.headers, rawBody: Buffer.concat(chunks), receivedAt: Date.now() });
          for (const waiter of self.waiters) waiter();
          const { status, delayMs } = self.respond(index);
          const finish = () => {
            if (!response.destroyed)
              response.writeHead(status, { "content-type": "application/json" }).end('{"ok":true}');
          };
          if (delayMs) setTimeout(finish, delayMs);
          else finish();
        });
      });
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo;
        receiver = new CallbackReceiver(server, `http://127.0.0.1:${port}/im/callback`);
        resolve(receiver);
      });
    });
  }

  /** Resolves once at least `count` requests have arrived. */
  waitFor(count: number, timeoutMs = defaultWaitMs): Promise<ReceivedCallback[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.received.length < count) return;
        cleanup();
        resolve(this.received);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`expected ${count} callback request(s), got ${this.received.length}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  reset(): void {
    this.received.length = 0;
    this.respond = () => ({ status: 200 });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export interface SignedRequest {
  appKey: string;
  appSecret: string;
  /** Overrides the computed CheckSum (to test a bad one). */
  checkSum?: string;
}

/**
 * POSTs to NIM's server API (classic or v2) signed by hand, independently of the bridge's client:
 * `{ form }` for the classic API's form fields, `{ json }` for a v2 JSON body, `{ jsonText }` for
 * JSON written by hand (e.g. a bare 64-bit number that JSON.stringify cannot produce).
 */
export async function signedPost(
  url: string,
  payload: { form: Record<string, string> } | { json: unknown } | { jsonText: string },
  signing: SignedRequest,
): Promise<{ status: number; text: string; json: Record<string, unknown> | undefined }> {
  const nonce = createNonce();
  const curTime = String(Math.floor(Date.now() / 1000));
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": !("form" in payload)
        ? "application/json;charset=utf-8"
        : "application/x-www-form-urlencoded;charset=utf-8",
      AppKey: signing.appKey,
      Nonce: nonce,
      CurTime: curTime,
      CheckSum: signing.checkSum ?? apiCheckSum(signing.appSecret, nonce, curTime),
    },
    body:
      "form" in payload
        ? new URLSearchParams(payload.form).toString()
        : "jsonText" in payload
          ? payload.jsonText
          : JSON.stringify(payload.json),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json };
}
