/**
 * A reply generator made from a module URL (BridgeOverrides.generatorModule): a function cannot be
 * handed to a worker thread, a module URL can, so benchmarks and tests that bring their own
 * generator still run it where the replies run.
 *
 * @module
 */
import type { ReplyGenerator } from "../generators/types.ts";

/** Loads the module's default export `(env) => ReplyGenerator`; undefined when no URL is given. */
export async function loadGeneratorModule(url: string | undefined): Promise<ReplyGenerator | undefined> {
  if (!url) return undefined;
  const loaded = (await import(url)) as { default?: unknown };
  if (typeof loaded.default !== "function") {
    throw new TypeError(`generator module ${url} must export a default function (env) => ReplyGenerator`);
  }
  return (loaded.default as (env: NodeJS.ProcessEnv) => ReplyGenerator)(process.env);
}
