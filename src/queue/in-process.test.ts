import { runReplyQueueConformance } from "./conformance.ts";
import { InProcessQueue } from "./in-process.ts";

runReplyQueueConformance(
  "in-process",
  ({ concurrency, attempts, retryDelayMs }) => new InProcessQueue({ concurrency, maxAttempts: attempts, retryDelayMs }),
);
