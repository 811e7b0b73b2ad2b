/**
 * Pictures and files from the demo page in a real browser (Debian's Chromium through
 * playwright-core): the attach button uploads to the emulator's NOS stand-in and sends a PICTURE
 * and a FILE message. The bridge answers the picture with the bilingual note (BOT_VISION is off,
 * so it is not fetched), and fetches the file from the emulator (allowed by `npm start`) and hands
 * its excerpt to the demo generator, which quotes it.
 *
 * Chromium missing: a failure with CI=true (.ci/run installs it), a loud skip otherwise.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_BOT_ACCID, type LocalStack, startLocalStack } from "../src/cli/start.ts";

const CHROMIUM = "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);

describe("browser prerequisites", () => {
  it(`has Chromium at ${CHROMIUM}`, (context) => {
    if (HAVE_CHROMIUM) return;
    const message = `${CHROMIUM} is missing: the demo page's media test did not run. Install it: apt-get install chromium`;
    if (process.env.CI === "true") throw new Error(message);
    const line = "!".repeat(78);
    console.warn(`\n${line}\n  NOT RUN: ${message}\n${line}\n`);
    context.skip(message);
  });
});

/** The finished replies the bridge sent (as the emulator recorded them), keyed by the msgid they answer. */
function recordedFinals(stack: LocalStack): Map<string, string> {
  const finals = new Map<string, string>();
  for (const message of stack.emulator.state.messagesMatching({ from: DEMO_BOT_ACCID, type: 100 })) {
    const body = JSON.parse(message.body) as { kind: string; done: boolean; reply_to: string; text?: string };
    if (body.kind === "bot_stream" && body.done) finals.set(body.reply_to, body.text ?? "");
  }
  return finals;
}

describe.runIf(HAVE_CHROMIUM)("pictures and files from the demo page in Chromium", () => {
  let stack: LocalStack;
  let directory: string;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-browser-media-"));
    [stack, browser] = await Promise.all([
      startLocalStack({
        port: 0,
        host: "127.0.0.1",
        dataDirectory: directory,
        env: { LOG_LEVEL: "silent", REPLY_PACING_MS: "40" },
      }),
      chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      }),
    ]);
    const context = await browser.newContext({ viewport: { width: 420, height: 800 }, locale: "en-US" });
    page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") pageErrors.push(`console: ${message.text()}`);
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  it("uploads and sends a picture and a Markdown file, shows them, and gets a reply to each", async () => {
    const png = await sharp({ create: { width: 24, height: 12, channels: 3, background: { r: 30, g: 120, b: 200 } } })
      .png()
      .toBuffer();
    const markdown = "# Meeting notes 会议纪要\n\nThe launch moves to Friday. 周五发布。\n";

    await page.goto(stack.url);
    await page.getByTestId("name-input").fill("Media Ming");
    await page.getByTestId("login-button").click();
    await page.locator("[data-testid=connection][data-state=online]").waitFor({ timeout: 10_000 });
    const attach = page.getByRole("button", { name: "Send a picture or a file" });
    expect(await attach.isEnabled()).toBe(true);

    // The picture: shown from the emulator's storage, answered with the note (no vision here).
    await page.getByTestId("attach-input").setInputFiles({ name: "square.png", mimeType: "image/png", buffer: png });
    const image = page.getByTestId("attachment-image").last();
    await image.waitFor({ timeout: 10_000 });
    expect(await image.getAttribute("src")).toMatch(new RegExp(`^${stack.emulatorUrl}/nos/[0-9a-f]{32}/square\\.png$`));
    expect(await image.getAttribute("alt")).toBe("square.png");
    await expect.poll(() => image.evaluate((element: HTMLImageElement) => element.naturalWidth)).toBe(24);
    await page.locator("[data-testid=bot-bubble][data-status=ok]").first().waitFor({ timeout: 20_000 });
    const pictureReply = (await page.getByTestId("bot-text").first().textContent()) ?? "";
    // Without BOT_VISION the bridge answers a picture with its note and does not fetch it.
    expect(pictureReply).toContain("看不了图片");
    expect(pictureReply).toContain("can't see pictures");

    // The file: its name in the bubble, its text read by the bridge and answered by the demo generator.
    await page.getByTestId("attach-input").setInputFiles({
      name: "notes.md",
      mimeType: "text/markdown",
      buffer: Buffer.from(markdown),
    });
    await expect.poll(() => page.getByTestId("attachment-file").last().textContent()).toContain("notes.md");
    await expect
      .poll(() => page.locator("[data-testid=bot-bubble][data-status=ok]").count(), { timeout: 20_000 })
      .toBe(2);
    const fileReply = (await page.getByTestId("bot-text").last().textContent()) ?? "";

    // What NIM carried, and what the bridge answered, agree with what the page shows.
    const [picture] = stack.emulator.state.messagesMatching({ to: DEMO_BOT_ACCID, type: 1 });
    const [file] = stack.emulator.state.messagesMatching({ to: DEMO_BOT_ACCID, type: 6 });
    expect(JSON.parse(picture!.body)).toMatchObject({ name: "square.png", ext: "png", w: 24, h: 12, size: png.length });
    expect(JSON.parse(file!.body)).toMatchObject({ name: "notes.md", ext: "md", size: Buffer.byteLength(markdown) });
    const finals = recordedFinals(stack);
    expect(finals.get(picture!.msgid)).toBe(pictureReply);
    expect(finals.get(file!.msgid)).toBe(fileReply);
    // The demo generator quotes its turn: the excerpt with the file's name, so the bytes were read.
    expect(fileReply).toContain("notes.md");
    expect(fileReply).toContain("The launch moves to Friday.");
    expect(pageErrors).toEqual([]);
  });
});
