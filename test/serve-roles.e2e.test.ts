/**
 * SERVE_ROLE without Redis: an http-only bridge and a worker-only bridge on one SQLite file. The
 * http instance has nobody to hand jobs to, so it only writes the inbox row; the worker's sweeper
 * finds the row and answers it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { signCallback } from "../src/callback/sign.ts";
import { loadConfig } from "../src/config/index.ts";
import { type Bridge, createBridge } from "../src/server.ts";
import { APP_KEY, APP_SECRET, BOT, SERVICE_KEY, type Stack, startStack } from "./harness.ts";

describe("serve roles without Redis", () => {
  let worker: Stack | undefined;
  let http: Bridge | undefined;
  afterEach(async () => {
    await http?.close();
    await worker?.close();
    http = undefined;
    worker = undefined;
  });

  it("the worker's sweeper answers what the http instance accepted, and the http queue stays empty", async () => {
    worker = await startStack({
      env: { SERVE_ROLE: "worker", REPLY_SWEEP_INTERVAL_MS: "100" },
      scenario: { kind: "text", text: "Answered by the worker.", pieces: 3, delayMs: 10 },
    });
    http = await createBridge(loadConfig({ ...worker.environment, SERVE_ROLE: "http", PORT: "0" }));
    const httpUrl = await http.start();

    const registered = await fetch(`${httpUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY },
      body: JSON.stringify({ user_id: "roles-no-redis" }),
    });
    expect(registered.status).toBe(200);
    const { accid } = (await registered.json()) as { accid: string };

    const msgid = newMessageIdServer();
    const body = JSON.stringify(buildMessageCopy({ from: accid, to: BOT, body: "hi", msgidServer: msgid }));
    const accepted = await fetch(`${httpUrl}/im/callback`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        AppKey: APP_KEY,
        ...signCallback({ appSecret: APP_SECRET, body, curTime: Date.now() }),
      },
      body,
    });
    expect(accepted.status).toBe(200);
    expect(await http.queue.depth()).toBe(0);

    const reply = await worker.waitForReply(msgid, 10_000);
    expect(reply.status).toBe("ok");
    expect(reply.finalText).toBe("Answered by the worker.");
    expect(await http.queue.depth()).toBe(0);
  });
});
