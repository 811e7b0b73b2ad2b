/**
 * The operator console, assembled: usage accounting and daily budgets (src/usage), pauses and
 * takeover, the live event hub (with Redis: fanned out over pub/sub), and the `/admin` routes when
 * ADMIN_TOKEN is set. server.ts calls this once and hands the parts to the reply processor, the
 * observer chain and the HTTP app.
 *
 * Usage is recorded and budgets and pauses apply whether or not the console's pages are on: a
 * budget is a limit, not a page.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { createRateLimit } from "../limits/index.ts";
import type { NimClient } from "../nim/types.ts";
import type { Clock } from "../reply/clock.ts";
import type { ReplyObserver } from "../reply/observer.ts";
import type { Database } from "../storage/database.ts";
import type { InboxMessage, Repositories } from "../storage/repositories.ts";
import { budgetSpentText, createTokenBudget } from "../usage/budget.ts";
import { dayOf } from "../usage/day.ts";
import { UsageRepository } from "../usage/repository.ts";
import type { TokenBudget, UsageRecorder } from "../usage/types.ts";
import {
  type ConsoleEvent,
  ConsoleEventHub,
  consoleObserver,
  createRedisEventRelay,
  type EventRelay,
} from "./event-hub.ts";
import { DEFAULT_PAUSED_NOTE, PauseRepository, pauseCheck } from "./pauses.ts";
import { ConsoleQueries } from "./queries.ts";
import { consoleRoutes } from "./routes.ts";
import { createSessionCodec } from "./session.ts";
import { sendAsOperator } from "./takeover.ts";

export interface ConsoleSettings {
  /** ADMIN_TOKEN; the pages are off without it. */
  adminToken: string | undefined;
  /** ADMIN_JWT_CLAIM: a site JWT with this claim `true` logs in too. */
  adminJwtClaim: string | undefined;
  sessionHours: number;
  loginPerMinute: number;
  userDailyTokenBudget: number;
  /** BOT_DAILY_TOKEN_BUDGET: the default budget of every bot without its own. */
  botDailyTokenBudget: number;
  pausedNote: string | undefined;
  usageTimeZone: string;
}

export interface OperatorConsoleOptions {
  settings: ConsoleSettings;
  database: Database;
  repositories: Repositories;
  nim: NimClient;
  clock: Clock;
  logger: Logger;
  redis?: Redis | undefined;
  /** Names a Redis key or channel under REDIS_KEY_PREFIX. */
  redisKey: (name: string) => string;
  clientAddress: (request: FastifyRequest) => string;
  /** Verifies a site JWT like /im/register does (register/auth.ts verifySiteJwt). */
  verifySiteJwt?: ((token: string) => Promise<{ subject: string; claims: Record<string, unknown> }>) | undefined;
  /**
   * Per-bot daily budgets (`daily_token_budget` in BOTS_FILE); undefined or 0 falls back to
   * BOT_DAILY_TOKEN_BUDGET.
   */
  budgetFor?: (botAccid: string) => number | undefined;
  /** Only workers publish reply events; an HTTP-only instance only listens. */
  webDirectory?: string;
}

export interface OperatorConsole {
  /** Feeds the live view; goes into the observer chain. */
  readonly observer: ReplyObserver;
  /** Options for createReplyProcessor: usage, budget, pauses. */
  readonly replyOptions: {
    usage: UsageRecorder;
    budget?: TokenBudget;
    budgetSpentText: string;
    paused: (message: InboxMessage) => Promise<{ note?: string } | undefined>;
  };
  /** The `/admin` routes, empty when ADMIN_TOKEN is unset. */
  readonly routes: FastifyPluginAsync[];
  close(): Promise<void>;
}

const WEB_DIRECTORY = fileURLToPath(new URL("../../web/admin/", import.meta.url));

/**
 * What the reply processor needs of the console: usage recording, daily token budgets, pauses.
 * A process that produces replies without serving the pages (the reply thread) builds only this.
 */
export function consoleReplyOptions(input: {
  settings: ConsoleSettings;
  usage: UsageRepository;
  pauses: PauseRepository;
  budgetFor?: ((botAccid: string) => number | undefined) | undefined;
}): OperatorConsole["replyOptions"] {
  const { settings, usage } = input;
  const budgetFor = (botAccid: string) => input.budgetFor?.(botAccid) || settings.botDailyTokenBudget || undefined;
  const budget = createTokenBudget({
    usage,
    userDailyTokens: settings.userDailyTokenBudget,
    ...(settings.botDailyTokenBudget > 0 || input.budgetFor ? { budgetFor } : {}),
    timeZone: settings.usageTimeZone,
  });
  const recorder: UsageRecorder = {
    record: (reply) => usage.record(reply, dayOf(reply.at, settings.usageTimeZone)),
  };
  return {
    usage: recorder,
    ...(budget ? { budget } : {}),
    budgetSpentText,
    paused: pauseCheck(input.pauses, settings.pausedNote ?? DEFAULT_PAUSED_NOTE),
  };
}

export async function createOperatorConsole(options: OperatorConsoleOptions): Promise<OperatorConsole> {
  const { settings, clock, logger } = options;
  const usage = new UsageRepository(options.database);
  const pauses = new PauseRepository(options.database);
  const hub = new ConsoleEventHub();
  const enabled = settings.adminToken !== undefined;
  let relay: EventRelay | undefined;
  if (enabled && options.redis) {
    relay = await createRedisEventRelay({
      redis: options.redis,
      channel: options.redisKey("im-bridge:console-events"),
      hub,
      onError: (error) => logger.warn({ err: error }, "console events: Redis error"),
    });
  }
  const publish = (event: ConsoleEvent) => (relay ? relay.publish(event) : hub.publish(event));
  const routes: FastifyPluginAsync[] = [];
  if (settings.adminToken) {
    const lifetimeMs = settings.sessionHours * 3_600_000;
    routes.push(
      consoleRoutes({
        sessions: createSessionCodec({ adminToken: settings.adminToken, lifetimeMs, now: () => clock.now() }),
        lifetimeMs,
        queries: new ConsoleQueries(options.database, usage, pauses),
        usage,
        pauses,
        hub,
        publish,
        audit: (event, subject, detail) => options.repositories.audit.record(event, subject, detail, clock.now()),
        sendAsOperator: (conversationId, parts, text) =>
          sendAsOperator(options.nim, options.repositories, { conversationId, parts, text, now: clock.now() }),
        loginLimit:
          settings.loginPerMinute > 0
            ? createRateLimit({
                points: settings.loginPerMinute,
                durationSeconds: 60,
                keyPrefix: options.redisKey("im-bridge:admin-login"),
                ...(options.redis ? { redis: options.redis } : {}),
              })
            : undefined,
        clientAddress: options.clientAddress,
        ...(settings.adminJwtClaim && options.verifySiteJwt
          ? { siteJwtLogin: { claim: settings.adminJwtClaim, verify: options.verifySiteJwt } }
          : {}),
        now: () => clock.now(),
        timeZone: settings.usageTimeZone,
        settings: {
          userDailyTokenBudget: settings.userDailyTokenBudget,
          botDailyTokenBudget: settings.botDailyTokenBudget,
          pausedNote: settings.pausedNote ?? DEFAULT_PAUSED_NOTE,
          timeZone: settings.usageTimeZone,
          sessionHours: settings.sessionHours,
          siteJwtClaim: settings.adminJwtClaim && options.verifySiteJwt ? settings.adminJwtClaim : null,
          liveAcrossInstances: relay !== undefined,
        },
        webDirectory: options.webDirectory ?? WEB_DIRECTORY,
      }),
    );
  }
  return {
    observer: enabled ? consoleObserver(publish) : {},
    replyOptions: consoleReplyOptions({ settings, usage, pauses, budgetFor: options.budgetFor }),
    routes,
    async close() {
      await relay?.close();
    },
  };
}
