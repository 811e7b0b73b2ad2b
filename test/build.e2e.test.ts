/**
 * The compiled build: `npm install` runs `prepare` → `npm run build` (tsc into dist/), and
 * `npm run serve` runs plain `node dist/cli/serve.js`. This runs that build as a child process
 * against the emulator and checks it serves a whole reply, so a build that compiles but does not
 * run (a missing file, an import that only tsx resolves) fails here.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterEach, describe, expect, it } from "vitest";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { BOT, type Stack, startStack } from "./harness.ts";

describe("compiled build", () => {
  let stack: Stack | undefined;
  let storage: Server | undefined;
  let directory: string | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
    if (storage) await new Promise((resolve) => storage?.close(resolve));
    storage = undefined;
    if (directory) rmSync(directory, { recursive: true, force: true });
    directory = undefined;
  });

  it("is what npm run serve runs, and it answers a message end to end", async () => {
    const scripts = (JSON.parse(readFileSync("package.json", "utf8")) as { scripts: Record<string, string> }).scripts;
    expect(scripts.serve).toBe("node dist/cli/serve.js");
    expect(scripts.prepare).toBe("npm run build");
    expect(existsSync("dist/cli/serve.js")).toBe(true); // run `npm run build` (npm install does it)
    stack = await startStack({
      childProcess: true,
      compiled: true,
      scenario: { kind: "text", text: "Compiled and running." },
    });
    const accid = await stack.register("compiled-user");
    const reply = await stack.waitForReply(await stack.send(accid, "hi"));
    expect(reply.finalText).toBe("Compiled and running.");
    expect(reply.status).toBe("ok");
  });

  // Idle memory (issue 13): each of these costs 5-30 MB of RSS once imported, so a bridge imports
  // it when a message, a setting or a request first needs it, never at start.
  it("loads heavy dependencies on first use: none at idle, the picture ones with the first picture", async () => {
    directory = mkdtempSync(join(tmpdir(), "im-bridge-loaded-"));
    const loadedFile = join(directory, "loaded-modules.txt");
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: "#c81e1e" } })
      .png()
      .toBuffer();
    storage = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "image/png" });
      response.end(png);
    });
    await new Promise<void>((resolve) => storage?.listen(0, "127.0.0.1", resolve));
    const storageHost = `127.0.0.1:${(storage.address() as AddressInfo).port}`;
    stack = await startStack({
      childProcess: true,
      compiled: true,
      scenario: { kind: "text", text: "A red square." },
      env: {
        NODE_OPTIONS: `--import=${new URL("./loaded-modules/register.mjs", import.meta.url).href}`,
        LOADED_MODULES_FILE: loadedFile,
        // An OpenAI generator, vision and media are all configured: configured is not used.
        BOT_VISION: "true",
        MEDIA_ALLOWED_HOSTS: storageHost,
        MEDIA_ALLOW_HTTP: "true",
      },
    });
    const loadedPackages = () => {
      const packages = new Set<string>();
      for (const url of readFileSync(loadedFile, "utf8").split("\n")) {
        const name = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
        if (name) packages.add(name);
      }
      return packages;
    };
    const heavy = [
      "sharp",
      "file-type",
      "openai",
      "mediabunny",
      "pdfjs-dist",
      "pg",
      "ioredis",
      "bullmq",
      "jose",
      "@fastify/websocket",
      "ws",
    ];
    const accid = await stack.register("idle-user"); // with the service API key: no JWT, no jose

    const atIdle = loadedPackages();
    expect(atIdle.has("kysely")).toBe(true); // the recorder works: what start needs is there
    expect(heavy.filter((name) => atIdle.has(name))).toEqual([]);

    const msgidServer = newMessageIdServer();
    const attach = { url: `http://${storageHost}/photo.png`, ext: "png", size: png.length, w: 8, h: 8, md5: "x" };
    const copy = buildMessageCopy({
      from: accid,
      to: BOT,
      msgType: "PICTURE",
      attach: JSON.stringify(attach),
      msgidServer,
    });
    expect((await stack.postCallback(JSON.stringify(copy))).status).toBe(200);
    expect((await stack.waitForReply(msgidServer)).finalText).toBe("A red square.");

    const afterPicture = loadedPackages();
    expect(heavy.filter((name) => afterPicture.has(name))).toEqual(["sharp", "file-type", "openai"]);
  });
});
