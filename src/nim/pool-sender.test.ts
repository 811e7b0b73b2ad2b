/**
 * The NIM clients over their default transport, the bounded keep-alive pool, against a real
 * node:http server on 127.0.0.1: how many sockets they open, and how timeouts, resets, refused
 * connections and caller aborts come out as NimErrors. (client.test.ts covers NIM's semantics
 * through an injected fetch; this file is the socket boundary.)
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createNimClient, type NimClassicClient, type NimClientOptions } from "./client.ts";
import { NimError } from "./errors.ts";
import { createPoolSender } from "./pool-sender.ts";
import { createNimV2Client } from "./v2-client.ts";

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** A stand-in for NIM that counts TCP connections and how many are open at once. */
interface CountingServer {
  server: Server;
  base: string;
  handler: Handler;
  connections: number;
  open: number;
  mostOpen: number;
  requests: number;
  /** Resolves once the server has received `count` requests in total. */
  requestsReached(count: number): Promise<void>;
}

let nimServer: CountingServer;
const clients: Array<{ close(): Promise<void> }> = [];

const refreshAnswer = JSON.stringify({ code: 200, info: { accid: "u1", token: "t1" } });
const answerAtOnce: Handler = (_request, response) => {
  response.setHeader("content-type", "application/json");
  response.end(refreshAnswer);
};

async function startCountingServer(): Promise<CountingServer> {
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const state: CountingServer = {
    server: createServer((request, response) => {
      state.requests += 1;
      for (const waiter of waiters.filter((entry) => state.requests >= entry.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
      // Read the form body first, as NIM does, then answer as the test says.
      request.resume();
      request.on("end", () => state.handler(request, response));
    }),
    base: "",
    handler: answerAtOnce,
    connections: 0,
    open: 0,
    mostOpen: 0,
    requests: 0,
    requestsReached: (count) =>
      state.requests >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve })),
  };
  state.server.on("connection", (socket: Socket) => {
    state.connections += 1;
    state.open += 1;
    state.mostOpen = Math.max(state.mostOpen, state.open);
    socket.on("close", () => {
      state.open -= 1;
    });
  });
  state.server.listen(0, "127.0.0.1");
  await once(state.server, "listening");
  const { port } = state.server.address() as AddressInfo;
  state.base = `http://127.0.0.1:${port}`;
  return state;
}

function client(overrides: Partial<NimClientOptions> = {}): NimClassicClient {
  const nim = createNimClient({
    appKey: "pool-test-key",
    appSecret: "pool-test-secret",
    apiBase: `${nimServer.base}/nimserver`,
    timeoutMs: 2_000,
    retry: { maxAttempts: 3, deadlineMs: 10_000, baseDelayMs: 1, maxDelayMs: 5 },
    ...overrides,
  });
  clients.push(nim);
  return nim;
}

async function caught(promise: Promise<unknown>): Promise<NimError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(NimError);
  return error as NimError;
}

beforeEach(async () => {
  nimServer = await startCountingServer();
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((nim) => nim.close()));
  nimServer.server.closeAllConnections();
  nimServer.server.close();
  vi.restoreAllMocks();
});

describe("sockets", () => {
  it("sequential calls reuse one kept-alive TCP connection", async () => {
    const nim = client();
    for (let call = 0; call < 5; call += 1) {
      await expect(nim.refreshToken("u1")).resolves.toEqual({ accid: "u1", token: "t1" });
      // Real calls are paced (200 ms per stream); undici reuses a socket one event-loop turn after
      // its answer, to be sure a server that said keep-alive did not close it anyway.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(nimServer.requests).toBe(5);
    expect(nimServer.connections).toBe(1);
  });

  it("back-to-back calls alternate between at most two kept-alive connections", async () => {
    const nim = client();
    for (let call = 0; call < 10; call += 1) await nim.refreshToken("u1");
    expect(nimServer.requests).toBe(10);
    expect(nimServer.connections).toBeLessThanOrEqual(2);
  });

  it("concurrent calls never open more sockets than `connections`; the rest wait their turn", async () => {
    nimServer.handler = (request, response) => {
      // Hold each answer briefly so that the calls overlap.
      setTimeout(() => answerAtOnce(request, response), 20);
    };
    const nim = client({ connections: 3 });
    const answers = await Promise.all(Array.from({ length: 20 }, () => nim.refreshToken("u1")));
    expect(answers).toHaveLength(20);
    expect(nimServer.requests).toBe(20);
    expect(nimServer.mostOpen).toBe(3);
    expect(nimServer.connections).toBe(3);
  });

  it("the v2 client keeps to the same bound and reuses its connections", async () => {
    nimServer.handler = (_request, response) => {
      setTimeout(() => response.end(JSON.stringify({ code: 200, data: { message_server_id: 42 } })), 20);
    };
    const nim = createNimV2Client({
      appKey: "pool-test-key",
      appSecret: "pool-test-secret",
      openApiBase: nimServer.base,
      timeoutMs: 2_000,
      retry: { maxAttempts: 1, deadlineMs: 10_000 },
      connections: 2,
    });
    clients.push(nim);
    const chunk = JSON.stringify({ message: { message_type: 0 } });
    const first = await Promise.all(Array.from({ length: 6 }, () => nim.sendStreamMessageChunk("a|1|b", chunk)));
    const second = await Promise.all(Array.from({ length: 6 }, () => nim.sendStreamMessageChunk("a|1|b", chunk)));
    expect([...first, ...second].every((result) => result.messageServerId === "42")).toBe(true);
    expect(nimServer.mostOpen).toBe(2);
    expect(nimServer.connections).toBe(2);
  });

  it("close() ends the client's kept-alive connections", async () => {
    const nim = client();
    await nim.refreshToken("u1");
    expect(nimServer.open).toBe(1);
    await nim.close();
    await vi.waitFor(() => expect(nimServer.open).toBe(0));
    expect(await caught(nim.refreshToken("u1"))).toMatchObject({ kind: "network", retryable: false });
  });

  it("a client given a shared sender leaves it open for its owner", async () => {
    const shared = createPoolSender({ connections: 4 });
    clients.push(shared);
    const borrowing = client({ http: shared });
    await borrowing.refreshToken("u1");
    await borrowing.close();
    await new Promise((resolve) => setImmediate(resolve));
    await expect(client({ http: shared }).refreshToken("u1")).resolves.toMatchObject({ token: "t1" });
    expect(nimServer.connections).toBe(1);
    await shared.close();
    await vi.waitFor(() => expect(nimServer.open).toBe(0));
  });

  it("signs each call without AbortSignal.timeout or AbortSignal.any", async () => {
    const timeout = vi.spyOn(AbortSignal, "timeout");
    const any = vi.spyOn(AbortSignal, "any");
    await client().refreshToken("u1", { signal: new AbortController().signal });
    expect(timeout).not.toHaveBeenCalled();
    expect(any).not.toHaveBeenCalled();
  });
});

describe("failures", () => {
  it("a server that never answers is a final timeout, not retried", async () => {
    nimServer.handler = () => {};
    const error = await caught(client({ timeoutMs: 150 }).refreshToken("u1"));
    expect(error).toMatchObject({ kind: "timeout", retryable: false });
    expect(nimServer.requests).toBe(1);
  });

  it("the attempt's timer never holds the process open and is cleared when the answer comes", async () => {
    const setTimer = vi.spyOn(globalThis, "setTimeout");
    const clearTimer = vi.spyOn(globalThis, "clearTimeout");
    await client({ timeoutMs: 60_000, retry: { maxAttempts: 1, deadlineMs: 0 } }).refreshToken("u1");
    const attemptTimers = setTimer.mock.calls
      .map((call, index) => ({ delay: call[1], timer: setTimer.mock.results[index]?.value as NodeJS.Timeout }))
      .filter((entry) => entry.delay === 60_000)
      .map((entry) => entry.timer);
    expect(attemptTimers).toHaveLength(1);
    const timer = attemptTimers[0] as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
    expect(clearTimer).toHaveBeenCalledWith(timer);
  });

  it("the timeout also covers a body that never finishes", async () => {
    nimServer.handler = (_request, response) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.write('{"code":200,');
    };
    const error = await caught(client({ timeoutMs: 150 }).refreshToken("u1"));
    expect(error).toMatchObject({ kind: "timeout", retryable: false });
    expect(nimServer.requests).toBe(1);
  });

  it("a call waiting for a free socket ends at its own deadline as not sent (retryable), never as a read timeout", async () => {
    nimServer.handler = () => {};
    const nim = client({ connections: 1, timeoutMs: 10_000 });
    const holder = new AbortController();
    const holding = caught(nim.refreshToken("u1", { signal: holder.signal }));
    await nimServer.requestsReached(1);
    const queued = await caught(nim.refreshToken("u2", { deadlineMs: 100 }));
    expect(queued).toMatchObject({ kind: "network", retryable: true });
    expect(queued.desc).toMatch(/no free connection within \d+ ms; not sent/);
    holder.abort();
    expect(await holding).toMatchObject({ kind: "aborted" });
    expect(nimServer.requests).toBe(1);
  });

  it("a call that waited for a socket gets its whole time for the answer, counted from when it went out", async () => {
    let answerFirst: (() => void) | undefined;
    nimServer.handler = (_request, response) => {
      const answer = () => {
        response.writeHead(200, { "content-type": "application/json" });
        response.end('{"code":200,"info":{"token":"t"}}');
      };
      if (!answerFirst) answerFirst = answer;
      else setTimeout(answer, 150);
    };
    const nim = client({ connections: 1, timeoutMs: 250, retry: { maxAttempts: 1, deadlineMs: 0 } });
    const first = nim.refreshToken("u1");
    await nimServer.requestsReached(1);
    const second = nim.refreshToken("u2");
    // The second waits 200 ms for the socket, then NIM answers it 150 ms after it went out: 350 ms
    // in all, past its 250 ms, but within 250 ms of its dispatch.
    await new Promise((resolve) => setTimeout(resolve, 200));
    answerFirst?.();
    await expect(first).resolves.toBeDefined();
    await expect(second).resolves.toBeDefined();
    expect(nimServer.requests).toBe(2);
  });

  it("a connection reset after the request went out is a final network error", async () => {
    nimServer.handler = (request) => request.socket.destroy();
    const error = await caught(client().refreshToken("u1"));
    expect(error).toMatchObject({ kind: "network", retryable: false });
    expect(nimServer.requests).toBe(1);
  });

  it("a refused connection is a retryable network error", async () => {
    const closed = await startCountingServer();
    closed.server.close();
    await once(closed.server, "close");
    const warnings: string[] = [];
    const error = await caught(
      client({
        apiBase: `${closed.base}/nimserver`,
        retry: { maxAttempts: 2, deadlineMs: 5_000, baseDelayMs: 1 },
        logger: { debug: () => {}, warn: (_fields, message) => warnings.push(message) },
      }).refreshToken("u1"),
    );
    expect(error).toMatchObject({ kind: "network", retryable: true });
    expect(error.desc).toMatch(/connect failed: ECONNREFUSED/);
    expect(warnings).toEqual(["NIM call failed; retrying"]);
  });

  it("an abort by the caller mid-request ends the call with 'aborted'", async () => {
    nimServer.handler = () => {};
    const controller = new AbortController();
    const pending = caught(client().refreshToken("u1", { signal: controller.signal }));
    await nimServer.requestsReached(1);
    controller.abort();
    const error = await pending;
    expect(error).toMatchObject({ kind: "aborted", retryable: false });
    expect(nimServer.requests).toBe(1);
  });
});
