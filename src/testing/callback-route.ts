/**
 * The callback route wired as the bridge wires it (intake with the P2P text router, local turn
 * control, bounded rejection audit), for route-level tests that do not need the whole bridge.
 */
import type { FastifyPluginAsync } from "fastify";
import { BotRegistry } from "../bots/index.ts";
import { createIntake } from "../callback/intake.ts";
import { type CallbackRouteOptions, callbackRoute } from "../callback/route.ts";
import { createMessageRouter } from "../callback/router.ts";
import { createLogger } from "../http/logger.ts";
import type { ReplyQueue } from "../queue/types.ts";
import type { Clock } from "../reply/clock.ts";
import { createLocalTurnControl, type TurnControl } from "../reply/turn-control.ts";
import { createBoundedAudit } from "../security/rejection-audit.ts";
import type { Repositories } from "../storage/repositories.ts";

export interface TestCallbackRouteOptions
  extends Pick<CallbackRouteOptions, "appSecret" | "windowMs" | "onOutcome" | "guard"> {
  botAccid: string;
  repositories: Repositories;
  queue: ReplyQueue;
  clock: Clock;
  turnControl?: TurnControl;
  rejectedPerMinute?: number;
}

export function testCallbackRoute(options: TestCallbackRouteOptions): FastifyPluginAsync {
  const logger = createLogger({ level: "silent" });
  const bot = options.botAccid.toLowerCase();
  return callbackRoute({
    appSecret: options.appSecret,
    windowMs: options.windowMs,
    clock: options.clock,
    intake: createIntake({
      repositories: options.repositories,
      queue: options.queue,
      clock: options.clock,
      logger,
      router: createMessageRouter({
        bots: new BotRegistry([
          {
            accid: bot,
            name: bot,
            systemPrompt: "",
            generator: {
              kind: "demo",
              openaiBaseUrl: undefined,
              openaiApiKey: undefined,
              openaiModel: "",
              httpUrl: undefined,
            },
            limits: { replyPerMinute: 0, replyPerDay: 0 },
          },
        ]),
        teamSession: "user",
        now: () => options.clock.now(),
      }),
      turnControl: options.turnControl ?? createLocalTurnControl(undefined),
    }),
    rejections: createBoundedAudit({
      record: (event, detail) => options.repositories.audit.record(event, null, detail, options.clock.now()),
      perWindow: options.rejectedPerMinute ?? 60,
      windowMs: 60_000,
      now: () => options.clock.now(),
      logger,
    }),
    ...(options.onOutcome ? { onOutcome: options.onOutcome } : {}),
    ...(options.guard ? { guard: options.guard } : {}),
  });
}
