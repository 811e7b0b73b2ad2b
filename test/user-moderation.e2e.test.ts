/**
 * User-to-user moderation through the whole bridge (server.ts wiring, real ports): two users chat
 * through the NIM emulator's gateway, NIM copies their messages to the bridge, and a message the
 * keyword list blocks is recalled at NIM, with a notice to its sender and audit rows. With the
 * intercept enabled, the emulator asks the bridge's /im/intercept before delivery and a blocked
 * message never reaches the receiver.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GatewayTestClient } from "../src/emulator/test-clients.ts";
import { BOT, type Stack, startStack } from "./harness.ts";

describe("user-to-user moderation end to end", () => {
  let directory: string;
  let keywords: string;
  let stack: Stack | undefined;
  const clients: GatewayTestClient[] = [];

  beforeAll(() => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-user-moderation-"));
    keywords = join(directory, "keywords.txt");
    writeFileSync(keywords, "违禁词\nforbidden\n");
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    await stack?.close();
    stack = undefined;
  });

  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  /** Registers a user through /im/register and logs them in at the gateway with the token they got. */
  async function online(current: Stack, userId: string) {
    const response = await fetch(`${current.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": "e2e-service-key" },
      body: JSON.stringify({ user_id: userId }),
    });
    const { accid, token } = (await response.json()) as { accid: string; token: string };
    const client = await GatewayTestClient.loggedIn(current.emulator.gatewayUrl, accid, token);
    clients.push(client);
    return { accid, client };
  }

  function send(client: GatewayTestClient, to: string, text: string) {
    const clientId = `c-${Math.random()}`;
    client.send({ type: "send", to, text, clientId });
    return client.take((frame) => frame.type === "sent" && frame.clientId === clientId);
  }

  it("recalls a blocked message after delivery, notifies the sender and audits", async () => {
    stack = await startStack({
      env: {
        MODERATE_USER_MESSAGES: "true",
        MODERATION_KEYWORDS_FILE: keywords,
        MODERATION_RECALL_NOTICE: "withdrawn",
      },
    });
    stack.emulator.settings.callbackUrl = `${stack.bridgeUrl}/im/callback`;
    const alice = await online(stack, "alice");
    const bob = await online(stack, "bob");

    const clean = await send(alice.client, bob.accid, "hello bob");
    const bad = await send(alice.client, bob.accid, "this is forbidden");
    expect([clean.code, bad.code]).toEqual([200, 200]);

    // Bob got it (delivery comes first), then it is withdrawn on both sides.
    const recall = await bob.client.take((frame) => frame.type === "recall", 10_000);
    expect(recall).toMatchObject({ recall: { msgid: bad.msgid, from: alice.accid, to: bob.accid } });
    await alice.client.take((frame) => frame.type === "recall");
    const notice = await alice.client.take(
      (frame) => frame.type === "message" && (frame.message as { from: string }).from === BOT,
    );
    expect((notice.message as { body: string }).body).toBe(JSON.stringify({ msg: "withdrawn" }));

    expect(stack.emulator.state.findMessage(String(clean.msgid))!.recalled).toBeUndefined();
    expect(stack.emulator.state.findMessage(String(bad.msgid))!.recalled).toBeDefined();
    const events = (await stack.bridge!.repositories.audit.list())
      .map((row) => row.event)
      .filter((event) => event.startsWith("moderation."));
    expect(events).toEqual(["moderation.user_message.blocked", "moderation.user_message.recalled"]);
  });

  it("with the intercept on, NIM asks the bridge first and a blocked message is never delivered", async () => {
    stack = await startStack({
      env: { INTERCEPT_ENABLED: "true", MODERATION_KEYWORDS_FILE: keywords },
    });
    stack.emulator.settings.interceptUrl = `${stack.bridgeUrl}/im/intercept`;
    const alice = await online(stack, "alice");
    const bob = await online(stack, "bob");

    expect((await send(alice.client, bob.accid, "违禁词")).code).toBe(403);
    expect((await send(alice.client, bob.accid, "你好")).code).toBe(200);
    const delivered = await bob.client.take((frame) => frame.type === "message");
    expect((delivered.message as { body: string }).body).toBe(JSON.stringify({ msg: "你好" }));
    expect(stack.emulator.state.intercepts.map((record) => record.decidedBy)).toEqual(["answer", "answer"]);
    const [blocked] = await stack.bridge!.repositories.audit.list({ event: "moderation.intercept.blocked" });
    expect(blocked?.subject).toBe(alice.accid);
  });
});
