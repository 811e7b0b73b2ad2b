/**
 * The console's live view across instances (issue 15): an `http`-role instance serves /admin, a
 * `worker`-role instance produces the replies, both with ADMIN_TOKEN, sharing PostgreSQL and Redis.
 * The reply's deltas reach the http instance's event stream over Redis pub/sub, and its usage row
 * (written by the worker) shows on the http instance's usage page.
 */

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newMessageIdServer } from "../src/callback/build.ts";
import { sleep } from "./harness.ts";
import { MultiStack } from "./multi-stack.ts";
import { POSTGRES_URL, REDIS_URL, services } from "./services.ts";

const ADMIN_TOKEN = "roles-console-token-0123456789";
const ANSWER = "Worker answer, relayed to the http instance's console.";

describe.runIf(services.postgres && services.redis)("console across serve roles (PostgreSQL + Redis)", () => {
  let stack: MultiStack;

  beforeAll(async () => {
    stack = new MultiStack({
      labels: ["HTTP", "WORKER"],
      postgresUrl: POSTGRES_URL,
      redisUrl: REDIS_URL,
      scenario: { kind: "text", text: ANSWER, pieces: 5, delayMs: 20 },
      env: { ADMIN_TOKEN },
      envByLabel: { HTTP: { SERVE_ROLE: "http" }, WORKER: { SERVE_ROLE: "worker" } },
    });
    await stack.start();
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
  }, 60_000);

  it("shows a worker's reply live on the http instance and counts its tokens", async () => {
    const http = stack.instance("HTTP");
    const login = await fetch(`${http.url}/admin/api/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: ADMIN_TOKEN }),
    });
    expect(login.status).toBe(200);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] as string;
    const controller = new AbortController();
    const stream = await fetch(`${http.url}/admin/api/events`, { headers: { cookie }, signal: controller.signal });
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    const events: Array<{ type: string; text?: string; status?: string }> = [];
    let buffer = "";
    const reading = (async () => {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        for (let index = buffer.indexOf("\n\n"); index >= 0; index = buffer.indexOf("\n\n")) {
          const data = buffer
            .slice(0, index)
            .split("\n")
            .find((line) => line.startsWith("data: "));
          buffer = buffer.slice(index + 2);
          if (data) events.push(JSON.parse(data.slice(6)));
        }
      }
    })().catch(() => {});

    const accid = await http.register(`console-roles-${stack.schema}`);
    const msgid = newMessageIdServer();
    expect(await http.deliver(accid, "hello from the http side", msgid)).toBe(200);
    const deadline = Date.now() + 20_000;
    while (!events.some((event) => event.type === "finished") && Date.now() < deadline) await sleep(25);
    controller.abort();
    await reading;
    expect(
      events
        .filter((event) => event.type === "delta")
        .map((event) => event.text)
        .join(""),
    ).toBe(ANSWER);
    expect(events.find((event) => event.type === "finished")?.status).toBe("ok");
    // Only the worker sent to NIM.
    expect(new Set(stack.calls.filter((call) => call.stream).map((call) => call.instance))).toEqual(
      new Set(["WORKER"]),
    );

    const usage = (await (await fetch(`${http.url}/admin/api/usage?days=1`, { headers: { cookie } })).json()) as {
      days: Array<{ totalTokens: number; replies: number }>;
    };
    expect(usage.days[0]?.replies).toBe(1);
    expect(usage.days[0]?.totalTokens).toBeGreaterThan(0);
  });
});
