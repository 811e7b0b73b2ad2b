import OpenAI from "openai";
import sharp from "sharp";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type FakeOpenAiMedia, startFakeOpenAiMedia } from "../testing/fake-openai-media.ts";
import { imageContentParts, imageDataUrl, PICTURE_PLACEHOLDER, prepareImage, type VisionSettings } from "./vision.ts";

const SETTINGS: VisionSettings = { passUrl: false, maxImageBytes: 4_000_000, maxSide: 2048, detail: "auto" };

/** A noisy picture (noise does not compress, so byte limits are reachable with small sides). */
async function noisyPicture(width: number, height: number, format: "png" | "jpeg" | "webp" | "tiff" | "avif") {
  const pixels = Buffer.alloc(width * height * 3);
  let seed = 12345;
  for (let index = 0; index < pixels.length; index += 1) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    pixels[index] = (seed >> 16) & 0xff;
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .toFormat(format)
    .toBuffer();
}

describe("prepareImage", () => {
  it("passes a picture that fits through unchanged", async () => {
    const png = await noisyPicture(64, 48, "png");
    const prepared = await prepareImage(png, "image/png", SETTINGS);
    expect(prepared).toMatchObject({ kind: "image", mimeType: "image/png", width: 64, height: 48, reencoded: false });
    expect(prepared.kind === "image" && prepared.bytes.equals(png)).toBe(true);
  });

  it("scales a picture with a side above the limit down to a JPEG", async () => {
    const png = await noisyPicture(400, 100, "png");
    const prepared = await prepareImage(png, "image/png", { ...SETTINGS, maxSide: 200 });
    expect(prepared).toMatchObject({ kind: "image", mimeType: "image/jpeg", width: 200, height: 50, reencoded: true });
    const metadata = prepared.kind === "image" ? await sharp(prepared.bytes).metadata() : undefined;
    expect(metadata?.format).toBe("jpeg");
  });

  it("re-encodes a picture above the byte limit until it fits", async () => {
    const png = await noisyPicture(800, 800, "png");
    const prepared = await prepareImage(png, "image/png", { ...SETTINGS, maxImageBytes: 100_000 });
    expect(prepared.kind).toBe("image");
    if (prepared.kind !== "image") return;
    expect(prepared.bytes.length).toBeLessThanOrEqual(100_000);
    expect(prepared.reencoded).toBe(true);
    expect(Math.max(prepared.width, prepared.height)).toBeLessThan(800);
  });

  it("refuses a picture that cannot be made small enough", async () => {
    const png = await noisyPicture(600, 600, "png");
    expect(await prepareImage(png, "image/png", { ...SETTINGS, maxImageBytes: 1_000 })).toEqual({
      kind: "refused",
      reason: "too-large",
    });
  });

  it("converts formats the API does not take", async () => {
    for (const [format, mimeType] of [
      ["tiff", "image/tiff"],
      ["avif", "image/avif"],
    ] as const) {
      const picture = await noisyPicture(32, 32, format);
      const prepared = await prepareImage(picture, mimeType, SETTINGS);
      expect(prepared).toMatchObject({ kind: "image", mimeType: "image/jpeg", reencoded: true });
    }
  });

  it("takes the first frame of an animated GIF", async () => {
    const frame = (background: string) =>
      sharp({ create: { width: 8, height: 8, channels: 3, background } })
        .raw()
        .toBuffer();
    // Two 8×8 frames stacked as pages: red, then blue.
    const animated = await sharp(Buffer.concat([await frame("#ff0000"), await frame("#0000ff")]), {
      raw: { width: 8, height: 16, channels: 3, pageHeight: 8 },
    })
      .gif()
      .toBuffer();
    expect((await sharp(animated).metadata()).pages).toBe(2);
    const prepared = await prepareImage(animated, "image/gif", SETTINGS);
    expect(prepared).toMatchObject({ kind: "image", mimeType: "image/jpeg", width: 8, height: 8, reencoded: true });
  });

  it("refuses bytes that do not decode", async () => {
    const broken = Buffer.concat([(await noisyPicture(16, 16, "png")).subarray(0, 40), Buffer.alloc(40)]);
    expect(await prepareImage(broken, "image/png", SETTINGS)).toEqual({ kind: "refused", reason: "unreadable" });
  });

  it("refuses a decompression bomb before decoding it", async () => {
    const huge = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: "#000000" } })
      .png({ compressionLevel: 9 })
      .toBuffer();
    expect(huge.length).toBeLessThan(200_000);
    expect(await prepareImage(huge, "image/png", { ...SETTINGS, maxInputPixels: 1_000_000 })).toEqual({
      kind: "refused",
      reason: "too-large",
    });
  });
});

describe("imageContentParts with a vision model", () => {
  let fake: FakeOpenAiMedia;
  beforeEach(async () => {
    fake = await startFakeOpenAiMedia({ apiKey: "vision-key", chatAnswer: "A red square." });
  });
  afterEach(async () => {
    await fake.close();
  });

  it("sends the checked bytes as a data URL that the API accepts, next to the history", async () => {
    const png = await noisyPicture(20, 20, "png");
    const prepared = await prepareImage(png, "image/png", SETTINGS);
    if (prepared.kind !== "image") throw new Error("expected an image");
    const client = new OpenAI({ baseURL: fake.url, apiKey: "vision-key" });
    const completion = await client.chat.completions.create({
      model: "vision-model",
      messages: [
        { role: "system", content: "You are helpful." },
        { role: "user", content: PICTURE_PLACEHOLDER },
        { role: "assistant", content: "Nice picture." },
        { role: "user", content: imageContentParts(imageDataUrl(prepared), SETTINGS) },
      ],
    });
    expect(completion.choices[0]?.message.content).toBe("A red square.");
    const [chat] = fake.chats;
    expect(chat?.images).toHaveLength(1);
    expect(chat?.images[0]?.mimeType).toBe("image/png");
    expect(chat?.images[0]?.bytes?.equals(png)).toBe(true);
    expect(chat?.images[0]?.detail).toBe("auto");
    // The earlier picture turn is text only: history never carries bytes.
    expect(JSON.stringify(chat?.body.messages?.slice(0, 3))).not.toContain("base64");
  });

  it("passes a URL through when the model fetches pictures itself", async () => {
    const client = new OpenAI({ baseURL: fake.url, apiKey: "vision-key" });
    await client.chat.completions.create({
      model: "vision-model",
      messages: [{ role: "user", content: imageContentParts("https://nim-nosdn.netease.im/abc", { detail: "low" }) }],
    });
    expect(fake.chats[0]?.images).toEqual([{ source: "url", url: "https://nim-nosdn.netease.im/abc", detail: "low" }]);
  });

  it("is refused by the API for a type it does not take (why TIFF and AVIF are converted)", async () => {
    const client = new OpenAI({ baseURL: fake.url, apiKey: "vision-key", maxRetries: 0 });
    const tiff = await noisyPicture(8, 8, "tiff");
    const failure = await client.chat.completions
      .create({
        model: "vision-model",
        messages: [
          { role: "user", content: imageContentParts(imageDataUrl({ mimeType: "image/tiff", bytes: tiff }), SETTINGS) },
        ],
      })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.BadRequestError);
  });
});
