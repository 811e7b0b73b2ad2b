/**
 * The demo page's several-bots UI in a real browser (Debian's Chromium through playwright-core),
 * against `npm start`'s stack: a tab per bot, the group room where two demo users meet, the @
 * picker writing UIKit's `yxAitMsg` (checked with the bridge's own mention helpers), the stop
 * button, and how a bot's team reply is shown (sender name, the @ of the asker).
 *
 * What the bridge answers in a team is the reply pipeline's business and tested end to end there;
 * here the emulator records what the page sent, and a bot's team reply is sent by hand through
 * NIM's server API, exactly as the bridge would send it.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_BOT_ACCID, DEMO_TUTOR_ACCID, type LocalStack, startLocalStack } from "../src/cli/start.ts";
import type { EmulatorMessage } from "../src/emulator/index.ts";
import { signedPost } from "../src/emulator/test-clients.ts";
import { accidForSiteUser } from "../src/register/accid.ts";
import { addressedBots, replyMentionFields, textForBot } from "../src/teams/mentions.ts";

const CHROMIUM = "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const bots = [
  { accid: DEMO_BOT_ACCID, name: "顾问" },
  { accid: DEMO_TUTOR_ACCID, name: "导师" },
];

describe.runIf(HAVE_CHROMIUM)("the demo page's bots and group room in Chromium", () => {
  let stack: LocalStack;
  let directory: string;
  let browser: Browser;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-teams-browser-"));
    [stack, browser] = await Promise.all([
      startLocalStack({
        port: 0,
        host: "127.0.0.1",
        dataDirectory: directory,
        env: { LOG_LEVEL: "silent", REPLY_PACING_MS: "40" },
      }),
      chromium.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
      }),
    ]);
    // The bridge ensures every bot's account at start once several bots are wired in; until then
    // the second demo bot's account is made here, so the page can write to it.
    if (!stack.emulator.state.findAccount(DEMO_TUTOR_ACCID)) {
      stack.emulator.state.addAccount({
        accid: DEMO_TUTOR_ACCID,
        token: "unused",
        name: "导师",
        createdAt: Date.now(),
      });
    }
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  async function loggedInPage(name: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 420, height: 800 }, locale: "zh-CN" });
    const page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(`${name} pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") pageErrors.push(`${name} console: ${message.text()}`);
    });
    await page.goto(stack.url);
    await page.getByTestId("name-input").fill(name);
    await page.getByTestId("login-button").click();
    await page.locator("[data-testid=connection][data-state=online]").waitFor({ timeout: 10_000 });
    return page;
  }

  /** The texts the emulator accepted from `from`, oldest first. */
  async function waitForTexts(from: string, count: number, where: (message: EmulatorMessage) => boolean = () => true) {
    return stack.emulator.state.waitForMessages({ from, type: 0, count, where, timeoutMs: 10_000 });
  }

  function text(message: EmulatorMessage | undefined): string {
    return (JSON.parse(message?.body ?? "{}") as { msg?: string }).msg ?? "";
  }

  it("offers a tab per bot, talks to the picked one, and stops it", async () => {
    const page = await loggedInPage("Picker");
    const accid = accidForSiteUser("Picker");
    expect(await page.getByTestId("bot-tab").allTextContents()).toEqual(["顾问", "导师"]);
    expect(await page.getByTestId("bot-tab").first().getAttribute("aria-selected")).toBe("true");
    expect(await page.getByTestId("stop-button").isDisabled()).toBe(true);

    await page.getByTestId("bot-tab").nth(1).click();
    expect(await page.getByTestId("bot-tab").nth(1).getAttribute("aria-selected")).toBe("true");
    await page.getByTestId("message-input").fill("导师你好");
    await page.getByTestId("send-button").click();
    const [question] = await waitForTexts(accid, 1);
    expect(question).toMatchObject({ to: DEMO_TUTOR_ACCID, ope: 0 });
    expect(text(question)).toBe("导师你好");

    // The reply is awaited (typing bubble): the stop button works and sends /stop to that bot.
    await page.locator("[data-testid=stop-button]:not([disabled])").waitFor({ timeout: 5_000 });
    await page.getByTestId("stop-button").click();
    const [, stop] = await waitForTexts(accid, 2);
    expect(stop).toMatchObject({ to: DEMO_TUTOR_ACCID, ope: 0 });
    expect(text(stop)).toBe("/stop");

    // The user recalls the question: NIM (the emulator) records it and the bubble says so.
    await page.getByTestId("user-bubble").first().getByTestId("recall-button").click();
    await expect
      .poll(() => stack.emulator.state.recalls.map((recall) => recall.message.msgid))
      .toEqual([question?.msgid]);
    await expect.poll(() => page.getByTestId("user-bubble").first().getAttribute("data-status")).toBe("recalled");

    // Back on the first bot's tab the tutor's conversation is not shown.
    await page.getByTestId("bot-tab").first().click();
    await expect.poll(() => page.getByTestId("user-text").allTextContents()).toEqual([]);
    await page.context().close();
  });

  it("lets two users meet in the room, @ a bot like UIKit, and stop it with @bot /stop", async () => {
    const [alice, bob] = await Promise.all([loggedInPage("Alice"), loggedInPage("Bob")]);
    const aliceAccid = accidForSiteUser("Alice");
    for (const page of [alice, bob]) {
      await page.getByTestId("room-tab").click();
      expect(await page.getByTestId("mention-button").isVisible()).toBe(true);
    }
    const room = [...stack.emulator.state.teams.values()][0]!;
    expect(room.members).toEqual(expect.arrayContaining([DEMO_BOT_ACCID, aliceAccid, accidForSiteUser("Bob")]));

    // A plain message to the room addresses no bot: no typing bubble, no stop.
    await alice.getByTestId("message-input").fill("大家好");
    await alice.getByTestId("send-button").click();
    await waitForTexts(aliceAccid, 1);
    expect(await alice.getByTestId("bot-bubble").count()).toBe(0);
    await expect.poll(() => bob.getByTestId("other-text").allTextContents()).toEqual(["大家好"]);

    // @ through the button, then typed "@" through the list: both become UIKit mentions.
    await alice.getByTestId("mention-button").click();
    await alice.locator(`[data-testid=mention-option][data-accid=${DEMO_BOT_ACCID}]`).click();
    await alice.getByTestId("message-input").press("End");
    await alice.getByTestId("message-input").pressSequentially("利率是多少？问问");
    await alice.getByTestId("message-input").pressSequentially("@");
    await alice.getByTestId("mention-list").waitFor({ state: "visible" });
    await alice.locator(`[data-testid=mention-option][data-accid=${DEMO_TUTOR_ACCID}]`).click();
    expect(await alice.getByTestId("message-input").inputValue()).toBe("@顾问 利率是多少？问问@导师 ");
    await alice.getByTestId("send-button").click();

    const [, question] = await waitForTexts(aliceAccid, 2);
    expect(question).toMatchObject({ ope: 1, to: room.tid });
    const sent = { fromAccount: aliceAccid, text: text(question), ext: question?.ext };
    expect(JSON.parse(question?.ext ?? "{}")).toEqual({
      yxAitMsg: {
        [DEMO_BOT_ACCID]: { text: "@顾问 ", segments: [{ start: 0, end: 2, broken: false }] },
        [DEMO_TUTOR_ACCID]: { text: "@导师 ", segments: [{ start: 12, end: 14, broken: false }] },
      },
    });
    expect(addressedBots(sent, bots).map((bot) => bot.accid)).toEqual([DEMO_BOT_ACCID, DEMO_TUTOR_ACCID]);
    expect(textForBot(sent, bots[0]!, bots)).toBe("利率是多少？问问@导师");

    // Bob sees Alice's question with her name; Alice awaits a reply and can stop it.
    await expect.poll(() => bob.getByTestId("other-text").allTextContents()).toContain(sent.text);
    await alice.locator("[data-testid=stop-button]:not([disabled])").waitFor({ timeout: 5_000 });
    await alice.getByTestId("stop-button").click();
    const [, , stop] = await waitForTexts(aliceAccid, 3);
    expect(stop).toMatchObject({ ope: 1, to: room.tid });
    const stopMessage = { fromAccount: aliceAccid, text: text(stop), ext: stop?.ext };
    expect(addressedBots(stopMessage, bots).map((bot) => bot.accid)).toEqual([DEMO_TUTOR_ACCID]);
    expect(textForBot(stopMessage, bots[1]!, bots)).toBe("/stop");

    // A bot's team reply as the bridge sends it: shown once, with the bot's name and the @ of the asker.
    const mention = replyMentionFields({ accid: aliceAccid, nick: "Alice" }, { botName: "顾问" });
    const streamId = "stream-team-1";
    const body = (seq: number, extra: Record<string, unknown>) =>
      JSON.stringify({ kind: "bot_stream", stream_id: streamId, reply_to: question?.msgid, seq, ...extra });
    const signing = { appKey: stack.emulator.settings.appKey, appSecret: stack.emulator.settings.appSecret };
    const send = (form: Record<string, string>) =>
      signedPost(`${stack.emulatorUrl}/nimserver/msg/sendMsg.action`, { form }, signing);
    expect(
      (
        await send({
          from: DEMO_BOT_ACCID,
          ope: "1",
          to: room.tid,
          type: "100",
          body: body(0, { delta: "年利率 2%。", done: false }),
          option: JSON.stringify({ roam: false, history: false, persistent: false, route: false }),
        })
      ).json?.code,
    ).toBe(200);
    await send({
      from: DEMO_BOT_ACCID,
      ope: "1",
      to: room.tid,
      type: "100",
      body: body(1, { delta: "", done: true, status: "ok", text: "年利率 2%。" }),
      ...mention,
    });
    for (const page of [alice, bob]) {
      const reply = page.locator(`[data-testid=bot-bubble][data-status=ok][data-bot=${DEMO_BOT_ACCID}]`);
      await reply.waitFor({ timeout: 5_000 });
      expect(await reply.getByTestId("sender").textContent()).toBe("顾问");
      expect(await reply.getByTestId("reply-mention").textContent()).toBe("@Alice ");
      expect(await reply.getByTestId("bot-text").textContent()).toBe("年利率 2%。");
    }

    // A recall removes the question from everyone's screen.
    const recalled = stack.emulator.state.messages.find((message) => message.msgid === question?.msgid)!;
    const recall = await signedPost(
      `${stack.emulatorUrl}/nimserver/msg/recall.action`,
      {
        form: {
          deleteMsgid: recalled.msgid,
          timetag: String(recalled.timetag),
          type: "8",
          from: aliceAccid,
          to: room.tid,
        },
      },
      signing,
    );
    expect(recall.json?.code).toBe(200);
    await expect
      .poll(() => bob.locator(`[data-msgid="${recalled.msgid}"]`).getAttribute("data-status"))
      .toBe("recalled");

    // Leaving the room for a bot's tab and coming back brings the room's history back.
    await alice.getByTestId("bot-tab").first().click();
    await alice.getByTestId("room-tab").click();
    await expect.poll(() => alice.getByTestId("user-text").allTextContents()).toEqual(["大家好", "@导师 /stop"]);
    expect(pageErrors).toEqual([]);
  });
});
