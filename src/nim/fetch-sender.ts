/**
 * A {@link NimHttpSender} over a WHATWG `fetch`, for tests (and embedders) that inject one to
 * record or rewrite NIM calls. Production uses the bounded pool of pool-sender.ts instead: a
 * `fetch` brings its own connection policy, which this sender does not bound.
 */
import type { NimHttpAnswer, NimHttpRequest, NimHttpSender } from "./http.ts";

export function createFetchSender(fetchImplementation: typeof fetch): NimHttpSender {
  return {
    async send(request: NimHttpRequest, signal: AbortSignal, onDispatch: () => void): Promise<NimHttpAnswer> {
      // fetch has no visible queue of its own (its agent opens sockets as needed).
      onDispatch();
      const response = await fetchImplementation(`${request.origin}${request.path}`, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal,
      });
      const text = await response.text();
      return { status: response.status, retryAfter: response.headers.get("retry-after") ?? undefined, text };
    },
    // The fetch's connections belong to whoever supplied it.
    async close(): Promise<void> {},
  };
}
