/**
 * The operator console's API end to end (issue 15): the bridge with the NIM emulator and the fake
 * OpenAI server, ADMIN_TOKEN set. Authentication, cookie flags, CSRF and origin checks, the login
 * limit, no secret in any answer, audit rows for every operator action, conversations with timing
 * and sends, live replies over server-sent events, usage and its CSV, budgets, pauses, takeover.
 */
import { request as httpRequest } from "node:http";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APP_SECRET, BOT, SERVICE_KEY, type Stack, sleep, startStack } from "./harness.ts";

const ADMIN_TOKEN = "console-e2e-token-0123456789abcdef";
const PAUSED_NOTE = "暂停中 / paused for now";

async function until<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value) return value;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

class Operator {
  cookie = "";
  csrf = "";
  constructor(private readonly stack: Stack) {}

  get url() {
    return this.stack.bridgeUrl;
  }

  async login(token = ADMIN_TOKEN, headers: Record<string, string> = {}) {
    const response = await fetch(`${this.url}/admin/api/login`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ token }),
    });
    const setCookie = response.headers.get("set-cookie");
    if (response.ok && setCookie) {
      this.cookie = setCookie.split(";")[0] as string;
      this.csrf = ((await response.clone().json()) as { csrfToken: string }).csrfToken;
    }
    return response;
  }

  get(path: string) {
    return fetch(`${this.url}${path}`, { headers: { cookie: this.cookie } });
  }

  post(path: string, body: unknown, headers: Record<string, string> = {}) {
    return fetch(`${this.url}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        cookie: this.cookie,
        "x-csrf-token": this.csrf,
        origin: this.url,
        ...headers,
      },
      body: JSON.stringify(body),
    });
  }

  async json<T>(path: string): Promise<T> {
    const response = await this.get(path);
    expect(response.status, path).toBe(200);
    return (await response.json()) as T;
  }
}

interface Conversation {
  conversationId: string;
  status: string;
  exchanges: Array<{
    msgidServer: string;
    receivedAt: number;
    reply: {
      status: string | null;
      text: string;
      action: string;
      firstSegmentAt: number | null;
      finalAt: number | null;
      sends: Array<{ seq: number; state: string; nimMsgid: string | null }>;
    } | null;
    usage: { totalTokens: number; estimated: boolean } | null;
  }>;
  history: Array<{ role: string; content: string; operator: boolean }>;
  audit: Array<{ event: string; detail: unknown }>;
}

describe("operator console API", () => {
  let stack: Stack;
  let operator: Operator;

  beforeAll(async () => {
    stack = await startStack({
      scenario: { kind: "text", text: "Answer number one, streamed in pieces.", pieces: 6, delayMs: 30 },
      env: {
        ADMIN_TOKEN,
        ADMIN_LOGIN_PER_MINUTE: "4",
        PAUSED_NOTE,
        USAGE_TIME_ZONE: "Asia/Shanghai",
      },
    });
    operator = new Operator(stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  const auditRows = (event: string) => stack.bridge!.repositories.audit.list({ event });

  it("refuses every API call without a session, and a forged or tampered cookie", async () => {
    const anonymous = new Operator(stack);
    expect((await anonymous.get("/admin/api/conversations")).status).toBe(401);
    anonymous.cookie = "im_bridge_admin=eyJzaWQiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5OTk5fQ.AAAA";
    expect((await anonymous.get("/admin/api/session")).status).toBe(401);
    const body = (await (await anonymous.get("/admin/api/usage")).json()) as { error: { code: string } };
    expect(body.error.code).toBe("unauthorized");
    // The page itself is public (it only shows the login form).
    const page = await fetch(`${stack.bridgeUrl}/admin`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
  });

  it("logs in with the token only, sets a strict HTTP-only cookie, and audits both outcomes", async () => {
    const wrong = await new Operator(stack).login("console-e2e-token-0123456789abcdeX");
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    expect(await auditRows("admin.login_failed")).toHaveLength(1);

    const response = await operator.login();
    expect(response.status).toBe(200);
    const cookie = response.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/^im_bridge_admin=[\w-]+\.[\w-]+; /);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Strict");
    expect(cookie).toContain("Path=/admin");
    expect(cookie).toMatch(/Max-Age=28800/);
    // Plain HTTP on the loopback address (development): no Secure flag, or the browser drops it.
    expect(cookie).not.toContain("Secure");
    expect(cookie).not.toContain(ADMIN_TOKEN);
    const logins = await auditRows("admin.login");
    expect(logins).toHaveLength(1);
    expect(logins[0]?.detail).not.toContain(ADMIN_TOKEN);

    const session = await operator.json<{ csrfToken: string; settings: Record<string, unknown> }>("/admin/api/session");
    expect(session.csrfToken).toBe(operator.csrf);
    expect(session.settings.pausedNote).toBe(PAUSED_NOTE);
  });

  it("sets Secure on the cookie when the console is not on the loopback address", async () => {
    // fetch may not set Host, so this one goes through node:http.
    const body = JSON.stringify({ token: ADMIN_TOKEN });
    const cookie = await new Promise<string>((resolve, reject) => {
      const url = new URL(`${stack.bridgeUrl}/admin/api/login`);
      const request = httpRequest(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: "POST",
          headers: { host: "console.example.com", "content-type": "application/json", "content-length": body.length },
        },
        (response) => {
          response.resume();
          resolve(String(response.headers["set-cookie"] ?? ""));
        },
      );
      request.on("error", reject);
      request.end(body);
    });
    expect(cookie).toContain("; Secure");
    expect(cookie).toContain("HttpOnly");
  });

  it("refuses a login from another site's page", async () => {
    const response = await new Operator(stack).login(ADMIN_TOKEN, { origin: "https://evil.example" });
    expect(response.status).toBe(403);
  });

  it("refuses changes without the CSRF token, with another session's token, or from another origin", async () => {
    const target = { scope: "bot", target: BOT, mode: "skip" };
    const missing = await operator.post("/admin/api/pauses", target, { "x-csrf-token": "" });
    expect(missing.status).toBe(403);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe("csrf");
    const other = new Operator(stack);
    await other.login();
    expect((await operator.post("/admin/api/pauses", target, { "x-csrf-token": other.csrf })).status).toBe(403);
    expect((await operator.post("/admin/api/pauses", target, { origin: "https://evil.example" })).status).toBe(403);
    expect((await operator.post("/admin/api/pauses", target, { origin: "null" })).status).toBe(403);
    expect(await stack.bridge!.database.kysely.selectFrom("console_pauses").selectAll().execute()).toEqual([]);
    expect(await auditRows("admin.pause")).toHaveLength(0);
  });

  it("shows a conversation with status, timing, NIM sends, estimated tokens and its audit trail; no secret anywhere", async () => {
    const accid = await stack.register("site-user-alice");
    const asked = await stack.send(accid, "first question");
    const delivered = await stack.waitForReply(asked);
    const conversationId = `p2p:${BOT}:${accid}`;
    const list = await until(async () => {
      const { conversations } = await operator.json<{
        conversations: Array<{ conversationId: string; status: string; siteUserId: string }>;
      }>("/admin/api/conversations?q=alice");
      return conversations.find((row) => row.conversationId === conversationId && row.status === "ok")
        ? conversations
        : undefined;
    }, "the conversation in the list");
    expect(list[0]?.siteUserId).toBe("site-user-alice");
    const none = await operator.json<{ conversations: unknown[] }>("/admin/api/conversations?q=nobody_like_this");
    expect(none.conversations).toEqual([]);
    // LIKE wildcards in the query are taken literally.
    expect((await operator.json<{ conversations: unknown[] }>("/admin/api/conversations?q=%25")).conversations).toEqual(
      [],
    );

    const response = await operator.get(`/admin/api/conversations/${encodeURIComponent(conversationId)}`);
    const raw = await response.text();
    const conversation = JSON.parse(raw) as Conversation;
    const exchange = conversation.exchanges.find((row) => row.msgidServer === asked);
    expect(exchange?.reply?.status).toBe("ok");
    expect(exchange?.reply?.text).toBe(delivered.finalText);
    expect(exchange?.reply?.sends.length).toBe(delivered.segments.length + delivered.finals.length);
    expect(exchange?.reply?.sends.every((send) => send.state === "sent" && send.nimMsgid)).toBe(true);
    expect(exchange?.reply?.firstSegmentAt).toBeGreaterThanOrEqual(exchange?.receivedAt ?? Infinity);
    expect(exchange?.reply?.finalAt).toBeGreaterThanOrEqual(exchange?.reply?.firstSegmentAt ?? Infinity);
    // The fake model reports no usage: the documented estimate is stored and marked.
    expect(exchange?.usage?.estimated).toBe(true);
    expect(exchange?.usage?.totalTokens).toBeGreaterThan(0);
    expect(conversation.audit.map((row) => row.event)).toEqual(
      expect.arrayContaining(["callback.accepted", "reply.final"]),
    );

    const account = await stack.bridge!.repositories.accounts.findByAccid(accid);
    for (const secret of [account?.token ?? "missing", APP_SECRET, ADMIN_TOKEN, SERVICE_KEY, "sk-e2e"]) {
      expect(raw).not.toContain(secret);
      for (const path of [
        "/admin/api/conversations",
        "/admin/api/session",
        "/admin/api/usage",
        "/admin/api/pauses",
        "/admin/api/audit",
      ]) {
        expect(await (await operator.get(path)).text(), path).not.toContain(secret);
      }
    }
  });

  it("streams a reply's deltas to an open console over server-sent events", async () => {
    const accid = await stack.register("site-user-live");
    const conversationId = `p2p:${BOT}:${accid}`;
    const controller = new AbortController();
    const response = await fetch(
      `${stack.bridgeUrl}/admin/api/events?conversation=${encodeURIComponent(conversationId)}`,
      { headers: { cookie: operator.cookie }, signal: controller.signal },
    );
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    const events: Array<{ type: string; text?: string; status?: string; conversationId?: string }> = [];
    let buffer = "";
    const reading = (async () => {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let index = buffer.indexOf("\n\n");
        while (index >= 0) {
          const block = buffer.slice(0, index);
          buffer = buffer.slice(index + 2);
          const data = block.split("\n").find((line) => line.startsWith("data: "));
          if (data) events.push(JSON.parse(data.slice(6)));
          index = buffer.indexOf("\n\n");
        }
      }
    })().catch(() => {});
    // Another conversation's reply must not reach this stream.
    const otherAccid = await stack.register("site-user-other");
    const asked = await stack.send(accid, "live question");
    await stack.send(otherAccid, "other question");
    const delivered = await stack.waitForReply(asked);
    await until(() => events.find((event) => event.type === "finished"), "the finished event");
    controller.abort();
    await reading;
    const deltas = events.filter((event) => event.type === "delta");
    expect(deltas.length).toBeGreaterThanOrEqual(2);
    expect(deltas.map((event) => event.text).join("")).toBe(delivered.deltaText);
    expect(events.every((event) => event.conversationId === conversationId)).toBe(true);
    expect(events.at(-1)).toMatchObject({ type: "finished", status: "ok" });
  });

  it("pauses a conversation (stored, not answered), then with the note, and resumes; each change audited", async () => {
    const accid = await stack.register("site-user-paused");
    const conversationId = `p2p:${BOT}:${accid}`;
    expect(
      (await operator.post("/admin/api/pauses", { scope: "conversation", target: conversationId, mode: "skip" }))
        .status,
    ).toBe(200);
    const silent = await stack.send(accid, "are you there?");
    await until(
      async () => (await stack.bridge!.repositories.inbox.get(silent))?.status === "done",
      "the paused message to be done",
    );
    expect(stack.delivered(silent).messages).toEqual([]);
    const skipped = await auditRows("reply.skipped");
    expect(skipped.find((row) => row.subject === silent)?.detail).toContain('"reason":"paused"');

    await operator.post("/admin/api/pauses", { scope: "conversation", target: conversationId, mode: "note" });
    const noted = await stack.send(accid, "hello?");
    const note = await stack.waitForReply(noted);
    expect(note.finalText).toBe(PAUSED_NOTE);
    expect(note.status).toBe("ok");

    expect(
      (await operator.post("/admin/api/pauses/resume", { scope: "conversation", target: conversationId })).status,
    ).toBe(200);
    const answered = await stack.send(accid, "now?");
    expect((await stack.waitForReply(answered)).finalText).toBe("Answer number one, streamed in pieces.");
    const events = (await auditRows("admin.pause")).filter((row) => row.subject === conversationId);
    expect(events.map((row) => JSON.parse(row.detail ?? "{}").mode)).toEqual(["skip", "note"]);
    expect((await auditRows("admin.resume")).some((row) => row.subject === conversationId)).toBe(true);
  });

  it("pauses a whole bot and rejects bad pause requests", async () => {
    expect(
      (await operator.post("/admin/api/pauses", { scope: "bot", target: "Not A Bot!", mode: "skip" })).status,
    ).toBe(400);
    expect((await operator.post("/admin/api/pauses", { scope: "bot", target: BOT, mode: "takeover" })).status).toBe(
      400,
    );
    expect((await operator.post("/admin/api/pauses", { scope: "team", target: BOT })).status).toBe(400);
    expect((await operator.post("/admin/api/pauses", { scope: "bot", target: BOT, mode: "skip" })).status).toBe(200);
    const accid = await stack.register("site-user-botpause");
    const asked = await stack.send(accid, "anyone?");
    await until(async () => (await stack.bridge!.repositories.inbox.get(asked))?.status === "done", "done");
    expect(stack.delivered(asked).messages).toEqual([]);
    await operator.post("/admin/api/pauses/resume", { scope: "bot", target: BOT });
    const pauses = await operator.json<{ pauses: unknown[]; bots: string[] }>("/admin/api/pauses");
    expect(pauses.pauses).toEqual([]);
    expect(pauses.bots).toContain(BOT);
  });

  it("takes a conversation over: the operator's text reaches the user as the bot, the model sees it after the hand-back", async () => {
    const accid = await stack.register("site-user-takeover");
    const conversationId = `p2p:${BOT}:${accid}`;
    const path = `/admin/api/conversations/${encodeURIComponent(conversationId)}`;
    // Writing needs a takeover first.
    expect((await operator.post(`${path}/messages`, { text: "hi" })).status).toBe(409);
    expect((await operator.post(`${path}/takeover`, {})).status).toBe(200);
    const question = await stack.send(accid, "I need a human");
    await until(async () => (await stack.bridge!.repositories.inbox.get(question))?.status === "done", "done");
    expect((await operator.post(`${path}/messages`, { text: "" })).status).toBe(400);
    expect((await operator.post(`${path}/messages`, { text: "x".repeat(5000) })).status).toBe(400);
    const sent = await operator.post(`${path}/messages`, { text: "人工客服：你好，我来帮你。" });
    expect(sent.status).toBe(200);
    const [message] = await stack.emulator.state.waitForMessages({ from: BOT, to: accid, type: 0, count: 1 });
    expect(JSON.parse(message?.body ?? "{}")).toEqual({ msg: "人工客服：你好，我来帮你。" });
    expect((await auditRows("admin.takeover")).some((row) => row.subject === conversationId)).toBe(true);
    const sentRows = (await auditRows("admin.message_sent")).filter((row) => row.subject === conversationId);
    expect(sentRows).toHaveLength(1);
    expect(sentRows[0]?.detail).toContain(message?.msgid ?? "missing");

    const conversation = await operator.json<Conversation>(path);
    expect(conversation.history.filter((turn) => turn.operator).map((turn) => turn.content)).toEqual([
      "人工客服：你好，我来帮你。",
    ]);
    expect(conversation.audit.map((row) => row.event)).toEqual(
      expect.arrayContaining(["admin.takeover", "admin.message_sent"]),
    );

    await operator.post("/admin/api/pauses/resume", { scope: "conversation", target: conversationId });
    const before = stack.openai.requests.length;
    const after = await stack.send(accid, "thanks, and one more thing");
    await stack.waitForReply(after);
    const prompt = stack.openai.requests[before]?.body?.messages.map((turn) => turn.content) ?? [];
    expect(prompt).toEqual(
      expect.arrayContaining(["I need a human", "人工客服：你好，我来帮你。", "thanks, and one more thing"]),
    );
  });

  it("reports usage per day with top users, exports CSV, and audits the export", async () => {
    const usage = await operator.json<{
      days: Array<{ day: string; totalTokens: number; replies: number }>;
      topUsers: Array<{ userAccid: string; totalTokens: number }>;
      timeZone: string;
    }>("/admin/api/usage?days=7");
    expect(usage.days).toHaveLength(7);
    expect(usage.timeZone).toBe("Asia/Shanghai");
    const today = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai" }).format(new Date());
    expect(usage.days.at(-1)?.day).toBe(today);
    expect(usage.days.at(-1)?.totalTokens).toBeGreaterThan(0);
    expect(usage.topUsers.length).toBeGreaterThan(0);
    const response = await operator.get("/admin/api/usage.csv?days=7");
    expect(response.headers.get("content-type")).toContain("text/csv");
    expect(response.headers.get("content-disposition")).toMatch(/attachment; filename="im-bridge-usage-.*\.csv"/);
    const lines = (await response.text()).trim().split("\r\n");
    expect(lines[0]).toBe("day,bot,user,replies,prompt_tokens,completion_tokens,total_tokens,estimated_replies");
    expect(lines.slice(1).every((line) => line.startsWith("20") && line.includes(BOT))).toBe(true);
    expect(await auditRows("admin.usage_exported")).toHaveLength(1);
  });

  it("limits login attempts per address with 429 and Retry-After", async () => {
    // Four attempts a minute: earlier tests used some; keep trying until refused.
    let response: Response | undefined;
    for (let attempt = 0; attempt < 6; attempt += 1) {
      response = await new Operator(stack).login("wrong-token-wrong-token");
      if (response.status === 429) break;
    }
    expect(response?.status).toBe(429);
    expect(Number(response?.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("logs out: the cookie is cleared and the logout audited", async () => {
    const response = await operator.post("/admin/api/logout", {});
    expect(response.status).toBe(200);
    expect(response.headers.get("set-cookie")).toMatch(/^im_bridge_admin=; .*Max-Age=0/);
    expect(await auditRows("admin.logout")).toHaveLength(1);
  });
});

describe("operator console login with the site's JWT (ADMIN_JWT_CLAIM)", () => {
  const SITE_SECRET = "site-jwt-secret-for-the-console-test";
  const sign = (claims: Record<string, unknown>, options: { secret?: string; expiresIn?: string } = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("ops-lead")
      .setIssuedAt()
      .setExpirationTime(options.expiresIn ?? "5m")
      .sign(new TextEncoder().encode(options.secret ?? SITE_SECRET));

  it("logs in with a JWT whose admin claim is true, and refuses every other JWT", async () => {
    const stack = await startStack({
      env: { ADMIN_TOKEN, IM_AUTH_JWT_SECRET: SITE_SECRET, ADMIN_JWT_CLAIM: "im_admin", ADMIN_LOGIN_PER_MINUTE: "0" },
    });
    try {
      const login = (body: unknown) =>
        fetch(`${stack.bridgeUrl}/admin/api/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      const admin = await sign({ im_admin: true });
      const accepted = await login({ jwt: admin });
      expect(accepted.status).toBe(200);
      expect(accepted.headers.get("set-cookie")).toContain("HttpOnly");
      // Typed into the login page's one field, a JWT works as well.
      expect((await login({ token: admin })).status).toBe(200);
      for (const refused of [
        await sign({ im_admin: "true" }),
        await sign({}),
        await sign({ im_admin: true }, { secret: "another-site-secret-entirely" }),
        await sign({ im_admin: true }, { expiresIn: "-5m" }),
        "not.a.jwt",
      ]) {
        expect((await login({ jwt: refused })).status).toBe(401);
      }
      const logins = await stack.bridge!.repositories.audit.list({ event: "admin.login" });
      expect(logins.map((row) => [row.subject, JSON.parse(row.detail ?? "{}").method])).toEqual([
        ["ops-lead", "jwt"],
        ["ops-lead", "jwt"],
      ]);
      expect(await stack.bridge!.repositories.audit.list({ event: "admin.login_failed" })).toHaveLength(5);
    } finally {
      await stack.close();
    }
  });
});

describe("operator console shutdown", () => {
  it("ends open event streams when the bridge closes, so shutdown does not wait for them", async () => {
    const stack = await startStack({ env: { ADMIN_TOKEN } });
    let closed = false;
    try {
      const operator = new Operator(stack);
      await operator.login();
      const response = await fetch(`${stack.bridgeUrl}/admin/api/events`, { headers: { cookie: operator.cookie } });
      const reader = response.body!.getReader();
      await reader.read(); // ": connected"
      const ended = (async () => {
        while (!(await reader.read()).done) {
          // keep reading until the server ends the stream
        }
        return "ended";
      })();
      const startedAt = Date.now();
      await stack.close();
      closed = true;
      expect(await ended).toBe("ended");
      expect(Date.now() - startedAt).toBeLessThan(5_000);
    } finally {
      if (!closed) await stack.close();
    }
  });
});

describe("operator console switched off", () => {
  it("serves no /admin route without ADMIN_TOKEN, and a daily budget still answers limited", async () => {
    const stack = await startStack({
      scenario: { kind: "text", text: "Budgeted answer.", pieces: 2, delayMs: 5 },
      env: { USER_DAILY_TOKEN_BUDGET: "1" },
    });
    try {
      expect((await fetch(`${stack.bridgeUrl}/admin`)).status).toBe(404);
      expect((await fetch(`${stack.bridgeUrl}/admin/api/session`)).status).toBe(404);
      const accid = await stack.register("site-user-budget");
      const first = await stack.send(accid, "first");
      expect((await stack.waitForReply(first)).status).toBe("ok");
      const second = await stack.send(accid, "second");
      const refused = await stack.waitForReply(second);
      expect(refused.status).toBe("limited");
      expect(refused.finalText).toContain("额度");
      expect(refused.finalText).toContain("budget");
      const limited = await stack.bridge!.repositories.audit.list({ event: "reply.limited" });
      expect(limited[0]?.detail).toContain('"reason":"token-budget"');
      // Another user is not affected.
      const other = await stack.register("site-user-budget-2");
      expect((await stack.waitForReply(await stack.send(other, "hi"))).status).toBe("ok");
    } finally {
      await stack.close();
    }
  });
});
