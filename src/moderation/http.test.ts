import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createHttpModerator, UNAVAILABLE_REASON } from "./http.ts";

type Handler = (request: IncomingMessage, body: string, response: ServerResponse) => void;

describe("createHttpModerator", () => {
  let server: Server;
  let url: string;
  let handler: Handler;
  const received: Array<{ body: unknown; headers: IncomingMessage["headers"] }> = [];

  beforeEach(async () => {
    received.length = 0;
    handler = (_request, _body, response) => response.end();
    server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        received.push({ body: JSON.parse(body), headers: request.headers });
        handler(request, body, response);
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/moderate?key=secret`;
  });

  afterEach(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, "close");
  });

  const answer = (status: number, body: unknown, contentType = "application/json"): Handler => {
    return (_request, _body, response) => {
      response.writeHead(status, { "content-type": contentType });
      response.end(typeof body === "string" ? body : JSON.stringify(body));
    };
  };

  it("posts stage, text and accid and passes an allowed answer", async () => {
    handler = answer(200, { allowed: true });
    const moderator = createHttpModerator({
      url,
      timeoutMs: 2000,
      failOpen: false,
      headers: { Authorization: "Bearer k" },
    });
    expect(await moderator.checkInput("你好", { accid: "u1" })).toEqual({ allowed: true });
    expect(await moderator.checkOutput("window text", { accid: "u1" })).toEqual({ allowed: true });
    expect(received.map((entry) => entry.body)).toEqual([
      { stage: "input", text: "你好", accid: "u1" },
      { stage: "output", text: "window text", accid: "u1" },
    ]);
    expect(received[0]?.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(received[0]?.headers.authorization).toBe("Bearer k");
  });

  it("returns the service's reason and category for a block", async () => {
    handler = answer(200, { allowed: false, reason: "politics", category: "sensitive" });
    const moderator = createHttpModerator({ url, timeoutMs: 2000, failOpen: true });
    expect(await moderator.checkInput("x", { accid: "u1" })).toEqual({
      allowed: false,
      reason: "politics",
      category: "sensitive",
    });
  });

  it("fills in a reason when a block has none", async () => {
    handler = answer(200, { allowed: false });
    const moderator = createHttpModerator({ url, timeoutMs: 2000, failOpen: true });
    expect(await moderator.checkOutput("x", { accid: "u1" })).toEqual({
      allowed: false,
      reason: "blocked by the moderation service",
    });
  });

  describe.each([
    { failOpen: true, expected: { allowed: true } },
    { failOpen: false, expected: { allowed: false, reason: UNAVAILABLE_REASON, category: "unavailable" } },
  ])("undecided with failOpen $failOpen", ({ failOpen, expected }) => {
    it("times out on a service that never answers", async () => {
      handler = () => {};
      const warnings: object[] = [];
      const moderator = createHttpModerator({
        url,
        timeoutMs: 100,
        failOpen,
        logger: { warn: (details) => warnings.push(details) },
      });
      const started = Date.now();
      expect(await moderator.checkInput("x", { accid: "u1" })).toEqual(expected);
      expect(Date.now() - started).toBeLessThan(1500);
      expect(warnings[0]).toMatchObject({ stage: "input", failOpen, error: "no answer within 100 ms" });
      // The query string (which may carry a key) is not logged.
      expect(JSON.stringify(warnings)).not.toContain("secret");
    });

    it("times out on a service that sends headers and then stalls", async () => {
      handler = (_request, _body, response) => {
        response.writeHead(200, { "content-type": "application/json" });
        response.write('{"allowed":');
      };
      const moderator = createHttpModerator({ url, timeoutMs: 100, failOpen });
      expect(await moderator.checkOutput("x", { accid: "u1" })).toEqual(expected);
    });

    it("treats HTTP 500 as undecided, even with an allowed body", async () => {
      handler = answer(500, { allowed: true });
      const moderator = createHttpModerator({ url, timeoutMs: 2000, failOpen });
      expect(await moderator.checkInput("x", { accid: "u1" })).toEqual(expected);
    });

    it("treats a body without a boolean allowed as undecided", async () => {
      handler = answer(200, { allowed: "yes" });
      const moderator = createHttpModerator({ url, timeoutMs: 2000, failOpen });
      expect(await moderator.checkInput("x", { accid: "u1" })).toEqual(expected);
      handler = answer(200, "<html>ok</html>", "text/html");
      expect(await moderator.checkInput("x", { accid: "u1" })).toEqual(expected);
    });

    it("treats a refused connection as undecided", async () => {
      const moderator = createHttpModerator({ url: "http://127.0.0.1:1/", timeoutMs: 2000, failOpen });
      expect(await moderator.checkInput("x", { accid: "u1" })).toEqual(expected);
    });
  });
});
