/**
 * The baseline for callback ingest: a bare node:http server in its own process that reads the body
 * and answers 200 {"ok":true} — what the bridge answers, without verifying or storing anything.
 */
import { createServer } from "node:http";

const body = Buffer.from('{"ok":true}');
const server = createServer((request, response) => {
  request.on("data", () => {});
  request.on("end", () => {
    response.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": body.length });
    response.end(body);
  });
});

server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.send?.({ type: "ready", url: `http://127.0.0.1:${port}`, pid: process.pid });
});

process.on("message", (message: { id: number; type: string }) => {
  if (message.type === "stop") {
    process.send?.({ id: message.id });
    server.close();
    process.exit(0);
  }
  // No in-process statistics here: only the clock, so a profile window can be marked.
  process.send?.({ id: message.id, monotonicMicros: Number(process.hrtime.bigint() / 1000n) });
});
