/**
 * The wired hardening features, end to end over real ports: the callback source guard (allow-list
 * and trusted proxies), register limits per IP and per user, reply limits, input and output
 * moderation, NIM's antispam flag, /metrics, /readyz and the body-size and content-type refusals.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildMessageCopy } from "../src/callback/build.ts";
import { blockedText } from "../src/reply/messages.ts";
import {
  BOT,
  type DeliveredReply,
  SERVICE_KEY,
  type Stack,
  signedCallbackHeaders,
  sleep,
  startStack,
} from "./harness.ts";

function expectWellFormed(reply: DeliveredReply) {
  const bySeq = new Map<number, string>();
  for (const { body } of reply.messages) {
    const serialized = JSON.stringify(body);
    const earlier = bySeq.get(body.seq);
    if (earlier !== undefined) expect(serialized).toBe(earlier);
    bySeq.set(body.seq, serialized);
  }
  const seqs = [...bySeq.keys()].sort((left, right) => left - right);
  expect(seqs).toEqual([...seqs.keys()]);
  expect(new Set(reply.messages.filter((entry) => entry.body.done).map((entry) => entry.body.seq)).size).toBe(1);
  expect(reply.deltaText).toBe(reply.finalText);
}

/** The contract's error shape, as JSON. */
async function expectJsonError(response: Response, status: number, code?: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type") ?? "").toMatch(/^application\/json/);
  const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
  expect(typeof body.error?.code).toBe("string");
  expect(typeof body.error?.message).toBe("string");
  if (code !== undefined) expect(body.error?.code).toBe(code);
  return body.error as { code: string; message: string };
}

function validation(stack: Stack, extraHeaders: Record<string, string> = {}) {
  const body = "{}";
  return fetch(`${stack.bridgeUrl}/im/callback`, {
    method: "POST",
    headers: { ...signedCallbackHeaders(body), ...extraHeaders },
    body,
  });
}

function registerRequest(stack: Stack, userId: string, headers: Record<string, string> = {}) {
  return fetch(`${stack.bridgeUrl}/im/register`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY, ...headers },
    body: JSON.stringify({ user_id: userId }),
  });
}

async function auditRows(stack: Stack, event: string, minimum = 1) {
  const deadline = Date.now() + 3_000;
  let rows = await stack.bridge!.repositories.audit.list({ event });
  // The source guard records its audit row without holding up the 403.
  while (rows.length < minimum && Date.now() < deadline) {
    await sleep(20);
    rows = await stack.bridge!.repositories.audit.list({ event });
  }
  return rows.map((row) => ({ ...row, detail: JSON.parse(row.detail ?? "null") as Record<string, unknown> }));
}

/** Sum of every sample of one metric whose labels contain all of `labels`. */
async function metricSum(stack: Stack, name: string, labels: Record<string, string> = {}): Promise<number> {
  const response = await fetch(`${stack.bridgeUrl}/metrics`);
  expect(response.status).toBe(200);
  let sum = 0;
  for (const line of (await response.text()).split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = /\{([^}]*)\}/.exec(line)?.[1] ?? "";
    if (Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

describe("callback source guard: CALLBACK_ALLOWED_IPS=10.0.0.0/8, no trusted proxy", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { CALLBACK_ALLOWED_IPS: "10.0.0.0/8" } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("refuses a correctly signed callback from 127.0.0.1 with 403 and an audit row", async () => {
    const error = await expectJsonError(await validation(stack), 403, "forbidden_source");
    expect(error.message).toContain("127.0.0.1");
    const rows = await auditRows(stack, "callback.rejected");
    expect(rows).toHaveLength(1);
    expect(rows[0]!.detail).toMatchObject({ reason: "source-address", ip: "127.0.0.1" });
    expect(await metricSum(stack, "im_bridge_callbacks_total", { outcome: "rejected" })).toBe(1);
  });

  it("does not believe X-Forwarded-For from a peer that is not a trusted proxy", async () => {
    await expectJsonError(await validation(stack, { "x-forwarded-for": "10.1.2.3" }), 403, "forbidden_source");
    const rows = await auditRows(stack, "callback.rejected", 2);
    expect(rows.map((row) => row.detail.ip)).toEqual(["127.0.0.1", "127.0.0.1"]);
  });

  it("refuses before anything is written or sent, and keeps serving /healthz", async () => {
    const msgid = "1200000000123";
    const body = JSON.stringify(buildMessageCopy({ from: "u_someone", to: BOT, body: "hi", msgidServer: msgid }));
    const response = await fetch(`${stack.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: signedCallbackHeaders(body),
      body,
    });
    await expectJsonError(response, 403, "forbidden_source");
    expect(await stack.bridge!.repositories.inbox.get(msgid)).toBeUndefined();
    expect(stack.emulator.state.messagesMatching({ from: BOT })).toHaveLength(0);
    expect((await fetch(`${stack.bridgeUrl}/healthz`)).status).toBe(200);
  });
});

describe("callback source guard behind a trusted proxy (TRUSTED_PROXIES=127.0.0.1)", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { CALLBACK_ALLOWED_IPS: "10.0.0.0/8", TRUSTED_PROXIES: "127.0.0.1" } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("believes the client address our proxy put in X-Forwarded-For", async () => {
    const response = await validation(stack, { "x-forwarded-for": "10.1.2.3" });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });

  it("serves a real message that came through the proxy", async () => {
    const accid = await stack.register("proxied");
    const body = JSON.stringify(buildMessageCopy({ from: accid, to: BOT, body: "hi", msgidServer: "1200000000777" }));
    const response = await fetch(`${stack.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: { ...signedCallbackHeaders(body), "x-forwarded-for": "10.9.9.9" },
      body,
    });
    expect(response.status).toBe(200);
    const reply = await stack.waitForReply("1200000000777");
    expectWellFormed(reply);
    expect(reply.status).toBe("ok");
  });

  it("refuses an outside client the proxy reports, and a spoofed entry left of it", async () => {
    await expectJsonError(await validation(stack, { "x-forwarded-for": "8.8.8.8" }), 403, "forbidden_source");
    // The client wrote "10.1.2.3" itself; the proxy appended the real peer 8.8.8.8.
    await expectJsonError(await validation(stack, { "x-forwarded-for": "10.1.2.3, 8.8.8.8" }), 403, "forbidden_source");
    // Without the header the peer (the proxy itself, 127.0.0.1) is the client: not allowed.
    await expectJsonError(await validation(stack), 403, "forbidden_source");
    const rows = await auditRows(stack, "callback.rejected", 3);
    expect(rows.map((row) => row.detail.ip)).toEqual(["8.8.8.8", "8.8.8.8", "127.0.0.1"]);
    expect(rows.every((row) => row.detail.reason === "source-address")).toBe(true);
  });
});

describe("register limits", () => {
  let stack: Stack | undefined;
  afterAll(async () => {
    await stack?.close();
  });

  it("per IP (REGISTER_LIMIT_PER_IP_PER_MINUTE=3): the 4th call gets 429 with Retry-After, spoofing XFF does not help", async () => {
    stack = await startStack({
      env: { REGISTER_LIMIT_PER_IP_PER_MINUTE: "3", REGISTER_LIMIT_PER_USER_PER_MINUTE: "100" },
    });
    // startStack itself does not register; three different users use up the address's minute.
    for (const user of ["ip-a", "ip-b", "ip-c"]) expect((await registerRequest(stack, user)).status).toBe(200);
    const accountsBefore = await stack.bridge!.repositories.accounts.count();
    const nimAccountsBefore = stack.emulator.state.accounts.size;

    const refused = await registerRequest(stack, "ip-d");
    await expectJsonError(refused, 429, "rate_limited");
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);

    // X-Forwarded-For is not believed without TRUSTED_PROXIES: same address, same limit.
    await expectJsonError(await registerRequest(stack, "ip-e", { "x-forwarded-for": "1.2.3.4" }), 429, "rate_limited");
    // Also anonymous calls are counted (a password-guessing loop is slowed down the same way).
    await expectJsonError(await registerRequest(stack, "ip-f", { "x-api-key": "wrong" }), 429, "rate_limited");

    expect(await stack.bridge!.repositories.accounts.count()).toBe(accountsBefore);
    expect(stack.emulator.state.accounts.size).toBe(nimAccountsBefore);
    // The callback route is not limited by the register limit.
    expect((await validation(stack)).status).toBe(200);
    await stack.close();
    stack = undefined;
  });

  it("per user (REGISTER_LIMIT_PER_USER_PER_MINUTE=2): the same user's 3rd call gets 429, another user is fine", async () => {
    stack = await startStack({
      env: { REGISTER_LIMIT_PER_IP_PER_MINUTE: "100", REGISTER_LIMIT_PER_USER_PER_MINUTE: "2" },
    });
    const first = await registerRequest(stack, "alice");
    expect(first.status).toBe(200);
    const { accid, token } = (await first.json()) as { accid: string; token: string };
    expect((await registerRequest(stack, "alice")).status).toBe(200);
    const refused = await registerRequest(stack, "alice");
    const error = await expectJsonError(refused, 429, "rate_limited");
    expect(error.message).toMatch(/retry in \d+ s/);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get("cache-control")).toBe("no-store");
    // The refused call changed nothing: same accid, same token at NIM.
    expect(stack.emulator.state.findAccount(accid)?.token).toBe(token);
    expect((await registerRequest(stack, "bob")).status).toBe(200);
  });
});

describe("reply limit (REPLY_LIMIT_PER_MINUTE=2)", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      env: { REPLY_LIMIT_PER_MINUTE: "2" },
      scenario: { kind: "text", text: "A short answer.", pieces: 2, delayMs: 5 },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("answers the third message of a minute with status limited, without calling the generator", async () => {
    const accid = await stack.register("chatty");
    const statuses: Array<string | undefined> = [];
    for (const text of ["one", "two", "three"]) {
      const reply = await stack.waitForReply(await stack.send(accid, text));
      expectWellFormed(reply);
      statuses.push(reply.status);
    }
    expect(statuses).toEqual(["ok", "ok", "limited"]);
    expect(stack.openai.requests).toHaveLength(2);
    const limited = await auditRows(stack, "reply.limited");
    expect(limited).toHaveLength(1);
    // Another user has their own allowance.
    const other = await stack.register("quiet");
    expect((await stack.waitForReply(await stack.send(other, "hello"))).status).toBe("ok");
    expect(stack.openai.requests).toHaveLength(3);
  });
});

describe("moderation: keyword file, output windows, NIM antispam", () => {
  const KEYWORD = "forbiddenword";
  let stack: Stack;
  let directory: string;
  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-moderation-"));
    const file = join(directory, "keywords.txt");
    writeFileSync(file, `# test list\n${KEYWORD}\n违禁词\n`);
    stack = await startStack({
      env: { MODERATION_KEYWORDS_FILE: file },
      scenario: { kind: "text", text: "A harmless answer.", pieces: 2, delayMs: 5 },
    });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(directory, { recursive: true, force: true });
  });

  it("blocks input containing a keyword: status blocked, generator not called", async () => {
    const accid = await stack.register("mod-in");
    const before = stack.openai.requests.length;
    for (const text of [`please say ${KEYWORD.toUpperCase()} now`, "这里有违 禁词"]) {
      const reply = await stack.waitForReply(await stack.send(accid, text));
      expectWellFormed(reply);
      expect(reply.status).toBe("blocked");
      expect(reply.finalText).toBe(blockedText);
    }
    expect(stack.openai.requests.length).toBe(before);
    const rows = await auditRows(stack, "reply.blocked", 2);
    expect(rows.every((row) => row.detail.stage === "input")).toBe(true);
  });

  it("blocks output with the keyword in its middle: no message containing it reaches NIM", async () => {
    const answer =
      "The first part of this answer is perfectly fine and long enough to stream. " +
      `Then it says ${KEYWORD} right in the middle, ` +
      "and then it goes on with more text that nobody should ever see after the block.";
    stack.openai.setScenario({ kind: "text", text: answer, pieces: 24, delayMs: 15 });
    const accid = await stack.register("mod-out");
    const before = stack.openai.requests.length;
    const reply = await stack.waitForReply(await stack.send(accid, "tell me something"));
    expectWellFormed(reply);
    expect(stack.openai.requests.length).toBe(before + 1);
    expect(reply.status).toBe("blocked");
    for (const { message } of reply.messages) expect(message.body.toLowerCase()).not.toContain(KEYWORD);
    expect(reply.finalText.toLowerCase()).not.toContain(KEYWORD);
    expect(reply.finalText.endsWith(blockedText)).toBe(true);
    expect(reply.finalText).not.toContain("nobody should ever see");
    // Not even the start of the term: the text just before a window is held back until checked.
    expect(reply.finalText).not.toContain(`says ${KEYWORD.slice(0, 2)}`);
    // Blocked mid-stream: the harmless start was already shown, then the apology.
    expect(reply.finalText.startsWith("The first part")).toBe(true);
    expect(reply.segments.length).toBeGreaterThanOrEqual(3);
    const rows = await auditRows(stack, "reply.blocked", 3);
    expect(rows.some((row) => row.detail.stage === "output")).toBe(true);
    stack.openai.setScenario({ kind: "text", text: "A harmless answer.", pieces: 2, delayMs: 5 });
  });

  it('treats NIM\'s antispam:"true" flag as blocked input', async () => {
    const accid = await stack.register("mod-nim");
    const before = stack.openai.requests.length;
    const msgid = "1200000000999";
    const copy = { ...buildMessageCopy({ from: accid, to: BOT, body: "harmless looking", msgidServer: msgid }) };
    copy["antispam"] = "true";
    const response = await stack.postCallback(JSON.stringify(copy));
    expect(response.status).toBe(200);
    const reply = await stack.waitForReply(msgid);
    expectWellFormed(reply);
    expect(reply.status).toBe("blocked");
    expect(stack.openai.requests.length).toBe(before);
    // The same text without the flag is answered.
    expect((await stack.waitForReply(await stack.send(accid, "harmless looking"))).status).toBe("ok");
  });
});

describe("metrics, readiness and request refusals", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ scenario: { kind: "text", text: "Counted answer.", pieces: 2, delayMs: 5 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("/readyz answers 200 and /healthz too", async () => {
    const ready = await fetch(`${stack.bridgeUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ok: true });
    expect((await fetch(`${stack.bridgeUrl}/healthz`)).status).toBe(200);
  });

  it("/metrics shows im_bridge_callbacks_total and im_bridge_replies_total moving", async () => {
    const response = await fetch(`${stack.bridgeUrl}/metrics`);
    expect(response.headers.get("content-type") ?? "").toMatch(/^text\/plain/);
    const text = await response.text();
    expect(text).toContain("# TYPE im_bridge_callbacks_total counter");
    expect(text).toContain("# TYPE im_bridge_replies_total counter");

    const accepted = await metricSum(stack, "im_bridge_callbacks_total", { outcome: "accepted" });
    const duplicate = await metricSum(stack, "im_bridge_callbacks_total", { outcome: "duplicate" });
    const rejected = await metricSum(stack, "im_bridge_callbacks_total", { outcome: "rejected" });
    const okReplies = await metricSum(stack, "im_bridge_replies_total", { status: "ok" });

    const accid = await stack.register("counted");
    const msgid = await stack.send(accid, "count me");
    await stack.send(accid, "count me", msgid);
    await stack.waitForReply(msgid);
    const forged = await fetch(`${stack.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: { "content-type": "application/json", MD5: "0".repeat(32), CheckSum: "0".repeat(40), CurTime: "1" },
      body: "{}",
    });
    expect(forged.status).toBe(401);

    const deadline = Date.now() + 3_000;
    while ((await metricSum(stack, "im_bridge_replies_total", { status: "ok" })) === okReplies) {
      if (Date.now() > deadline) break;
      await sleep(20);
    }
    expect(await metricSum(stack, "im_bridge_callbacks_total", { outcome: "accepted" })).toBe(accepted + 1);
    expect(await metricSum(stack, "im_bridge_callbacks_total", { outcome: "duplicate" })).toBe(duplicate + 1);
    expect(await metricSum(stack, "im_bridge_callbacks_total", { outcome: "rejected" })).toBe(rejected + 1);
    expect(await metricSum(stack, "im_bridge_replies_total", { status: "ok" })).toBe(okReplies + 1);
    // Nothing secret or per-user in the exposition.
    const after = await (await fetch(`${stack.bridgeUrl}/metrics`)).text();
    expect(after).not.toContain(accid);
    expect(after).not.toContain("e2e-app-secret");
  });

  it("refuses a body over HTTP_BODY_LIMIT_BYTES with 413 JSON on /im/callback", async () => {
    const body = JSON.stringify({ eventType: "1", padding: "x".repeat(70_000) });
    const response = await fetch(`${stack.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: signedCallbackHeaders(body),
      body,
    });
    await expectJsonError(response, 413, "body_too_large");
  });

  it("refuses a register body over its 16 KiB limit with 413 JSON", async () => {
    const response = await fetch(`${stack.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": SERVICE_KEY },
      body: JSON.stringify({ user_id: "big", name: "n", padding: "x".repeat(20_000) }),
    });
    await expectJsonError(response, 413, "body_too_large");
  });

  it("refuses a wrong content type with 415 JSON on both endpoints", async () => {
    const body = "{}";
    const callback = await fetch(`${stack.bridgeUrl}/im/callback`, {
      method: "POST",
      headers: { ...signedCallbackHeaders(body), "content-type": "text/plain" },
      body,
    });
    await expectJsonError(callback, 415, "unsupported_media_type");
    const form = await fetch(`${stack.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-api-key": SERVICE_KEY },
      body: "user_id=alice",
    });
    await expectJsonError(form, 415, "unsupported_media_type");
    const text = await fetch(`${stack.bridgeUrl}/im/register`, {
      method: "POST",
      headers: { "content-type": "text/plain", "x-api-key": SERVICE_KEY },
      body: JSON.stringify({ user_id: "alice" }),
    });
    await expectJsonError(text, 415, "unsupported_media_type");
    expect(await stack.bridge!.repositories.accounts.count()).toBe(1);
  });
});
