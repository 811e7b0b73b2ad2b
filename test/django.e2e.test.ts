/**
 * The Django integration for real (examples/django, docs/django.md): Django's own dev server runs
 * the example site, im-bridge runs with `BOT_GENERATOR=http` pointing at the site's generator view,
 * and the NIM emulator plays NIM and the user's browser. A user logs in to the site, gets a NIM
 * login through Django's view (which calls /im/register with a JWT it signs itself), writes to the
 * bot, and the streamed answer comes from Django's `generate_stream_response()`, with history and
 * /reset working. The bridge runs with NIM_TOKEN_MODE=dynamic, so the login is an expiring one.
 *
 * Django comes from Debian's python3-django (CI installs it, see .ci/run). Without it this suite
 * fails under CI=true and is reported as NOT RUN elsewhere, like the PostgreSQL suites.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GatewayTestClient } from "../src/emulator/test-clients.ts";
import { BOT, freePort, type Stack, sleep, startStack } from "./harness.ts";

const SITE_DIRECTORY = join(dirname(fileURLToPath(import.meta.url)), "..", "examples", "django", "web_app");
const GENERATOR_SECRET = "django-e2e-generator-secret";
const JWT_SECRET = "django-e2e-jwt-secret-of-at-least-32-bytes";

/** The first interpreter that can import Django: DJANGO_PYTHON, then python3, then Debian's own. */
function findDjangoPython(): string | undefined {
  const candidates = [process.env.DJANGO_PYTHON, "python3", "/usr/bin/python3"].filter(
    (candidate): candidate is string => Boolean(candidate),
  );
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ["-c", "import django"], { stdio: "ignore" });
    if (probe.status === 0) return candidate;
  }
  return undefined;
}

const python = findDjangoPython();
if (!python) {
  const message = "Django is not installed for any python3: install it with `apt-get install -y python3-django`";
  if (process.env.CI === "true") throw new Error(`CI=true: ${message}`);
  console.warn(`\n${"!".repeat(78)}\n  NOT RUN: test/django.e2e.test.ts. ${message}\n${"!".repeat(78)}\n`);
}

/** One HTTP client with a cookie jar, as the user's browser is for the site. */
class SiteSession {
  private readonly cookies = new Map<string, string>();
  constructor(private readonly baseUrl: string) {}

  async post(path: string, body: unknown, headers: Record<string, string> = {}) {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; "),
        ...headers,
      },
      body: JSON.stringify(body),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const separator = pair!.indexOf("=");
      this.cookies.set(pair!.slice(0, separator), pair!.slice(separator + 1));
    }
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }
}

describe.skipIf(!python)("Django integration (examples/django)", () => {
  let stack: Stack;
  let django: ChildProcess;
  let djangoOutput = "";
  let siteUrl = "";
  const clients: GatewayTestClient[] = [];

  beforeAll(async () => {
    const djangoPort = await freePort();
    siteUrl = `http://127.0.0.1:${djangoPort}`;
    stack = await startStack({
      env: {
        BOT_GENERATOR: "http",
        GENERATOR_HTTP_URL: `http://im-bridge:${GENERATOR_SECRET}@127.0.0.1:${djangoPort}/api/im-bridge/generate`,
        IM_AUTH_JWT_SECRET: JWT_SECRET,
        NIM_TOKEN_MODE: "dynamic",
        NIM_TOKEN_TTL_SECONDS: "3600",
      },
    });
    // NIM copies every message the user sends to the bridge's callback.
    stack.emulator.settings.callbackUrl = `${stack.bridgeUrl}/im/callback`;

    django = spawn(python!, ["manage.py", "runserver", `127.0.0.1:${djangoPort}`, "--noreload"], {
      cwd: SITE_DIRECTORY,
      env: {
        ...process.env,
        DJANGO_SECRET_KEY: "django-e2e-secret-key",
        IM_BRIDGE_URL: stack.bridgeUrl,
        IM_BRIDGE_JWT_SECRET: JWT_SECRET,
        IM_BRIDGE_SECRET: GENERATOR_SECRET,
        PYTHONUNBUFFERED: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    django.stdout?.on("data", (data: Buffer) => {
      djangoOutput += data.toString();
    });
    django.stderr?.on("data", (data: Buffer) => {
      djangoOutput += data.toString();
    });
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (django.exitCode !== null) throw new Error(`Django exited early:\n${djangoOutput}`);
      try {
        await fetch(`${siteUrl}/login`);
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`Django did not start:\n${djangoOutput}`);
        await sleep(100);
      }
    }
  });

  afterAll(async () => {
    for (const client of clients.splice(0)) await client.close();
    if (django && django.exitCode === null) {
      const exited = new Promise((resolve) => django.once("exit", resolve));
      django.kill("SIGTERM");
      await exited;
    }
    await stack?.close();
  });

  /** Logs in to the site and gets the NIM login through Django's view. */
  async function signIn(username: string) {
    const site = new SiteSession(siteUrl);
    const login = await site.post("/login", { username });
    expect(login.status).toBe(200);
    const token = await site.post("/api/im/token", {}, { "x-csrftoken": String(login.body.csrf_token) });
    expect(token.status, djangoOutput.slice(-2000)).toBe(200);
    return {
      site,
      login,
      registration: token.body as { accid: string; token: string; bot: string; expires_at: string },
    };
  }

  async function ask(client: GatewayTestClient, text: string) {
    const clientId = `c-${Math.random()}`;
    client.send({ type: "send", to: BOT, text, clientId });
    const sent = await client.take((frame) => frame.type === "sent" && frame.clientId === clientId);
    expect(sent.code).toBe(200);
    return stack.waitForReply(String(sent.msgid));
  }

  it("registers through Django, streams Django's answer, passes history and honours /reset", async () => {
    const before = Date.now();
    const { registration } = await signIn("alice");
    expect(registration.accid).toBe("u_alice");
    expect(registration.bot).toBe(BOT);
    // NIM_TOKEN_MODE=dynamic: an expiring token, about an hour from now.
    const expiresAt = Date.parse(registration.expires_at);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 3_590_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 3_600_000);

    const user = await GatewayTestClient.connect(stack.emulator.gatewayUrl);
    clients.push(user);
    user.send({ type: "login", accid: registration.accid, token: registration.token, authType: 1 });
    expect(await user.take((frame) => frame.type === "login")).toMatchObject({ code: 200 });

    const first = await ask(user, "你好");
    expect(first.status).toBe("ok");
    expect(first.finalText).toBe(
      [
        "【顾问 Advisor】收到 / received: 你好",
        "我看到了 0 条历史消息 / I see 0 earlier messages.",
        "这是我们对话的开始 / this is the start of our conversation.",
      ].join("\n"),
    );
    // Streamed in pieces, not in one block, and the pieces add up to the answer.
    expect(first.segments.length).toBeGreaterThanOrEqual(2);
    expect(first.deltaText).toBe(first.finalText);

    const second = await ask(user, "我叫 Alice");
    expect(second.finalText).toContain("I see 2 earlier messages.");
    expect(second.finalText).toContain("your previous message was: 你好");

    const reset = await ask(user, "/reset");
    expect(reset.status).toBe("ok");
    expect(reset.finalText).toMatch(/重新开始|cleared/);

    const third = await ask(user, "还记得我吗？");
    expect(third.finalText).toContain("I see 0 earlier messages.");
  });

  it("refuses the token view without a site login, and im-bridge refuses the generator view without its secret", async () => {
    const login = await new SiteSession(siteUrl).post("/login", { username: "bob" });
    // Bob's CSRF token without his cookies: Django's CSRF check (403) or the login check (401) refuses.
    const refused = await fetch(`${siteUrl}/api/im/token`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrftoken": String(login.body.csrf_token) },
      body: "{}",
    });
    expect([401, 403]).toContain(refused.status);

    const unauthenticated = await fetch(`${siteUrl}/api/im-bridge/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: "bob", accid: "u_bob", message: "hi", history: [], system_prompt: "" }),
    });
    expect(unauthenticated.status).toBe(401);
  });
});
