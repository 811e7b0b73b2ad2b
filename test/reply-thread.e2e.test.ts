/**
 * The reply thread (issue 13, goal 2): callbacks are acknowledged while reply work holds the reply
 * thread's event loop, because the replies run on a thread of their own. The generator module
 * spins its thread synchronously until released; on one event loop the second callback's ack
 * could not be written until the generator gave up spinning (after 20 s), which this test sees.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { BOT, type Stack, sleep, startStack } from "./harness.ts";

describe("reply thread", () => {
  const directory = mkdtempSync(join(tmpdir(), "im-bridge-thread-"));
  const started = join(directory, "started");
  const release = join(directory, "release");
  let stack: Stack;

  beforeAll(async () => {
    // The thread reads the generator module's settings from its environment, a copy of ours.
    process.env.BLOCKING_GENERATOR_STARTED = started;
    process.env.BLOCKING_GENERATOR_RELEASE = release;
    stack = await startStack({
      env: { REPLY_THREAD: "on" },
      overrides: { generatorModule: new URL("../src/testing/blocking-generator.ts", import.meta.url).href },
    });
  });

  afterAll(async () => {
    writeFileSync(release, "");
    await stack?.close();
    rmSync(directory, { recursive: true, force: true });
    delete process.env.BLOCKING_GENERATOR_STARTED;
    delete process.env.BLOCKING_GENERATOR_RELEASE;
  });

  it("acknowledges a callback while a reply holds the reply thread, then finishes both replies", async () => {
    const first = await stack.register("thread-user-1");
    const second = await stack.register("thread-user-2");
    const blocked = await stack.send(first, "block");
    while (!existsSync(started)) await sleep(20);

    const msgidServer = newMessageIdServer();
    const ack = await stack.postCallback(
      JSON.stringify(buildMessageCopy({ from: second, to: BOT, body: "hello", msgidServer })),
    );
    expect(ack.status).toBe(200);
    // Acknowledged while the reply thread was still held: the generator never had to give up.
    expect(existsSync(`${started}.gave-up`)).toBe(false);
    expect(stack.delivered(msgidServer).messages).toHaveLength(0);

    writeFileSync(release, "");
    const blockedReply = await stack.waitForReply(blocked);
    expect(blockedReply.finalText).toBe("echo: block (released)");
    const secondReply = await stack.waitForReply(msgidServer);
    expect(secondReply.finalText).toBe("echo: hello");
    expect(secondReply.status).toBe("ok");
  });

  it("starts the reply thread again when it dies, and the new thread finishes the reply", async () => {
    const user = await stack.register("thread-user-3");
    const msgidServer = await stack.send(user, "die");
    const reply = await stack.waitForReply(msgidServer, 30_000);
    expect(existsSync(`${started}.died`)).toBe(true);
    expect(reply.finalText).toBe("echo: die");
    expect(reply.status).toBe("ok");
    // The thread died before anything of this reply was sent: exactly one done, no seq twice.
    expect(reply.finals.filter((body) => body.done)).toHaveLength(1);
  });
});
