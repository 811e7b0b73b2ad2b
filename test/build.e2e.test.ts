/**
 * The compiled build: `npm install` runs `prepare` → `npm run build` (tsc into dist/), and
 * `npm run serve` runs plain `node dist/cli/serve.js`. This runs that build as a child process
 * against the emulator and checks it serves a whole reply, so a build that compiles but does not
 * run (a missing file, an import that only tsx resolves) fails here.
 */
import { existsSync, readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { type Stack, startStack } from "./harness.ts";

describe("compiled build", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
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
});
