import fastify from "fastify";
import { describe, expect, it } from "vitest";
import { installErrorHandling } from "../http/errors.ts";
import { createCallbackGuard } from "./callback-guard.ts";
import { createSourceGuard } from "./ip-allow-list.ts";

async function appWith(allow: string[], trustedProxies: string[], refused: string[] = []) {
  const app = fastify();
  installErrorHandling(app);
  const guard = createCallbackGuard(createSourceGuard({ allow, trustedProxies }), {
    onRefused: (address) => {
      refused.push(address);
    },
  });
  app.post("/im/callback", async (request) => {
    await guard(request);
    return { ok: true };
  });
  await app.ready();
  return app;
}

describe("createCallbackGuard", () => {
  it("lets an allowed address through", async () => {
    const app = await appWith(["59.111.0.0/16"], []);
    const response = await app.inject({ method: "POST", url: "/im/callback", remoteAddress: "59.111.9.9" });
    expect(response.statusCode).toBe(200);
    await app.close();
  });

  it("refuses with 403 in the JSON error shape and tells onRefused", async () => {
    const refused: string[] = [];
    const app = await appWith(["59.111.0.0/16"], ["127.0.0.1"], refused);
    const response = await app.inject({
      method: "POST",
      url: "/im/callback",
      remoteAddress: "8.8.8.8",
      headers: { "x-forwarded-for": "59.111.9.9" },
    });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toEqual({
      error: { code: "forbidden_source", message: "Source address 8.8.8.8 is not allowed to call this endpoint" },
    });
    expect(refused).toEqual(["8.8.8.8"]);
    await app.close();
  });

  it("believes X-Forwarded-For from a trusted proxy", async () => {
    const app = await appWith(["59.111.0.0/16"], ["127.0.0.1"]);
    const allowed = await app.inject({
      method: "POST",
      url: "/im/callback",
      remoteAddress: "127.0.0.1",
      headers: { "x-forwarded-for": "59.111.9.9" },
    });
    expect(allowed.statusCode).toBe(200);
    const refused = await app.inject({
      method: "POST",
      url: "/im/callback",
      remoteAddress: "127.0.0.1",
      headers: { "x-forwarded-for": "59.111.9.9, 1.2.3.4" },
    });
    expect(refused.statusCode).toBe(403);
    await app.close();
  });

  it("does nothing when the allow list is empty", async () => {
    const app = await appWith([], []);
    const response = await app.inject({ method: "POST", url: "/im/callback", remoteAddress: "8.8.8.8" });
    expect(response.statusCode).toBe(200);
    await app.close();
  });
});
