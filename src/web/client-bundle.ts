/**
 * Bundles `im-bridge/client` (src/client/index.ts) for the browser, in memory, so the demo page can
 * `import { StreamAssembler } from "/demo/client.js"` with no build step and no file written.
 *
 * @example
 * const javascript = await buildClientBundle();
 * app.get("/demo/client.js", (_request, reply) => reply.type("text/javascript").send(javascript));
 */
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** The entry point: the same module that `im-bridge/client` exports to integrators. */
export const CLIENT_ENTRY = fileURLToPath(new URL("../client/index.ts", import.meta.url));

/** Builds the client as one ES module (ES2020, readable, not minified: it is a demo people read). */
export async function buildClientBundle(entry: string = CLIENT_ENTRY): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    write: false,
    logLevel: "silent",
    legalComments: "none",
    banner: { js: "// im-bridge/client, bundled by `npm start` (src/web/client-bundle.ts)" },
  });
  const output = result.outputFiles[0];
  if (!output) throw new Error("esbuild produced no output for the browser client");
  return output.text;
}
