import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { REDIS_URL, services } from "../../test/services.ts";
import { cancelReasonOf, ReplyCancellations } from "./cancellation.ts";
import { createLocalTurnControl, createRedisTurnControl } from "./turn-control.ts";

const logger = { warn: () => {} };

describe("turn control", () => {
  it("cancels a reply of this process directly", async () => {
    const cancellations = new ReplyCancellations();
    const controller = cancellations.open("m1", "p2p:bot:u");
    await createLocalTurnControl(cancellations).cancel("m1", "stopped");
    expect(cancelReasonOf(controller.signal)).toBe("stopped");
  });

  it.runIf(services.redis)("reaches the instance that produces the reply through Redis", async () => {
    const channel = `turn-control-test-${randomUUID()}`;
    const httpRedis = new Redis(REDIS_URL);
    const workerRedis = new Redis(REDIS_URL);
    const workerCancellations = new ReplyCancellations();
    const controller = workerCancellations.open("m7", "p2p:bot:u");
    const worker = await createRedisTurnControl({
      redis: workerRedis,
      channel,
      cancellations: workerCancellations,
      logger,
    });
    // An HTTP-only instance: no replies of its own.
    const http = await createRedisTurnControl({ redis: httpRedis, channel, cancellations: undefined, logger });
    await http.cancel("m7", "recalled");
    const deadline = Date.now() + 5_000;
    while (!controller.signal.aborted && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(cancelReasonOf(controller.signal)).toBe("recalled");
    await worker.close();
    await http.close();
    httpRedis.disconnect();
    workerRedis.disconnect();
  });
});
