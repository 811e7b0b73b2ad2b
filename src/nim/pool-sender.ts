/**
 * The production {@link NimHttpSender}: one undici `Pool` per origin, keep-alive, at most
 * `connections` sockets, one request per socket at a time (no pipelining: a stalled answer would
 * hold up the ones queued behind it on the same socket).
 *
 * Why not the global `fetch`: its agent opens a socket per concurrent request without bound (3,000
 * sockets at 2,000 concurrent replies) and builds WHATWG Request/Response/stream objects per call,
 * about a quarter of the CPU under load. A bounded pool reuses warm connections and queues the
 * excess instead of opening more.
 *
 * @example
 * const sender = createPoolSender({ connections: 64 });
 * const nim = createNimClient({ appKey, appSecret, apiBase, timeoutMs: 5000, retry, http: sender });
 * await sender.close(); // after the last call
 */
import { Pool } from "undici";
import { FifoSemaphore } from "../concurrency/fifo-semaphore.ts";
import type { NimHttpAnswer, NimHttpRequest, NimHttpSender } from "./http.ts";

/** NIM_HTTP_CONNECTIONS' default: sockets per NIM origin. */
export const DEFAULT_NIM_HTTP_CONNECTIONS = 64;

export interface PoolSenderOptions {
  /** The most sockets open to one origin at once; further requests wait for a free one. */
  connections?: number;
}

export function createPoolSender(options: PoolSenderOptions = {}): NimHttpSender {
  const connections = options.connections ?? DEFAULT_NIM_HTTP_CONNECTIONS;
  if (!Number.isInteger(connections) || connections < 1) {
    throw new TypeError("createPoolSender: connections must be a positive integer");
  }
  const origins = new Map<string, { pool: Pool; slots: FifoSemaphore }>();
  let closed = false;

  function originFor(origin: string): { pool: Pool; slots: FifoSemaphore } {
    let entry = origins.get(origin);
    if (!entry) {
      // undici's keep-alive defaults stand: an idle socket is dropped after 4 s, or 1 s before the
      // server's own Keep-Alive timeout, so a request rarely lands on a socket the server is closing.
      entry = { pool: new Pool(origin, { connections, pipelining: 1 }), slots: new FifoSemaphore(connections) };
      origins.set(origin, entry);
    }
    return entry;
  }

  return {
    async send(request: NimHttpRequest, signal: AbortSignal, onDispatch: () => void): Promise<NimHttpAnswer> {
      if (closed) throw new Error("the NIM HTTP sender is closed");
      const { pool, slots } = originFor(request.origin);
      // Requests beyond the connections wait here, in order, rather than in undici's queue: the
      // caller learns when one really goes out (onDispatch), so time spent waiting for a socket
      // under load is never mistaken for NIM being slow to answer a request it may have processed.
      // A free slot is taken at once, so the dispatch is reported before send() returns.
      if (!slots.tryAcquire()) await slots.acquire(signal);
      try {
        onDispatch();
        const { statusCode, headers, body } = await pool.request({
          path: request.path,
          method: request.method,
          headers: request.headers,
          body: request.body,
          signal,
        });
        // Always read the body, whatever the status: an unread body keeps its socket from being reused.
        const text = await body.text();
        const retryAfter = headers["retry-after"];
        return { status: statusCode, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, text };
      } finally {
        slots.release();
      }
    },
    async close(): Promise<void> {
      closed = true;
      const open = [...origins.values()];
      origins.clear();
      await Promise.all(open.map((entry) => entry.pool.close()));
    },
  };
}
