/**
 * The NOS stand-in in process (app.inject): uploads with their limits and refusals, downloads with
 * the headers that keep an uploaded page from running at the emulator's origin, CORS for the page.
 */
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createNimEmulatorApp, type NimEmulatorApp } from "./index.ts";

let emulator: NimEmulatorApp | undefined;
afterEach(async () => {
  await emulator?.app.close();
  emulator = undefined;
});

function start(storage?: { maximumObjectBytes?: number; maximumTotalBytes?: number }): NimEmulatorApp {
  emulator = createNimEmulatorApp({ appKey: "key", appSecret: "secret", storage });
  emulator.storage.publicUrl = "http://127.0.0.1:9";
  return emulator;
}

function upload(app: NimEmulatorApp, name: string, contentType: string | undefined, body: Buffer | string) {
  return app.app.inject({
    method: "POST",
    url: `/nos/upload?name=${encodeURIComponent(name)}`,
    headers: contentType === undefined ? {} : { "content-type": contentType },
    payload: body,
  });
}

describe("uploads", () => {
  it("stores the bytes and answers the download URL, size and md5; the URL serves them back", async () => {
    const app = start();
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    const answer = await upload(app, "截图 1.png", "image/png", bytes);
    expect(answer.statusCode).toBe(200);
    expect(answer.headers["access-control-allow-origin"]).toBe("*");
    const body = answer.json() as { url: string; size: number; md5: string; name: string };
    expect(body).toMatchObject({ name: "截图 1.png", size: 7, contentType: "image/png" });
    expect(body.md5).toBe(createHash("md5").update(bytes).digest("hex"));
    expect(body.url).toMatch(/^http:\/\/127\.0\.0\.1:9\/nos\/[0-9a-f]{32}\/%E6%88%AA/);

    const download = await app.app.inject({ method: "GET", url: body.url.replace("http://127.0.0.1:9", "") });
    expect(download.statusCode).toBe(200);
    expect(download.headers["content-type"]).toBe("image/png");
    expect(download.headers["content-disposition"]).toMatch(/^inline;/);
    expect(download.headers["x-content-type-options"]).toBe("nosniff");
    expect(download.rawPayload.equals(bytes)).toBe(true);
  });

  it("takes text and JSON as raw bytes too, and serves anything but a raster image as an attachment", async () => {
    const app = start();
    for (const [name, type, text] of [
      ["notes.md", "text/markdown", "# 标题\n"],
      ["a.txt", "text/plain", "plain"],
      ["data.json", "application/json", '{"a":1}'],
      ["page.html", "text/html", "<script>alert(1)</script>"],
    ] as const) {
      const answer = await upload(app, name, type, text);
      expect(answer.statusCode, name).toBe(200);
      const download = await app.app.inject({ method: "GET", url: new URL(answer.json().url).pathname });
      expect(download.body).toBe(text);
      expect(download.headers["content-type"]).toBe("application/octet-stream");
      expect(download.headers["content-disposition"]).toMatch(/^attachment;/);
      expect(download.headers["content-security-policy"]).toContain("sandbox");
    }
  });

  it("answers the page's CORS preflight", async () => {
    const app = start();
    const answer = await app.app.inject({ method: "OPTIONS", url: "/nos/upload" });
    expect(answer.statusCode).toBe(204);
    expect(answer.headers["access-control-allow-headers"]).toBe("content-type");
  });

  it.each([
    ["no name", "", "image/png", "x", 400],
    ["a name with a slash", "../etc/passwd", "image/png", "x", 400],
    ["a name with a control character", "a\u0007.png", "image/png", "x", 400],
    ["an empty body", "a.png", "image/png", "", 400],
    ["no content type", "a.png", undefined, "x", 415],
    ["a malformed content type", "a.png", "png", "x", 415],
  ])("refuses %s", async (_case, name, type, body, status) => {
    const app = start();
    const answer = await upload(app, name, type, body);
    expect(answer.statusCode).toBe(status);
    expect(answer.json().error.code).toEqual(expect.any(String));
  });

  it("refuses an upload over the size limit with 413, and any once the storage is full with 507", async () => {
    const app = start({ maximumObjectBytes: 10, maximumTotalBytes: 15 });
    expect((await upload(app, "big.bin", "application/octet-stream", Buffer.alloc(11, 1))).statusCode).toBe(413);
    expect((await upload(app, "a.bin", "application/octet-stream", Buffer.alloc(10, 1))).statusCode).toBe(200);
    const full = await upload(app, "b.bin", "application/octet-stream", Buffer.alloc(10, 1));
    expect(full.statusCode).toBe(507);
    expect(full.json().error.code).toBe("storage_full");
  });

  it("answers 404 for an unknown id, a malformed id, or the right id under another name", async () => {
    const app = start();
    const { url } = (await upload(app, "a.png", "image/png", "x")).json() as { url: string };
    const [, , id] = new URL(url).pathname.split("/");
    for (const path of [`/nos/${"0".repeat(32)}/a.png`, "/nos/xyz/a.png", `/nos/${id}/b.png`]) {
      expect((await app.app.inject({ method: "GET", url: path })).statusCode, path).toBe(404);
    }
  });
});
