import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as client from "./index.ts";

const clientDirectory = dirname(fileURLToPath(import.meta.url));

describe("im-bridge/client", () => {
  it("exports the public API", () => {
    expect(Object.keys(client).sort()).toEqual([
      "MAX_FINAL_PARTS",
      "NIM_STREAM_STATUS",
      "NativeStreamAssembler",
      "NimApiVersionError",
      "StreamAssembler",
      "connectNimV10",
      "createStreamAssembler",
      "fromEmulatorMessage",
      "fromEmulatorStreamFrame",
      "fromNimV10Message",
      "fromNimV9Message",
      "isTrustedSender",
      "nimV9Handlers",
      "parseBotStreamBody",
    ]);
  });

  it("is the module package.json maps ./client to", () => {
    const manifest = JSON.parse(readFileSync(join(clientDirectory, "../../package.json"), "utf8")) as {
      exports: Record<string, string>;
    };
    expect(manifest.exports["./client"]).toBe("./src/client/index.ts");
  });

  // The module ships to browsers as source: a Node import would break every front-end bundle.
  it("imports nothing but its own files", () => {
    const sources = readdirSync(clientDirectory).filter((name) => name.endsWith(".ts") && !name.endsWith(".test.ts"));
    expect(sources.length).toBeGreaterThan(0);
    for (const name of sources) {
      const source = readFileSync(join(clientDirectory, name), "utf8");
      const specifiers = [...source.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"/gm)].map(
        (match) => match[1],
      );
      for (const specifier of specifiers) expect(specifier, name).toMatch(/^\.\/[\w-]+\.ts$/);
      expect(source, name).not.toMatch(/\b(require|process|Buffer)\b\s*[.(]/);
    }
  });
});
