/**
 * The operator console in a real browser (Debian's Chromium through playwright-core), next to the
 * demo chat page of `npm start` as the user: log in (a wrong token first), find the user's
 * conversation, watch a reply stream in live, pause the conversation, take it over and write to
 * the user as the bot, hand it back into a spent daily budget, and read the usage page. Saves
 * docs/console-*.png for the READMEs.
 *
 * Chromium missing: a failure with CI=true, a loud skip otherwise (as test/browser.e2e.test.ts).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../src/cli/start.ts";

const CHROMIUM = "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const ADMIN_TOKEN = "browser-console-token-0123456789";
const screenshot = (name: string) => fileURLToPath(new URL(`../docs/console-${name}.png`, import.meta.url));

describe("console browser prerequisites", () => {
  it(`has Chromium at ${CHROMIUM}`, (context) => {
    if (HAVE_CHROMIUM) return;
    const message = `${CHROMIUM} is missing: the console's browser test did not run. Install it: apt-get install chromium`;
    if (process.env.CI === "true") throw new Error(message);
    console.warn(`\n${"!".repeat(78)}\n  NOT RUN: ${message}\n${"!".repeat(78)}\n`);
    context.skip(message);
  });
});

describe.runIf(HAVE_CHROMIUM)("the operator console in Chromium", () => {
  let stack: LocalStack;
  let directory: string;
  let browser: Browser;
  let user: Page;
  let console_: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-console-"));
    [stack, browser] = await Promise.all([
      startLocalStack({
        port: 0,
        host: "127.0.0.1",
        dataDirectory: directory,
        env: {
          LOG_LEVEL: "silent",
          REPLY_PACING_MS: "40",
          ADMIN_TOKEN,
          // A demo answer costs about 200 estimated tokens: two answers spend this budget.
          USER_DAILY_TOKEN_BUDGET: "300",
        },
      }),
      chromium.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
      }),
    ]);
    const userContext = await browser.newContext({ viewport: { width: 420, height: 800 }, locale: "zh-CN" });
    user = await userContext.newPage();
    const consoleContext = await browser.newContext({
      viewport: { width: 1100, height: 860 },
      deviceScaleFactor: 1,
      locale: "zh-CN",
    });
    console_ = await consoleContext.newPage();
    for (const page of [user, console_]) {
      page.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
      page.on("console", (message) => {
        // The wrong-token login answers 401 on purpose; Chromium logs every failed request.
        if (message.type() === "error" && !message.text().includes("401"))
          pageErrors.push(`console: ${message.text()}`);
      });
    }
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  const adminUrl = () => new URL("/admin", stack.url).toString();

  async function userSays(text: string) {
    await user.getByTestId("message-input").fill(text);
    await user.getByTestId("message-input").press("Enter");
    await expect.poll(() => user.getByTestId("user-text").last().textContent()).toBe(text);
  }

  it("logs in, finds the conversation, shows a live reply, pauses, takes over, hits the budget, and shows usage", {
    timeout: 90_000,
  }, async () => {
    // ---- login: a wrong token is refused with a visible message, the right one opens the console.
    await console_.goto(adminUrl());
    await console_.getByLabel("管理令牌").fill("not-the-token-at-all");
    await console_.getByTestId("login-button").click();
    await expect.poll(() => console_.getByTestId("login-error").textContent()).toContain("登录失败");
    await console_.getByLabel("管理令牌").fill(ADMIN_TOKEN);
    await console_.getByTestId("login-button").click();
    await console_.getByTestId("search-input").waitFor();
    expect(await console_.context().cookies()).toEqual([
      expect.objectContaining({ name: "im_bridge_admin", httpOnly: true, sameSite: "Strict", path: "/admin" }),
    ]);
    await console_.locator("body[data-live=open]").waitFor();

    // ---- the user chats; the open console list shows the conversation without a reload.
    await user.goto(stack.url);
    await user.getByTestId("name-input").fill("小明 Ming");
    await user.getByTestId("login-button").click();
    await user.locator("[data-testid=connection][data-state=online]").waitFor({ timeout: 10_000 });
    await userSays("你好！");
    await user.locator("[data-testid=bot-bubble][data-status=ok]").first().waitFor({ timeout: 20_000 });
    const row = console_.locator("[data-testid=conversation-row]").first();
    await row.waitFor({ timeout: 10_000 });
    await expect.poll(() => row.getByTestId("conversation-status").textContent(), { timeout: 10_000 }).toBe("正常");

    // ---- search: by the site user's name, and a miss.
    await console_.getByTestId("search-input").fill("nobody-here");
    await console_.getByTestId("search-button").click();
    await console_.locator("#conversations-empty:not([hidden])").waitFor();
    await console_.getByTestId("search-input").fill("小明");
    await console_.getByTestId("search-button").click();
    await expect.poll(() => console_.locator("[data-testid=conversation-row]").count()).toBe(1);
    await console_.screenshot({ path: screenshot("conversations") });
    await row.locator("a").click();
    await console_.getByTestId("reply").first().waitFor();

    // ---- a live reply: it appears and grows in the console while the user's page streams it.
    await console_.locator("body[data-live=open]").waitFor();
    await userSays("再说一点吧");
    const live = console_.locator("[data-testid=reply][data-status=streaming]");
    await live.waitFor({ timeout: 15_000 });
    const firstLength = ((await live.getByTestId("reply-text").textContent()) ?? "").length;
    await expect
      .poll(
        async () =>
          (
            (await live
              .getByTestId("reply-text")
              .textContent()
              .catch(() => "")) ?? ""
          ).length,
        {
          timeout: 10_000,
        },
      )
      .toBeGreaterThan(firstLength);
    await expect
      .poll(() => console_.locator("[data-testid=reply][data-status=ok]").count(), { timeout: 20_000 })
      .toBe(2);
    const userFinal = await user.getByTestId("bot-text").last().textContent();
    expect(await console_.getByTestId("reply-text").last().textContent()).toBe(userFinal);

    // ---- pause: the user's message is stored but gets no answer.
    await console_.getByTestId("pause-conversation").click();
    await expect.poll(() => console_.getByTestId("pause-state").getAttribute("data-mode")).toBe("skip");
    // The demo page shows typing dots (status pending) under an unanswered question: not an answer.
    const answers = user.locator("[data-testid=bot-bubble]:not([data-status=pending])");
    const bubblesBefore = await answers.count();
    await userSays("有人吗？");
    await expect
      .poll(() => console_.getByTestId("user-message").last().textContent(), { timeout: 10_000 })
      .toContain("有人吗？");
    // ---- takeover: the operator's text reaches the user's page as the bot.
    await console_.getByTestId("takeover").click();
    await console_.getByLabel("以机器人身份回复用户").fill("您好，我是人工客服，马上为您处理。");
    await console_.getByTestId("operator-send").click();
    await expect
      .poll(() => user.getByTestId("bot-text").last().textContent(), { timeout: 10_000 })
      .toBe("您好，我是人工客服，马上为您处理。");
    // Only the operator's message arrived: the paused question got no answer.
    expect(await answers.count()).toBe(bubblesBefore + 1);
    await console_.getByTestId("operator-message").waitFor();
    await console_.setViewportSize({ width: 420, height: 900 });
    // The timeline reloads on events, so scroll in one step inside the page.
    await console_.evaluate(() =>
      document.querySelector("[data-testid=operator-message]")?.scrollIntoView({ block: "center" }),
    );
    await console_.screenshot({ path: screenshot("takeover"), fullPage: false });
    await console_.setViewportSize({ width: 1100, height: 860 });

    // ---- hand back: the budget is spent by now, so the next answer is `limited` with the note.
    await console_.getByTestId("resume").click();
    await expect.poll(() => console_.getByTestId("pause-state").getAttribute("data-mode")).toBe("none");
    await userSays("谢谢，再问一个问题");
    await user.locator("[data-testid=bot-bubble][data-status=limited]").waitFor({ timeout: 15_000 });
    expect(await user.getByTestId("bot-text").last().textContent()).toContain("额度");
    await expect
      .poll(() => console_.locator("[data-testid=reply][data-status=limited]").count(), { timeout: 10_000 })
      .toBe(1);

    // ---- usage: a bar for today and the user at the top; the CSV link is there.
    await console_.getByTestId("nav-usage").click();
    const bar = console_.locator("[data-testid=usage-svg] rect.bar").last();
    await bar.waitFor();
    expect(Number(await bar.getAttribute("data-tokens"))).toBeGreaterThanOrEqual(300);
    expect(await console_.locator("[data-testid=top-user]").count()).toBe(1);
    expect(await console_.getByTestId("usage-csv").getAttribute("href")).toBe("/admin/api/usage.csv?days=14");
    await console_.screenshot({ path: screenshot("usage") });

    // ---- English, and the operator's actions in the controls page's audit list.
    await console_.getByTestId("language").selectOption("en");
    await console_.getByTestId("nav-controls").click();
    await expect
      .poll(async () => (await console_.getByTestId("admin-audit").textContent()) ?? "")
      .toMatch(/admin\.pause[\s\S]*admin\.takeover|admin\.takeover[\s\S]*admin\.pause/);
    expect(await console_.getByTestId("nav-usage").textContent()).toBe("Usage");

    expect(await console_.content()).not.toContain(stack.emulator.settings.appSecret);
    expect(await console_.content()).not.toContain(ADMIN_TOKEN);
    expect(pageErrors).toEqual([]);
  });
});
