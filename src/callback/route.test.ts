import type { FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildHttpApp } from "../http/app.ts";
import { createLogger } from "../http/logger.ts";
import type { ReplyJob, ReplyQueue } from "../queue/types.ts";
import { systemClock } from "../reply/clock.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories, type Repositories } from "../storage/repositories.ts";
import { testCallbackRoute as callbackRoute } from "../testing/callback-route.ts";
import { buildMessageCopy } from "./build.ts";
import { signCallback } from "./sign.ts";

const APP_SECRET = "callback-route-secret";
const BOT = "advisor_bot";

class RecordingQueue implements ReplyQueue {
  readonly jobs: ReplyJob[] = [];
  async enqueue(job: ReplyJob) {
    this.jobs.push(job);
  }
  start() {}
  async stop() {}
  async depth() {
    return this.jobs.length;
  }
}

function signedRequest(body: string | Buffer, options: { secret?: string; curTime?: number } = {}) {
  const headers = signCallback({
    appSecret: options.secret ?? APP_SECRET,
    body,
    curTime: options.curTime ?? Date.now(),
  });
  return {
    method: "POST" as const,
    url: "/im/callback",
    headers: { "content-type": "application/json", appkey: "key", ...headers },
    payload: body,
  };
}

function textCopy(overrides: Partial<Parameters<typeof buildMessageCopy>[0]> = {}) {
  return JSON.stringify(
    buildMessageCopy({ from: "u_alice", to: BOT, body: "你好", msgidServer: "123456789", ...overrides }),
  );
}

describe("POST /im/callback", () => {
  let database: Database;
  let repositories: Repositories;
  let queue: RecordingQueue;
  let app: FastifyInstance;

  beforeEach(async () => {
    database = await openDatabase("sqlite::memory:");
    repositories = createRepositories(database);
    queue = new RecordingQueue();
    app = await buildHttpApp({
      logger: createLogger({ level: "silent" }),
      bodyLimitBytes: 64 * 1024,
      routes: [
        callbackRoute({
          appSecret: APP_SECRET,
          botAccid: BOT,
          windowMs: 300_000,
          repositories,
          queue,
          clock: systemClock,
        }),
      ],
    });
  });
  afterEach(async () => {
    await app.close();
    await database.close();
  });

  it("accepts a user→bot text: one inbox row, one job, 200 {ok:true}", async () => {
    const response = await app.inject(signedRequest(textCopy()));
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ ok: true });
    expect(await repositories.inbox.get("123456789")).toMatchObject({
      from_accid: "u_alice",
      to_accid: BOT,
      text: "你好",
      status: "accepted",
    });
    expect(queue.jobs).toEqual([{ msgidServer: "123456789" }]);
  });

  it("answers the same message three times but stores and schedules it once", async () => {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const response = await app.inject(signedRequest(textCopy()));
      expect(response.json()).toEqual({ ok: true });
    }
    expect(queue.jobs).toHaveLength(1);
    expect(await repositories.inbox.countByStatus()).toEqual({ accepted: 1 });
  });

  it("acknowledges NIM's {} validation request without work", async () => {
    const response = await app.inject(signedRequest("{}"));
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ ok: true });
    expect(queue.jobs).toHaveLength(0);
  });

  it.each([
    ["the bot's own copy", { from: BOT, to: "u_alice" }],
    ["the bot's own copy in another case", { from: "Advisor_Bot", to: "u_alice" }],
    ["a message between two users", { to: "u_bob" }],
    ["a custom message", { msgType: "CUSTOM", body: "", attach: '{"a":1}' }],
    ["a picture", { msgType: "PICTURE", body: "" }],
    ["a team message", { convType: "TEAM" as const, to: "12345" }],
  ])("acknowledges and ignores %s", async (_name, overrides) => {
    const response = await app.inject(signedRequest(textCopy(overrides)));
    expect(response.statusCode).toBe(200);
    expect(queue.jobs).toHaveLength(0);
    expect(await repositories.inbox.countByStatus()).toEqual({});
  });

  it("acknowledges login events and unknown shapes", async () => {
    for (const body of [
      JSON.stringify({ eventType: "2", accid: "u_alice", clientType: "WEB", code: "200", timestamp: "1" }),
      JSON.stringify({ eventType: 99, whatever: [1, 2] }),
      "[1,2,3]",
      "not json at all",
    ]) {
      const response = await app.inject(signedRequest(body));
      expect(response.statusCode).toBe(200);
    }
    expect(queue.jobs).toHaveLength(0);
  });

  it("rejects a bad signature with 401, audits it and stores nothing", async () => {
    const response = await app.inject(signedRequest(textCopy(), { secret: "wrong-secret" }));
    expect(response.statusCode).toBe(401);
    expect(response.json()).toEqual({
      error: { code: "invalid_signature", message: expect.stringContaining("checksum") },
    });
    expect(response.body).not.toContain(APP_SECRET);
    expect(queue.jobs).toHaveLength(0);
    expect(await repositories.inbox.countByStatus()).toEqual({});
    expect(await repositories.audit.list({ event: "callback.rejected" })).toHaveLength(1);
  });

  it("rejects a tampered body and a stale CurTime", async () => {
    const request = signedRequest(textCopy());
    const tampered = await app.inject({ ...request, payload: textCopy({ body: "你坏" }) });
    expect(tampered.statusCode).toBe(401);
    const stale = await app.inject(signedRequest(textCopy(), { curTime: Date.now() - 10 * 60_000 }));
    expect(stale.statusCode).toBe(401);
    expect(stale.json().error.message).toContain("too-old");
    expect(queue.jobs).toHaveLength(0);
  });

  it("refuses other content types with 415 in the JSON error shape", async () => {
    const request = signedRequest(textCopy());
    const response = await app.inject({ ...request, headers: { ...request.headers, "content-type": "text/plain" } });
    expect(response.statusCode).toBe(415);
    expect(response.json().error.code).toBe("unsupported_media_type");
    expect(queue.jobs).toHaveLength(0);
  });

  it("serves over a real port with the exact raw bytes verified", async () => {
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    // Whitespace and key order as a client wrote them: re-serialised JSON would not match the MD5.
    const body = `{ "eventType":"1", "convType":"PERSON","to":"${BOT}","fromAccount":"u_real","msgType":"TEXT","body":"hi 👋","msgidServer":"777","msgidClient":"c","msgTimestamp":"1"}`;
    const headers = signCallback({ appSecret: APP_SECRET, body, curTime: Date.now() });
    const response = await fetch(`${url}/im/callback`, {
      method: "POST",
      headers: { "Content-Type": "application/json;charset=utf-8", ...headers },
      body,
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
    expect(await repositories.inbox.get("777")).toMatchObject({ text: "hi 👋", from_accid: "u_real" });
  });
});
