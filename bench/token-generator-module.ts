/**
 * The bench's token generator as a module a bridge can load by URL (BridgeOverrides.generatorModule),
 * so it runs inside the reply thread as a real generator would: BENCH_TOKENS pieces every
 * BENCH_TOKEN_INTERVAL_MS ms, each carrying the wall-clock time it was yielded.
 *
 * A message that starts with {@link PROBE_TEXT} gets a reply of BENCH_PROBE_TOKENS pieces (default
 * 1): the callbacks that time acks while the streams run must not add much streaming of their own.
 */
import type { GenerationRequest, ReplyGenerator } from "../src/generators/types.ts";
import { createTokenGenerator, PROBE_TEXT } from "./common.ts";

export default function benchTokenGenerator(env: NodeJS.ProcessEnv): ReplyGenerator {
  const intervalMs = Number(env.BENCH_TOKEN_INTERVAL_MS ?? 50);
  const stream = createTokenGenerator({ tokens: Number(env.BENCH_TOKENS ?? 100), intervalMs });
  const probe = createTokenGenerator({ tokens: Number(env.BENCH_PROBE_TOKENS ?? 1), intervalMs });
  return {
    name: "bench-tokens",
    generate(request: GenerationRequest, signal: AbortSignal): AsyncIterable<string> {
      return (request.message.startsWith(PROBE_TEXT) ? probe : stream).generate(request, signal);
    },
  };
}
