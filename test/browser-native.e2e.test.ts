/**
 * The demo page's native-streams switch in a real browser (Debian's Chromium through
 * playwright-core). The bot's reply is streamed straight into the emulator by the native
 * transport (the bridge's own native mode end to end is covered by the reply pipeline's tests):
 * with the switch on the bubble grows from the live stream frames and ends with the status from
 * the last chunk; with it off the page shows only the merged message, as a client without stream
 * support would.
 *
 * Chromium missing: skipped here (browser.e2e.test.ts reports it loudly, and fails under CI).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_BOT_ACCID, type LocalStack, startLocalStack } from "../src/cli/start.ts";
import { createNimV2Client } from "../src/nim/v2-client.ts";
import { NativeStreamTransport } from "../src/reply/transport/native.ts";
import type { OutboundMessage, ReplyAddress, TransportState } from "../src/reply/transport/types.ts";

const CHROMIUM = "/usr/bin/chromium";

/** Streams `deltas` as one native reply from the demo bot to `user`, pausing between chunks. */
async function streamNativeReply(stack: LocalStack, user: string, streamId: string, deltas: string[]) {
  const transport = new NativeStreamTransport({
    nim: createNimV2Client({
      appKey: stack.emulator.settings.appKey,
      appSecret: stack.emulator.settings.appSecret,
      openApiBase: stack.emulator.v2ApiBase,
      timeoutMs: 5_000,
      retry: { maxAttempts: 1, deadlineMs: 5_000 },
    }),
  });
  const address: ReplyAddress = {
    botAccid: DEMO_BOT_ACCID,
    scope: "p2p",
    to: user,
    askerAccid: user,
    replyTo: "1",
    streamId,
  };
  const values = new Map<string, string>();
  const state: TransportState = {
    get: (key) => values.get(key),
    set: async (entries) => {
      for (const [key, value] of Object.entries(entries)) values.set(key, value);
    },
  };
  const signal = new AbortController().signal;
  const sent: OutboundMessage[] = [];
  let committed = "";
  for (const delta of deltas) {
    const messages = transport.encodeSegment(address, {
      seq: sent.length,
      delta,
      committedText: committed,
      previous: sent.at(-1),
    });
    for (const message of messages)
      await transport.deliver(address, message, { state, signal, committedText: committed });
    sent.push(...messages);
    committed += delta;
    // A paced stream: the page gets time to render each frame.
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  const final = transport.encodeFinal(address, {
    firstSeq: sent.length,
    text: committed,
    status: "ok",
    previous: sent.at(-1),
  });
  for (const message of final) await transport.deliver(address, message, { state, signal, committedText: committed });
  return committed;
}

/** Records every text of the newest bot bubble with its status (MutationObserver, nothing missed). */
function recordBotTexts(page: Page): Promise<void> {
  return page.evaluate(() => {
    const list = document.querySelector("[data-testid=messages]")!;
    const samples: Array<{ text: string; status: string }> = [];
    (window as unknown as { botSamples: typeof samples }).botSamples = samples;
    new MutationObserver(() => {
      const bubbles = list.querySelectorAll<HTMLElement>("[data-testid=bot-bubble]");
      const last = bubbles[bubbles.length - 1];
      if (!last) return;
      const sample = {
        text: last.querySelector("[data-testid=bot-text]")?.textContent ?? "",
        status: last.dataset.status ?? "",
      };
      const previous = samples[samples.length - 1];
      if (previous?.text !== sample.text || previous.status !== sample.status) samples.push(sample);
    }).observe(list, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
      attributeFilter: ["data-status"],
    });
  });
}

const samplesOf = (page: Page) =>
  page.evaluate(() =>
    (window as unknown as { botSamples: Array<{ text: string; status: string }> }).botSamples.splice(0),
  );

describe.runIf(existsSync(CHROMIUM))("the demo page's native-streams switch", () => {
  let stack: LocalStack;
  let directory: string;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-browser-native-"));
    [stack, browser] = await Promise.all([
      startLocalStack({ port: 0, host: "127.0.0.1", dataDirectory: directory, env: { LOG_LEVEL: "silent" } }),
      chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] }),
    ]);
    page = await (await browser.newContext({ viewport: { width: 420, height: 800 }, locale: "en-US" })).newPage();
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

  it("renders a native reply live with the switch on, and only the merged message with it off", async () => {
    await page.goto(`${stack.url}?stream=native`);
    await page.getByTestId("name-input").fill("Nina");
    await page.getByTestId("login-button").click();
    await page.locator("[data-testid=connection][data-state=online]").waitFor({ timeout: 10_000 });
    const toggle = page.getByTestId("native-toggle");
    expect(await toggle.getAttribute("aria-pressed")).toBe("true");
    expect(await toggle.textContent()).toBe("Native: on");
    await recordBotTexts(page);
    const user = [...stack.emulator.state.accounts.keys()].find((accid) => /^(u|h)_/.test(accid))!; // the demo user, not a demo bot

    const answer = await streamNativeReply(stack, user, "native-1", ["Native ", "streams ", "render live."]);
    await page.locator("[data-testid=bot-bubble][data-status=ok]").first().waitFor({ timeout: 10_000 });
    expect(await page.getByTestId("bot-text").last().textContent()).toBe(answer);
    const live = await samplesOf(page);
    const partials = [...new Set(live.filter((sample) => sample.status === "streaming").map((sample) => sample.text))];
    expect(partials.length, JSON.stringify(live)).toBeGreaterThanOrEqual(2);
    for (const partial of partials) expect(answer.startsWith(partial)).toBe(true);

    await toggle.click();
    expect(await toggle.getAttribute("aria-pressed")).toBe("false");
    const plain = await streamNativeReply(stack, user, "native-2", ["Shown ", "only when ", "merged."]);
    await expect
      .poll(() => page.locator("[data-testid=bot-bubble][data-status=ok]").count(), { timeout: 10_000 })
      .toBe(2);
    expect(await page.getByTestId("bot-text").last().textContent()).toBe(plain);
    const merged = await samplesOf(page);
    expect(merged.filter((sample) => sample.status === "streaming" && sample.text !== "")).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
