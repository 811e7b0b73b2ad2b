import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHttpApp } from "../http/app.ts";
import { createLogger } from "../http/logger.ts";
import { accidForSiteUser } from "../register/accid.ts";
import type { DemoRoom } from "./demo-room.ts";
import { demoSiteRoutes } from "./demo-site.ts";

const jwtSecret = "demo-site-test-secret-0123456789abcdef";
const directory = mkdtempSync(join(tmpdir(), "im-bridge-demo-site-"));
writeFileSync(join(directory, "index.html"), "<!doctype html><title>demo</title>");

const joined: string[] = [];
const room: DemoRoom = {
  async join(accid) {
    if (accid === accidForSiteUser("broken")) throw new Error("team/add failed: secret detail");
    joined.push(accid);
    return { tid: "1500000000", name: "演示群" };
  },
};

async function app(withRoom: boolean): Promise<FastifyInstance> {
  return buildHttpApp({
    logger: createLogger({ level: "silent" }),
    bodyLimitBytes: 64 * 1024,
    routes: [
      demoSiteRoutes({
        webDirectory: directory,
        clientBundle: "export {}",
        jwtSecret,
        botAccid: "advisor_bot",
        bots: [
          { accid: "advisor_bot", name: "顾问" },
          { accid: "tutor_bot", name: "导师" },
        ],
        ...(withRoom && { room, storageUrl: () => "http://127.0.0.1:1" }),
        generator: "demo",
        gatewayUrl: () => "ws://127.0.0.1:1/gateway",
      }),
    ],
  });
}

let withRoom: FastifyInstance;
let withoutRoom: FastifyInstance;
beforeAll(async () => {
  [withRoom, withoutRoom] = await Promise.all([app(true), app(false)]);
});
afterAll(async () => {
  await Promise.all([withRoom.close(), withoutRoom.close()]);
  rmSync(directory, { recursive: true, force: true });
});

async function loginToken(name: string): Promise<string> {
  const response = await withRoom.inject({ method: "POST", url: "/demo/login", payload: { name } });
  return response.json<{ token: string }>().token;
}

describe("attachments", () => {
  it("tells the page where to upload, and lets it load pictures from there and nowhere else", async () => {
    expect((await withRoom.inject("/demo/config")).json()).toMatchObject({
      uploadUrl: "http://127.0.0.1:1/nos/upload",
    });
    const policy = String((await withRoom.inject("/")).headers["content-security-policy"]);
    expect(policy).toContain("img-src 'self' data: http://127.0.0.1:1;");
    expect(policy).toContain("connect-src 'self' ws: wss: http://127.0.0.1:1;");
  });

  it("offers no upload without a storage", async () => {
    expect((await withoutRoom.inject("/demo/config")).json().uploadUrl).toBeUndefined();
    const policy = String((await withoutRoom.inject("/")).headers["content-security-policy"]);
    expect(policy).toContain("img-src 'self' data:;");
  });
});

describe("GET /demo/config", () => {
  it("lists the bots and says whether there is a group room", async () => {
    const config = (await withRoom.inject("/demo/config")).json();
    expect(config).toMatchObject({
      bot: "advisor_bot",
      bots: [
        { accid: "advisor_bot", name: "顾问" },
        { accid: "tutor_bot", name: "导师" },
      ],
      room: true,
      generator: "demo",
    });
    expect((await withoutRoom.inject("/demo/config")).json()).toMatchObject({ room: false });
  });
});

describe("POST /demo/room", () => {
  it("adds the logged-in user's accid to the room and answers the room", async () => {
    const token = await loginToken("Alice");
    const response = await withRoom.inject({
      method: "POST",
      url: "/demo/room",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ tid: "1500000000", name: "演示群" });
    expect(joined).toContain(accidForSiteUser("Alice"));
  });

  it.each<[string, Record<string, string>]>([
    ["no Authorization", {}],
    ["not a bearer token", { authorization: "Basic abc" }],
    ["a token signed with another secret", { authorization: "Bearer __OTHER__" }],
    ["garbage", { authorization: "Bearer not.a.jwt" }],
  ])("answers 401 for %s", async (_case, headers) => {
    if (headers.authorization === "Bearer __OTHER__") {
      const forged = await new SignJWT({})
        .setProtectedHeader({ alg: "HS256" })
        .setSubject("mallory")
        .setExpirationTime("1h")
        .sign(new TextEncoder().encode("another-secret-another-secret-00"));
      headers = { authorization: `Bearer ${forged}` };
    }
    const response = await withRoom.inject({ method: "POST", url: "/demo/room", headers });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("answers 401 for an expired token", async () => {
    const expired = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setIssuedAt(1_000)
      .setExpirationTime(2_000)
      .sign(new TextEncoder().encode(jwtSecret));
    const response = await withRoom.inject({
      method: "POST",
      url: "/demo/room",
      headers: { authorization: `Bearer ${expired}` },
    });
    expect(response.statusCode).toBe(401);
  });

  it("answers 502 without the cause when joining fails, and 404 without a room", async () => {
    const token = await loginToken("broken");
    const failed = await withRoom.inject({
      method: "POST",
      url: "/demo/room",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(failed.statusCode).toBe(502);
    expect(failed.body).not.toContain("secret detail");
    const none = await withoutRoom.inject({
      method: "POST",
      url: "/demo/room",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(none.statusCode).toBe(404);
  });
});
