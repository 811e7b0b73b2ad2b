/**
 * Secrets never reach the logs: the AppSecret, CheckSums, users' tokens, the service API key and
 * the LLM key, with logging at its most verbose across register, callbacks and a whole reply.
 */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { signCallback } from "../src/callback/sign.ts";
import { createLogger } from "../src/http/logger.ts";
import { APP_SECRET, SERVICE_KEY, type Stack, startStack } from "./harness.ts";

describe("secrets in logs", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it("logs every step at trace level without a single secret", async () => {
    let output = "";
    const destination = new Writable({
      write(chunk, _encoding, callback) {
        output += chunk.toString();
        callback();
      },
    });
    const logger = createLogger({ level: "trace", destination });
    stack = await startStack({
      scenario: { kind: "text", text: "Secret-free answer.", pieces: 3 },
      overrides: { logger },
    });

    const registered = await fetch(`${stack.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY },
      body: JSON.stringify({ user_id: "secretive" }),
    });
    const { accid, token } = (await registered.json()) as { accid: string; token: string };
    const refreshed = await fetch(`${stack.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY },
      body: JSON.stringify({ user_id: "secretive", refresh: true }),
    });
    const newToken = ((await refreshed.json()) as { token: string }).token;
    const wrongKey = await fetch(`${stack.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": `${SERVICE_KEY}-wrong` },
      body: JSON.stringify({ user_id: "secretive" }),
    });
    expect(wrongKey.status).toBe(401);

    const reply = await stack.waitForReply(await stack.send(accid, "hello"));
    expect(reply.status).toBe("ok");
    const body = "{}";
    const forged = signCallback({ appSecret: "not-the-secret", body, curTime: Date.now() });
    const rejected = await fetch(`${stack.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: { "content-type": "application/json", ...forged },
      body,
    });
    expect(rejected.status).toBe(401);
    const genuine = signCallback({ appSecret: APP_SECRET, body, curTime: Date.now() });
    await stack.postCallback(body);

    await stack.stopBridge();
    expect(output.length).toBeGreaterThan(1000);
    expect(output).toContain("callback accepted");
    for (const secret of [
      APP_SECRET,
      token,
      newToken,
      SERVICE_KEY,
      `${SERVICE_KEY}-wrong`,
      forged.CheckSum,
      genuine.CheckSum,
      "sk-e2e",
    ]) {
      expect(output).not.toContain(secret);
    }
    // The emulator saw the real tokens, so the check above is about logs, not about tokens being absent.
    expect(stack.emulator.state.findAccount(accid)?.token).toBe(newToken);
  });
});
