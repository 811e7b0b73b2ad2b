/**
 * Turn control across instances: a /stop or a recall arrives at whichever instance got the
 * callback, while the reply may be produced by another. `cancel` reaches the process that runs it:
 * directly in one process, through Redis pub/sub when instances share a Redis.
 *
 * @module
 */
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { CancelReason, ReplyCancellations } from "./cancellation.ts";

export interface TurnControl {
  /** Asks whoever produces this reply to end it with `reason` (stopped, recalled). */
  cancel(replyTo: string, reason: Extract<CancelReason, "stopped" | "recalled">): Promise<void>;
  close(): Promise<void>;
}

/** Without Redis every reply of this deployment runs in this process. */
export function createLocalTurnControl(cancellations: ReplyCancellations | undefined): TurnControl {
  return {
    async cancel(replyTo, reason) {
      cancellations?.cancel(replyTo, reason);
    },
    async close() {},
  };
}

export interface RedisTurnControlOptions {
  /** Used to publish; a duplicate of it subscribes (a subscribed connection can do nothing else). */
  redis: Redis;
  channel: string;
  /** This process's running replies, when it runs a worker. */
  cancellations: ReplyCancellations | undefined;
  logger: Pick<Logger, "warn">;
}

export async function createRedisTurnControl(options: RedisTurnControlOptions): Promise<TurnControl> {
  const local = options.cancellations;
  let subscriber: Redis | undefined;
  if (local) {
    subscriber = options.redis.duplicate();
    subscriber.on("error", (error) => options.logger.warn({ err: error }, "turn control subscriber: Redis error"));
    subscriber.on("message", (_channel: string, text: string) => {
      try {
        const message = JSON.parse(text) as { replyTo?: unknown; reason?: unknown };
        if (typeof message.replyTo === "string" && (message.reason === "stopped" || message.reason === "recalled")) {
          local.cancel(message.replyTo, message.reason);
        }
      } catch {
        options.logger.warn({ channel: options.channel }, "turn control: unreadable message ignored");
      }
    });
    await subscriber.subscribe(options.channel);
  }
  return {
    async cancel(replyTo, reason) {
      // Locally at once; the publication reaches the other instances (and this one, harmlessly).
      local?.cancel(replyTo, reason);
      await options.redis.publish(options.channel, JSON.stringify({ replyTo, reason }));
    },
    async close() {
      await subscriber?.quit().catch(() => subscriber?.disconnect());
    },
  };
}
