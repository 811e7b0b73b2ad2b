/**
 * Non-text messages to a bot, end to end: a signed PICTURE / FILE / LOCATION / AUDIO copy goes
 * through the bridge; what the model receives is read off the fake OpenAI server's recorded
 * requests, and what the user gets off the emulator. Media are served by a local stand-in for NIM's
 * storage on 127.0.0.1, allowed by name with MEDIA_ALLOW_HTTP (the guarded fetcher refuses anything
 * else; its attacker-input tests are in src/media/fetch.test.ts).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { BOT, type Stack, startStack } from "./harness.ts";

let storage: Server;
let storageHost = "";
let png: Buffer;

beforeAll(async () => {
  png = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 30, b: 30 } } })
    .png()
    .toBuffer();
  storage = createServer((request, response) => {
    if (request.url === "/photo.png") {
      response.writeHead(200, { "content-type": "image/png" });
      response.end(png);
    } else if (request.url === "/notes.md") {
      response.writeHead(200, { "content-type": "text/markdown" });
      response.end("# 会议纪要\n\nThe launch moves to Friday. 周五发布。\n");
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise<void>((resolve) => storage.listen(0, "127.0.0.1", resolve));
  storageHost = `127.0.0.1:${(storage.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => storage.close(resolve));
});

function mediaEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { MEDIA_ALLOWED_HOSTS: storageHost, MEDIA_ALLOW_HTTP: "true", ...extra };
}

describe("pictures, files and locations to the bot", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  async function sendMedia(accid: string, msgType: string, attach: Record<string, unknown>, body = "") {
    const msgidServer = newMessageIdServer();
    const copy = buildMessageCopy({ from: accid, to: BOT, msgType, body, attach: JSON.stringify(attach), msgidServer });
    const response = await stack!.postCallback(JSON.stringify(copy));
    expect(response.status).toBe(200);
    return msgidServer;
  }

  it("answers a picture with a note when the bot cannot see, without calling the model", async () => {
    stack = await startStack({ env: mediaEnv() });
    const accid = await stack.register("picture-note");
    const asked = await sendMedia(accid, "PICTURE", {
      url: `http://${storageHost}/photo.png`,
      ext: "png",
      size: png.length,
      w: 16,
      h: 16,
      md5: "x",
      name: "photo.png",
    });
    const reply = await stack.waitForReply(asked);
    expect(reply.status).toBe("ok");
    expect(reply.finalText).toMatch(/图片|picture/i);
    expect(stack.openai.requests).toHaveLength(0);
  });

  it("sends a picture to a vision model as an image part, and keeps only a placeholder in history", async () => {
    stack = await startStack({
      env: mediaEnv({ BOT_VISION: "true" }),
      scenario: { kind: "text", text: "A red square." },
    });
    const accid = await stack.register("picture-vision");
    const asked = await sendMedia(accid, "PICTURE", {
      url: `http://${storageHost}/photo.png`,
      ext: "png",
      size: String(png.length),
      w: "16",
      h: "16",
      md5: "x",
      name: "photo.png",
    });
    expect((await stack.waitForReply(asked)).finalText).toBe("A red square.");
    const last = stack.openai.requests[0]?.body?.messages.at(-1) as { content: unknown };
    expect(Array.isArray(last.content)).toBe(true);
    const parts = last.content as Array<{ type: string; image_url?: { url: string } }>;
    expect(
      parts.some((part) => part.type === "image_url" && part.image_url?.url.startsWith("data:image/png;base64,")),
    ).toBe(true);
    const history = await stack.bridge!.repositories.conversations.recent(`p2p:${BOT}:${accid}`, 10, 10_000);
    expect(history[0]?.content).not.toContain("base64");
  });

  it("gives the model a bounded excerpt of a text file with its name, and a location as text", async () => {
    stack = await startStack({ env: mediaEnv(), scenario: { kind: "text", text: "Noted." } });
    const accid = await stack.register("file-reader");
    const file = await sendMedia(accid, "FILE", {
      url: `http://${storageHost}/notes.md`,
      ext: "md",
      name: "notes.md",
      size: 60,
      md5: "x",
    });
    await stack.waitForReply(file);
    const fileTurn = stack.openai.requests[0]?.body?.messages.at(-1)?.content ?? "";
    expect(fileTurn).toContain("notes.md");
    expect(fileTurn).toContain("The launch moves to Friday.");
    const place = await sendMedia(accid, "LOCATION", { title: "西湖 West Lake", lng: 120.14, lat: 30.25 });
    await stack.waitForReply(place);
    const placeTurn = stack.openai.requests[1]?.body?.messages.at(-1)?.content ?? "";
    expect(placeTurn).toContain("西湖 West Lake");
    expect(placeTurn).toContain("30.25");
  });

  it("refuses media from a host that is not allowed, and says so instead of staying silent", async () => {
    stack = await startStack({ env: { MEDIA_ALLOW_HTTP: "true" }, scenario: { kind: "text", text: "unused" } });
    const accid = await stack.register("evil-url");
    const asked = await sendMedia(accid, "FILE", {
      url: `http://${storageHost}/notes.md`,
      ext: "md",
      name: "notes.md",
      size: 60,
      md5: "x",
    });
    const reply = await stack.waitForReply(asked);
    expect(reply.finalText.length).toBeGreaterThan(0);
    expect(stack.openai.requests).toHaveLength(0);
    const audit = await stack.bridge!.repositories.audit.list({ event: "reply.media", subject: asked });
    expect(audit).toHaveLength(1);
  });

  it("answers a voice note with a note when no transcription service is configured", async () => {
    stack = await startStack({ env: mediaEnv() });
    const accid = await stack.register("voice");
    const asked = await sendMedia(
      accid,
      "AUDIO",
      { url: `http://${storageHost}/voice.aac`, ext: "aac", dur: 3000, size: 100, md5: "x" },
      "发来了一段语音",
    );
    const reply = await stack.waitForReply(asked);
    expect(reply.finalText).toMatch(/语音|voice/i);
    expect(stack.openai.requests).toHaveLength(0);
  });
});
