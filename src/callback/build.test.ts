import { describe, expect, it } from "vitest";
import { buildMessageCopy, buildTextMessageCopy, newMessageIdServer } from "./build.ts";
import { isUserToBotText, parseCallbackEvent } from "./parse.ts";
import { signCallback } from "./sign.ts";
import { verifyCallback } from "./verify.ts";

describe("buildMessageCopy", () => {
  it("builds a TEXT copy with every value a string, as NIM does", () => {
    const copy = buildTextMessageCopy({
      from: "user_42",
      to: "advisor_bot",
      text: "hi",
      msgTimestamp: 1441977355557,
      msgidServer: "3456789",
    });
    expect(copy).toMatchObject({
      eventType: "1",
      convType: "PERSON",
      to: "advisor_bot",
      fromAccount: "user_42",
      fromClientType: "WEB",
      fromNick: "user_42",
      msgTimestamp: "1441977355557",
      msgType: "TEXT",
      body: "hi",
      msgidServer: "3456789",
      resendFlag: "0",
    });
    expect(copy["msgidClient"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(copy["fromDeviceId"]).toMatch(/^[0-9a-f]{32}$/);
    for (const value of Object.values(copy)) expect(typeof value).toBe("string");
  });

  it("round-trips through signing, verification and parsing", () => {
    const body = JSON.stringify(buildTextMessageCopy({ from: "user_42", to: "advisor_bot", text: "你好" }));
    const now = Date.now();
    const signature = signCallback({ appSecret: "secret", body, curTime: now });
    const rawBody = Buffer.from(body, "utf8");
    expect(verifyCallback({ headers: { ...signature }, rawBody, appSecret: "secret", now, windowMs: 1000 })).toEqual({
      ok: true,
      curTime: now,
    });
    const event = parseCallbackEvent(rawBody);
    expect(isUserToBotText(event, "advisor_bot")).toBe(true);
  });

  it("builds a CUSTOM copy from the server API: payload in attach, empty body, no device", () => {
    const copy = buildMessageCopy({
      from: "advisor_bot",
      to: "user_42",
      msgType: "CUSTOM",
      attach: '{"kind":"bot_stream"}',
      fromClientType: "REST",
    });
    expect(copy).toMatchObject({ msgType: "CUSTOM", body: "", attach: '{"kind":"bot_stream"}', fromDeviceId: "" });
    expect(parseCallbackEvent(Buffer.from(JSON.stringify(copy)))).toMatchObject({
      kind: "message",
      messageType: "custom",
      attach: '{"kind":"bot_stream"}',
    });
  });

  it("marks a resend", () => {
    expect(buildTextMessageCopy({ from: "a", to: "b", text: "x", resend: true })["resendFlag"]).toBe("1");
  });
});

describe("newMessageIdServer", () => {
  it("returns distinct digit strings", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newMessageIdServer(1_700_000_000_000)));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^1700000000000\d{4}$/);
  });
});
