/**
 * The demo page with expiring tokens (NIM_TOKEN_MODE=dynamic) in a real browser: it logs in to NIM
 * with authType 1 and fetches a fresh token shortly before the current one expires. The page's
 * clock is Playwright's fake clock, so "shortly before expiry" is reached by fast-forwarding, not
 * by waiting a minute.
 *
 * Chromium missing: a failure with CI=true (.ci/run installs it), a loud skip otherwise (the
 * prerequisite check lives in browser.e2e.test.ts).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../src/cli/start.ts";

const CHROMIUM = "/usr/bin/chromium";
if (!existsSync(CHROMIUM) && process.env.CI === "true") throw new Error(`CI=true but ${CHROMIUM} is missing`);

/** The smallest TTL im-bridge accepts; the page renews a tenth of it (but at least 10 s) early. */
const TTL_SECONDS = 60;

describe.runIf(existsSync(CHROMIUM))("the demo page renews an expiring token", () => {
  let stack: LocalStack;
  let directory: string;
  let browser: Browser;
  let page: Page;
  const registrations: Array<{ at: number; expiresAt: string }> = [];

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-renewal-"));
    [stack, browser] = await Promise.all([
      startLocalStack({
        port: 0,
        host: "127.0.0.1",
        dataDirectory: directory,
        env: { LOG_LEVEL: "silent", NIM_TOKEN_MODE: "dynamic", NIM_TOKEN_TTL_SECONDS: String(TTL_SECONDS) },
      }),
      chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] }),
    ]);
    page = await (await browser.newContext({ viewport: { width: 420, height: 800 } })).newPage();
    await page.clock.install();
    page.on("response", async (response) => {
      if (!response.url().endsWith("/im/register")) return;
      const body = (await response.json().catch(() => ({}))) as { expires_at?: string };
      registrations.push({ at: Date.now(), expiresAt: body.expires_at ?? "" });
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  it("logs in with the dynamic token and fetches a new one 10 s before expiry", async () => {
    await page.goto(stack.url);
    await page.getByTestId("name-input").fill("renewal");
    await page.getByTestId("login-button").click();
    // Online means the emulator accepted an authType 1 login with im-bridge's dynamic token.
    await page.locator("[data-testid=connection][data-state=online]").waitFor({ timeout: 10_000 });
    await expect.poll(() => registrations.length).toBe(1);
    expect(registrations[0]!.expiresAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);

    // 60 s lifetime, renewed 10 s early: nothing at 49 s, a new registration by 51 s.
    await page.clock.fastForward(49_000);
    await page.waitForTimeout(300);
    expect(registrations).toHaveLength(1);
    await page.clock.fastForward(2_000);
    await expect.poll(() => registrations.length, { timeout: 5_000 }).toBe(2);
    expect(Date.parse(registrations[1]!.expiresAt)).toBeGreaterThan(Date.parse(registrations[0]!.expiresAt));
    await page.locator("[data-testid=connection][data-state=online]").waitFor({ timeout: 5_000 });

    // The page's clock now runs 51 s ahead of the server's. The new token's expires_at is on the
    // server's clock; the page must not take it for nearly expired and renew in a loop.
    await page.clock.fastForward(5_000);
    await page.waitForTimeout(500);
    expect(registrations).toHaveLength(2);
  });
});
