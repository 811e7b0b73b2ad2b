/**
 * The bench's token generator as a module a bridge can load by URL (BridgeOverrides.generatorModule),
 * so it runs inside the reply thread as a real generator would: BENCH_TOKENS pieces every
 * BENCH_TOKEN_INTERVAL_MS ms, each carrying the wall-clock time it was yielded.
 */
import type { ReplyGenerator } from "../src/generators/types.ts";
import { createTokenGenerator } from "./common.ts";

export default function benchTokenGenerator(env: NodeJS.ProcessEnv): ReplyGenerator {
  return createTokenGenerator({
    tokens: Number(env.BENCH_TOKENS ?? 100),
    intervalMs: Number(env.BENCH_TOKEN_INTERVAL_MS ?? 50),
  });
}
