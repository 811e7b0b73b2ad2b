/**
 * A generator module (BridgeOverrides.generatorModule) that holds its whole thread, not just its
 * own reply: after its first piece it spins synchronously until the file BLOCKING_GENERATOR_RELEASE
 * exists, having first created BLOCKING_GENERATOR_STARTED. A test can then show that callbacks are
 * still acknowledged while reply work keeps the reply thread's event loop from turning
 * (test/reply-thread.e2e.test.ts). Any message whose text is not "block" is answered at once.
 * So that a broken build fails instead of hanging, it gives up after 20 s and says so in
 * `${BLOCKING_GENERATOR_STARTED}.gave-up`.
 *
 * "die" ends the whole reply thread (process.exit in a worker ends only that thread) the first
 * time it is asked, leaving `${BLOCKING_GENERATOR_STARTED}.died`; asked again (by the thread
 * started in its place, resuming the reply) it answers.
 */
import { existsSync, writeFileSync } from "node:fs";
import type { GenerationRequest, ReplyGenerator } from "../generators/types.ts";

export default function blockingGenerator(env: NodeJS.ProcessEnv): ReplyGenerator {
  const started = env.BLOCKING_GENERATOR_STARTED;
  const release = env.BLOCKING_GENERATOR_RELEASE;
  if (!started || !release) throw new Error("BLOCKING_GENERATOR_STARTED and BLOCKING_GENERATOR_RELEASE are required");
  return {
    name: "blocking-test",
    async *generate(request: GenerationRequest): AsyncIterable<string> {
      if (request.message === "die" && !existsSync(`${started}.died`)) {
        writeFileSync(`${started}.died`, "");
        process.exit(3);
      }
      yield `echo: ${request.message}`;
      if (request.message !== "block") return;
      writeFileSync(started, "");
      // Deliberately synchronous: nothing else on this thread runs until the test releases it.
      const giveUpAt = Date.now() + 20_000;
      while (!existsSync(release)) {
        if (Date.now() > giveUpAt) {
          writeFileSync(`${started}.gave-up`, "");
          break;
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
      yield " (released)";
    },
  };
}
