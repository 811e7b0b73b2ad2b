/**
 * The streamed reply end to end over real ports: bridge ⇄ NIM emulator ⇄ fake OpenAI.
 */
import { afterEach, describe, expect, it } from "vitest";
import { BOT, type Stack, startStack } from "./harness.ts";

const ANSWER = "你好！我是一个测试机器人。Streaming works: 1, 2, 3. 🚀 再见。";

describe("streamed reply", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it("streams an answer in order, gapless, with the contract's options and a stored final", async () => {
    stack = await startStack({ scenario: { kind: "text", text: ANSWER, pieces: 12, delayMs: 30 } });
    const accid = await stack.register("alice");
    const replyTo = await stack.send(accid, "你好");
    const reply = await stack.waitForReply(replyTo);

    const seqs = reply.messages.map((entry) => entry.body.seq);
    expect(seqs).toEqual([...seqs.keys()]);
    expect(reply.deltaText).toBe(ANSWER);
    expect(reply.finalText).toBe(ANSWER);
    expect(reply.status).toBe("ok");
    expect(reply.segments.length).toBeGreaterThanOrEqual(2);
    const streamIds = new Set(reply.messages.map((entry) => entry.body.stream_id));
    expect(streamIds.size).toBe(1);
    for (const { message, body } of reply.messages) {
      expect(message.from).toBe(BOT);
      expect(message.to).toBe(accid);
      expect(message.type).toBe(100);
      if (body.done) {
        expect(message.option).toMatchObject({ roam: true, history: true, persistent: true });
        expect(message.fields.pushcontent).toBe(ANSWER);
      } else {
        expect(message.option).toMatchObject({
          roam: false,
          history: false,
          persistent: false,
          push: false,
          badge: false,
          route: false,
          sessionUpdate: false,
        });
      }
    }
    // The first key order of the contract's segment body.
    expect(Object.keys(reply.segments[0]!)).toEqual(["kind", "stream_id", "reply_to", "seq", "delta", "done"]);
    // The generator got the system prompt and the user's message.
    const request = stack.openai.requests.at(-1)!;
    expect(request.body!.messages.at(0)).toMatchObject({ role: "system" });
    expect(request.body!.messages.at(-1)).toEqual({ role: "user", content: "你好" });
  });

  it("answers the same callback delivered three times exactly once", async () => {
    stack = await startStack({ scenario: { kind: "text", text: "Only once.", pieces: 3, delayMs: 10 } });
    const accid = await stack.register("bob");
    const replyTo = await stack.send(accid, "hello", "8800000000001");
    await stack.send(accid, "hello", "8800000000001");
    await stack.send(accid, "hello", "8800000000001");
    const reply = await stack.waitForReply(replyTo);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const after = stack.delivered(replyTo);
    expect(after.messages.filter((entry) => entry.body.done)).toHaveLength(1);
    expect(after.messages.length).toBe(reply.messages.length);
    expect(stack.openai.requests).toHaveLength(1);
  });

  it("keeps conversation history and clears it on /reset and 重置", async () => {
    stack = await startStack({ scenario: { kind: "text", text: "Noted.", pieces: 2 } });
    const accid = await stack.register("carol");
    await stack.waitForReply(await stack.send(accid, "My name is Carol."));
    await stack.waitForReply(await stack.send(accid, "What is my name?"));
    const second = stack.openai.requests.at(-1)!.body!.messages;
    expect(second.slice(1)).toEqual([
      { role: "user", content: "My name is Carol." },
      { role: "assistant", content: "Noted." },
      { role: "user", content: "What is my name?" },
    ]);

    const requestsBefore = stack.openai.requests.length;
    const reset = await stack.waitForReply(await stack.send(accid, "/reset"));
    expect(reset.status).toBe("ok");
    expect(reset.finalText).toMatch(/重新开始|cleared/);
    expect(stack.openai.requests).toHaveLength(requestsBefore);

    await stack.waitForReply(await stack.send(accid, "Who am I?"));
    expect(stack.openai.requests.at(-1)!.body!.messages.slice(1)).toEqual([{ role: "user", content: "Who am I?" }]);

    await stack.waitForReply(await stack.send(accid, " 重置 "));
    expect(stack.openai.requests).toHaveLength(requestsBefore + 1);
  });

  it("removes <think> reasoning split across chunks", async () => {
    stack = await startStack({ scenario: { kind: "fixture", name: "ollama-think-chinese" } });
    const accid = await stack.register("dave");
    const reply = await stack.waitForReply(await stack.send(accid, "思考一下"));
    expect(reply.status).toBe("ok");
    expect(reply.finalText.length).toBeGreaterThan(0);
    expect(reply.finalText).not.toMatch(/think>/i);
    expect(reply.deltaText).toBe(reply.finalText);
  });
});
