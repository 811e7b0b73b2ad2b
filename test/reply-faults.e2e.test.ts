/**
 * The failure paths of a streamed reply, end to end: NIM errors and timeouts mid-stream, a failing
 * and a stalling LLM, a 7,000-character answer, 20 users at once, and a SIGKILLed bridge.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type DeliveredReply, type Stack, sleep, startStack } from "./harness.ts";

function expectWellFormed(reply: DeliveredReply, expectedText?: string) {
  const bySeq = new Map<number, string>();
  for (const { body } of reply.messages) {
    const serialized = JSON.stringify(body);
    const earlier = bySeq.get(body.seq);
    // A resent seq (a send whose answer was lost) must be byte-identical, so clients can drop it.
    if (earlier !== undefined) expect(serialized).toBe(earlier);
    bySeq.set(body.seq, serialized);
  }
  const seqs = [...bySeq.keys()].sort((left, right) => left - right);
  expect(seqs).toEqual([...seqs.keys()]);
  expect(reply.messages.filter((entry) => entry.body.done).length).toBeGreaterThanOrEqual(1);
  expect(new Set(reply.messages.filter((entry) => entry.body.done).map((entry) => entry.body.seq)).size).toBe(1);
  expect(reply.deltaText).toBe(reply.finalText);
  if (expectedText !== undefined) expect(reply.finalText).toBe(expectedText);
}

const ANSWER = "第一句。Second sentence here. 第三句话比较长一些，用来测试。The end.";

describe("reply failure paths", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it("rides out NIM 416 and a gateway's 502 during a stream (the faults NIM's SDKs retry)", async () => {
    stack = await startStack({ scenario: { kind: "text", text: ANSWER, pieces: 10, delayMs: 40 } });
    const accid = await stack.register("faulty");
    const path = "msg/sendMsg.action";
    stack.emulator.faults.push(
      { path, kind: "code", code: 416, desc: "frequency control", times: 2 },
      { path, kind: "http-status", status: 502, times: 1 },
    );
    const reply = await stack.waitForReply(await stack.send(accid, "hi"), 30_000);
    expectWellFormed(reply, ANSWER);
    expect(reply.status).toBe("ok");
    expect(stack.emulator.faults.length).toBe(0);
  });

  it("ends the stream with an audit event when NIM refuses for good", async () => {
    stack = await startStack({ scenario: { kind: "text", text: ANSWER, pieces: 10, delayMs: 20 } });
    const accid = await stack.register("refused");
    stack.emulator.faults.push({
      path: "msg/sendMsg.action",
      kind: "code",
      code: 403,
      times: Number.POSITIVE_INFINITY,
    });
    const msgid = await stack.send(accid, "hi");
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const row = await stack.bridge!.repositories.inbox.get(msgid);
      if (row?.status === "failed") break;
      await sleep(50);
    }
    expect((await stack.bridge!.repositories.inbox.get(msgid))?.status).toBe("failed");
    const audit = await stack.bridge!.repositories.audit.list({ event: "reply.send_failed", subject: msgid });
    expect(audit.length).toBeGreaterThanOrEqual(1);
    expect(audit.length).toBeLessThanOrEqual(2);
    expect(JSON.parse(audit[0]!.detail!)).toMatchObject({ code: "403", retryable: false });
  });

  it("ends with status error and an apology when the LLM answers 500", async () => {
    stack = await startStack({ scenario: { kind: "error", status: 500, message: "upstream exploded" } });
    const accid = await stack.register("llm500");
    const reply = await stack.waitForReply(await stack.send(accid, "hi"));
    expectWellFormed(reply);
    expect(reply.status).toBe("error");
    expect(reply.finalText).toMatch(/抱歉|sorry/i);
    expect(reply.finalText).not.toContain("upstream exploded");
  });

  it("ends with status error when the LLM stalls past the idle timeout", async () => {
    stack = await startStack({
      scenario: { kind: "stall", text: "I started to " },
      env: { REPLY_IDLE_TIMEOUT_SECONDS: "1" },
    });
    const accid = await stack.register("stall");
    const reply = await stack.waitForReply(await stack.send(accid, "hi"), 10_000);
    expectWellFormed(reply);
    expect(reply.status).toBe("error");
    expect(reply.finalText.startsWith("I started to ")).toBe(true);
    expect(reply.finalText).toMatch(/抱歉|sorry/i);
  });

  it("delivers a 7,000-character Chinese answer within NIM's 5000-character body limit", async () => {
    const long = "这是一个很长的中文回答，用来测试分段与多部分结束消息。".repeat(260).slice(0, 7000);
    stack = await startStack({ scenario: { kind: "text", text: long, pieces: 60, delayMs: 5 } });
    const accid = await stack.register("long");
    const reply = await stack.waitForReply(await stack.send(accid, "写长文"), 30_000);
    expectWellFormed(reply, long);
    expect(reply.status).toBe("ok");
    for (const { message } of reply.messages) expect(message.body.length).toBeLessThanOrEqual(5000);
    expect(reply.finals.length).toBeGreaterThanOrEqual(2);
    expect(reply.finals.map((body) => body.part)).toEqual(reply.finals.map((_, index) => index + 1));
    expect(reply.finals.every((body) => body.parts === reply.finals.length)).toBe(true);
    expect(reply.finals.filter((body) => body.done)).toHaveLength(1);
    expect(reply.finals.at(-1)!.done).toBe(true);
  });

  it("serves 20 users at once, each with one complete reply", async () => {
    stack = await startStack({ scenario: { kind: "text", text: ANSWER, pieces: 8, delayMs: 30 } });
    const users = await Promise.all(Array.from({ length: 20 }, (_, index) => stack!.register(`crowd-${index}`)));
    const replyTos = await Promise.all(users.map((accid, index) => stack!.send(accid, `question ${index}`)));
    const replies = await Promise.all(replyTos.map((replyTo) => stack!.waitForReply(replyTo, 30_000)));
    replies.forEach((reply, index) => {
      expectWellFormed(reply, ANSWER);
      expect(reply.messages.every((entry) => entry.message.to === users[index])).toBe(true);
    });
  });

  it("continues a reply after a SIGKILL mid-stream: one done, no seq shown twice", async () => {
    const text = Array.from({ length: 40 }, (_, index) => `片段${index}。`).join("");
    stack = await startStack({ childProcess: true, scenario: { kind: "text", text, pieces: 40, delayMs: 60 } });
    const accid = await stack.register("crash");
    const replyTo = await stack.send(accid, "tell me a long story");
    const deadline = Date.now() + 10_000;
    while (stack.delivered(replyTo).segments.length < 4 && Date.now() < deadline) await sleep(10);
    const before = stack.delivered(replyTo);
    expect(before.segments.length).toBeGreaterThanOrEqual(4);
    expect(before.finals).toHaveLength(0);
    await stack.killBridge();
    await stack.startBridge();
    const reply = await stack.waitForReply(replyTo, 20_000);
    expectWellFormed(reply, text);
    expect(reply.status).toBe("ok");
    // At most the one seq that was in flight at the kill can arrive twice (identical).
    expect(reply.messages.length - new Set(reply.messages.map((entry) => entry.body.seq)).size).toBeLessThanOrEqual(1);
  });
});
