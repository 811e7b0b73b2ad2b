/**
 * The route's `onMessage` hook (user-to-user moderation starts there): called with every verified
 * message event, whoever sent it, and never for a request that failed verification.
 */
import type { FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildHttpApp } from "../http/app.ts";
import { createLogger } from "../http/logger.ts";
import { systemClock } from "../reply/clock.ts";
import { type Database, openDatabase } from "../storage/database.ts";
import { createRepositories } from "../storage/repositories.ts";
import { testCallbackRoute as callbackRoute } from "../testing/callback-route.ts";
import { buildMessageCopy } from "./build.ts";
import type { MessageEvent } from "./events.ts";
import { signCallback } from "./sign.ts";

const APP_SECRET = "on-message-secret";
const BOT = "advisor_bot";

describe("POST /im/callback: onMessage", () => {
  let database: Database;
  let app: FastifyInstance;
  const seen: MessageEvent[] = [];

  function post(body: string, secret = APP_SECRET) {
    return app.inject({
      method: "POST",
      url: "/im/callback",
      headers: {
        "content-type": "application/json",
        ...signCallback({ appSecret: secret, body, curTime: Date.now() }),
      },
      payload: body,
    });
  }

  beforeEach(async () => {
    seen.length = 0;
    database = await openDatabase("sqlite::memory:");
    app = await buildHttpApp({
      logger: createLogger({ level: "silent" }),
      bodyLimitBytes: 64 * 1024,
      requestTimeoutMs: 10_000,
      routes: [
        callbackRoute({
          appSecret: APP_SECRET,
          botAccid: BOT,
          windowMs: 300_000,
          repositories: createRepositories(database),
          queue: { enqueue: async () => {}, start: () => {}, stop: async () => {}, depth: async () => 0 },
          clock: systemClock,
          onMessage: (event) => seen.push(event),
        }),
      ],
    });
  });

  afterEach(async () => {
    await app.close();
    await database.close();
  });

  it("sees user-to-user, team and user-to-bot messages, and answers 200 as before", async () => {
    for (const copy of [
      buildMessageCopy({ from: "u_a", to: "u_b", body: "p2p", msgidServer: "1" }),
      buildMessageCopy({ from: "u_a", to: "4455", convType: "TEAM", body: "team", msgidServer: "2" }),
      buildMessageCopy({ from: "u_a", to: BOT, body: "bot", msgidServer: "3" }),
    ]) {
      const response = await post(JSON.stringify(copy));
      expect(response.statusCode).toBe(200);
    }
    expect(seen.map((event) => [event.conversation, event.text])).toEqual([
      ["person", "p2p"],
      ["team", "team"],
      ["person", "bot"],
    ]);
  });

  it("is not called for a forged copy or for non-message events", async () => {
    expect(
      (await post(JSON.stringify(buildMessageCopy({ from: "u_a", to: "u_b", body: "x" })), "wrong")).statusCode,
    ).toBe(401);
    expect((await post("{}")).statusCode).toBe(200);
    expect((await post(JSON.stringify({ eventType: "2", accid: "u_a", timestamp: "1" }))).statusCode).toBe(200);
    expect(seen).toEqual([]);
  });
});
