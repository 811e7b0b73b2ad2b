/**
 * The composition root: builds every part from the configuration and wires them together.
 * Nothing else constructs implementations, so tests and `npm start` swap parts here (a fake
 * generator, the emulator's URL) through `overrides` without touching the pipeline.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import { Redis } from "ioredis";
import { callbackRoute } from "./callback/route.ts";
import type { Config } from "./config/index.ts";
import { createGenerator } from "./generators/index.ts";
import type { ReplyGenerator } from "./generators/types.ts";
import { buildHttpApp } from "./http/app.ts";
import { HttpError } from "./http/errors.ts";
import { createLogger, type Logger } from "./http/logger.ts";
import { interceptRoute } from "./intercept/route.ts";
import { createRateLimit, createReplyLimits, createSendBudget } from "./limits/index.ts";
import type { RateLimit } from "./limits/types.ts";
import { createMetrics, metricsRoute } from "./metrics/index.ts";
import { createModerator } from "./moderation/index.ts";
import { createUserMessageModeration } from "./moderation/user-messages.ts";
import { createNimClient } from "./nim/client.ts";
import { isAlreadyRegisteredError } from "./nim/errors.ts";
import type { NimClient } from "./nim/types.ts";
import { BullMqQueue } from "./queue/bullmq.ts";
import { InProcessQueue } from "./queue/in-process.ts";
import type { ReplyQueue } from "./queue/types.ts";
import { createRegisterAuthenticator } from "./register/auth.ts";
import { createRedisKeyedLock } from "./register/redis-lock.ts";
import { registerRoute } from "./register/route.ts";
import { createRegisterService } from "./register/service.ts";
import { type Clock, systemClock } from "./reply/clock.ts";
import type { ReplyObserver } from "./reply/observer.ts";
import { createReplyProcessor } from "./reply/pipeline.ts";
import { createReplyWorker, type ReplyWorker } from "./reply/worker.ts";
import { createCallbackGuard } from "./security/callback-guard.ts";
import { createSourceGuard, parseAddressList } from "./security/ip-allow-list.ts";
import { type Database, openDatabase } from "./storage/database.ts";
import { createRepositories, type Repositories } from "./storage/repositories.ts";

export interface BridgeOverrides {
  logger?: Logger;
  nim?: NimClient;
  generator?: ReplyGenerator;
  clock?: Clock;
  queue?: ReplyQueue;
  observer?: ReplyObserver;
  /** Run the worker in this process (default true). */
  worker?: boolean;
  fetch?: typeof fetch;
  /** More routes on the same HTTP app (the demo site of `npm start`; never used by `serve`). */
  extraRoutes?: FastifyPluginAsync[];
}

export interface Bridge {
  readonly app: FastifyInstance;
  readonly database: Database;
  readonly repositories: Repositories;
  readonly worker: ReplyWorker | undefined;
  readonly queue: ReplyQueue;
  /** Starts the worker (resuming unfinished replies) and listens; returns the base URL. */
  start(): Promise<string>;
  close(): Promise<void>;
}

export async function createBridge(config: Config, overrides: BridgeOverrides = {}): Promise<Bridge> {
  const { appKey, appSecret, botAccid } = config.nim;
  if (!appKey || !appSecret || !botAccid) {
    throw new Error("NIM_APP_KEY, NIM_APP_SECRET and NIM_BOT_ACCID are required");
  }
  const callbackSecret: string = appSecret;
  const callbackBot: string = botAccid;
  const logger = overrides.logger ?? createLogger({ level: config.logLevel });
  const clock = overrides.clock ?? systemClock;
  const database = await openDatabase(config.databaseUrl);
  const repositories = createRepositories(database);
  const nim =
    overrides.nim ??
    createNimClient({
      appKey,
      appSecret,
      apiBase: config.nim.apiBase,
      timeoutMs: config.nim.requestTimeoutMs,
      retry: { maxAttempts: config.nim.retryMaxAttempts, deadlineMs: config.nim.retryDeadlineMs },
      ...(overrides.fetch ? { fetch: overrides.fetch } : {}),
      logger,
    });
  const generator = overrides.generator ?? createGenerator(config.generator);
  // With REDIS_URL every instance shares de-duplication, limits and the job queue.
  const redis = config.redisUrl
    ? new Redis(config.redisUrl, { maxRetriesPerRequest: null, lazyConnect: false })
    : undefined;
  redis?.on("error", (error) => logger.warn({ err: error }, "redis error"));
  // REDIS_KEY_PREFIX namespaces every key we write, so deployments (or test runs) can share a Redis.
  const redisKey = (name: string) => (config.redisKeyPrefix ? `${config.redisKeyPrefix}:${name}` : name);
  const leaseMs = config.reply.leaseMs;
  const queue =
    overrides.queue ??
    (redis
      ? new BullMqQueue({
          connection: redis,
          concurrency: config.reply.concurrency,
          logger,
          ...(config.redisKeyPrefix ? { prefix: config.redisKeyPrefix } : {}),
          // BullMQ's job lock follows the inbox lease, and its stall check runs twice per lease, so
          // a job held by a dead instance is back in the queue about when its lease runs out.
          lockDurationMs: leaseMs,
          stalledIntervalMs: Math.max(500, Math.floor(leaseMs / 2)),
        })
      : config.role === "http"
        ? inboxOnlyQueue
        : new InProcessQueue({
            concurrency: config.reply.concurrency,
            onError: (job, error, attempt) =>
              logger.error({ err: error, msgidServer: job.msgidServer, attempt }, "reply job failed"),
          }));
  const metrics = createMetrics({ now: () => clock.now() });
  metrics.setQueueDepthSource(() => queue.depth());
  const observer = combineObservers(metrics.replyObserver(), overrides.observer);
  const moderator = createModerator({
    keywordFile: config.moderation.keywordFile,
    httpUrl: config.moderation.httpUrl,
    httpTimeoutMs: config.moderation.httpTimeoutMs,
    failOpen: config.moderation.failOpen,
    logger,
  });
  // MODERATE_USER_MESSAGES (issue 16): user↔user messages from the copy, checked in the background.
  const userModeration =
    config.userModeration.enabled && moderator
      ? createUserMessageModeration({
          moderator,
          nim,
          audit: repositories.audit,
          isBot: (accid) => accid === botAccid.toLowerCase(),
          noticeFrom: botAccid,
          recall: config.userModeration.recall,
          notice: config.userModeration.recallNotice,
          respectNimAntispam: config.moderation.respectNimAntispam,
          logger,
          now: () => clock.now(),
        })
      : undefined;
  const limitBackend = redis ? { redis } : {};
  const replyLimits =
    config.limits.replyPerMinute > 0 || config.limits.replyPerDay > 0
      ? createReplyLimits({
          perMinute: config.limits.replyPerMinute || Number.MAX_SAFE_INTEGER,
          perDay: config.limits.replyPerDay || Number.MAX_SAFE_INTEGER,
          keyPrefix: redisKey("im-bridge:reply"),
          ...limitBackend,
        })
      : undefined;
  const sendBudget =
    config.limits.nimSendRatePerSecond > 0
      ? createSendBudget({
          ratePerSecond: config.limits.nimSendRatePerSecond,
          burst: config.limits.nimSendRatePerSecond,
          keyPrefix: redisKey("im-bridge:send"),
          ...limitBackend,
        })
      : undefined;

  const processReply = createReplyProcessor({
    nim,
    repositories,
    generator,
    botAccid,
    systemPrompt: config.generator.systemPrompt,
    pacingMs: config.reply.pacingMs,
    idleTimeoutMs: config.reply.idleTimeoutMs,
    totalTimeoutMs: config.reply.totalTimeoutMs,
    historyTurns: config.reply.historyTurns,
    historyCharacters: config.reply.historyCharacters,
    clock,
    logger,
    workerId: `worker-${randomUUID()}`,
    leaseMs,
    observer,
    ...(replyLimits ? { replyLimits } : {}),
    ...(moderator ? { moderator } : {}),
    ...(sendBudget ? { sendBudget } : {}),
    respectNimAntispam: config.moderation.respectNimAntispam,
  });
  const runWorker = overrides.worker ?? config.role !== "http";
  const serveHttpRoutes = config.role !== "worker";
  const worker = runWorker
    ? createReplyWorker({
        queue,
        processReply,
        repositories,
        logger,
        singleInstance: !config.redisUrl,
        sweepIntervalMs: config.reply.sweepIntervalMs,
      })
    : undefined;

  const baseRegisterService = createRegisterService({
    nim,
    accounts: repositories.accounts,
    audit: repositories.audit,
    botAccid,
    logger,
    // Two instances must not register the same new user at once (see register/service.ts).
    ...(redis ? { lock: createRedisKeyedLock({ redis, keyPrefix: redisKey("im-bridge:register-lock") }) } : {}),
    // NIM_TOKEN_MODE=dynamic (issue 16): expiring tokens minted here, no NIM call once the account exists.
    ...(config.tokens.mode === "dynamic"
      ? { dynamicTokens: { appKey, appSecret, ttlSeconds: config.tokens.ttlSeconds } }
      : {}),
  });
  const registerPerUser = optionalLimit(config.limits.registerPerUserPerMinute, redisKey("register-user"), redis);
  const registerPerIp = optionalLimit(config.limits.registerPerIpPerMinute, redisKey("register-ip"), redis);
  const registerService: typeof baseRegisterService = {
    async register(input) {
      await enforce(registerPerUser, input.siteUserId);
      try {
        const result = await baseRegisterService.register(input);
        metrics.registerOutcome("ok");
        return result;
      } catch (error) {
        metrics.registerOutcome(error instanceof HttpError ? error.code : "error");
        throw error;
      }
    },
  };
  const authenticator = createRegisterAuthenticator(config.auth);
  const sourceGuard = createSourceGuard({
    allow: parseAddressList(config.security.callbackAllowedIps),
    trustedProxies: parseAddressList(config.security.trustedProxies),
  });
  const callbackGuard = createCallbackGuard(sourceGuard, {
    onRefused: (address) => {
      metrics.callbackOutcome("rejected", "source-address");
      logger.warn({ address }, "callback refused: source address not allowed");
      void repositories.audit.record("callback.rejected", null, { reason: "source-address", ip: address });
    },
  });

  const app = await buildHttpApp({
    logger,
    bodyLimitBytes: config.http.bodyLimitBytes,
    requestTimeoutMs: config.http.requestTimeoutMs,
    routes: [metricsRoute(metrics), ...(serveHttpRoutes ? httpRoutes() : []), ...(overrides.extraRoutes ?? [])],
    readiness: async () => {
      await database.kysely.selectFrom("accounts").select("accid").limit(1).execute();
      if (redis) await redis.ping();
    },
  });

  function httpRoutes(): FastifyPluginAsync[] {
    // The per-IP limit and the register route share one scope: a hook added in a plugin of its
    // own would apply only to that plugin's routes (Fastify encapsulation), i.e. to none.
    const registerWithPerIpLimit: FastifyPluginAsync = async (scope) => {
      scope.addHook("onRequest", async (request) => {
        const address = sourceGuard.clientAddress(request.socket.remoteAddress, request.headers["x-forwarded-for"]);
        await enforce(registerPerIp, address);
      });
      await scope.register(registerRoute({ service: registerService, authenticator }));
    };
    return [
      callbackRoute({
        appSecret: callbackSecret,
        botAccid: callbackBot,
        windowMs: config.callback.timeWindowSeconds * 1000,
        repositories,
        queue,
        clock,
        guard: callbackGuard,
        onOutcome: (outcome, detail) => metrics.callbackOutcome(outcome, detail),
        ...(userModeration ? { onMessage: (event) => userModeration.consider(event) } : {}),
      }),
      registerWithPerIpLimit,
      // INTERCEPT_ENABLED (issue 16): NIM's before-delivery third-party callback at POST /im/intercept.
      ...(config.userModeration.intercept.enabled && moderator
        ? [
            interceptRoute({
              appSecret: callbackSecret,
              windowMs: config.callback.timeWindowSeconds * 1000,
              clock,
              timers: clock,
              audit: repositories.audit,
              moderator,
              isBot: (accid) => accid === callbackBot.toLowerCase(),
              settings: config.userModeration.intercept,
              guard: callbackGuard,
            }),
          ]
        : []),
    ];
  }

  let closed = false;
  return {
    app,
    database,
    repositories,
    worker,
    queue,
    async start() {
      await ensureBotAccount(nim, botAccid, logger);
      await worker?.start();
      return app.listen({ port: config.http.port, host: config.http.host });
    },
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await worker?.stop();
      await userModeration?.idle();
      moderator?.close?.();
      if (!overrides.queue && queue instanceof BullMqQueue) await queue.stop();
      await redis?.quit().catch(() => redis.disconnect());
      await database.close();
    },
  };
}

/**
 * The queue of an HTTP-only instance without Redis: nobody in this process would ever consume an
 * in-process queue (it would only grow), so the inbox row alone carries the job and the worker
 * instances' sweeper (REPLY_SWEEP_INTERVAL_MS) picks it up.
 */
const inboxOnlyQueue: ReplyQueue = {
  enqueue: async () => {},
  start: () => {},
  stop: async () => {},
  depth: async () => 0,
};

/**
 * The bot must exist at NIM before it can send. Creating it at every start is idempotent:
 * NIM answers "already register" when it exists. A failure is logged, not fatal, so a NIM
 * outage at start does not stop the callback intake (replies resume once NIM answers).
 */
async function ensureBotAccount(nim: NimClient, botAccid: string, logger: Logger): Promise<void> {
  try {
    await nim.createAccount({ accid: botAccid, name: "AI Bot" }, { deadlineMs: 10_000 });
    logger.info({ bot: botAccid }, "bot account created at NIM");
  } catch (error) {
    if (isAlreadyRegisteredError(error)) return;
    logger.warn({ bot: botAccid, err: error }, "could not make sure the bot account exists at NIM");
  }
}

function optionalLimit(perMinute: number, keyPrefix: string, redis: Redis | undefined): RateLimit | undefined {
  if (perMinute <= 0) return undefined;
  return createRateLimit({ points: perMinute, durationSeconds: 60, keyPrefix, ...(redis ? { redis } : {}) });
}

/** 429 with Retry-After when the limit is used up. */
async function enforce(limit: RateLimit | undefined, key: string): Promise<void> {
  if (!limit) return;
  const decision = await limit.consume(key);
  if (decision.allowed) return;
  const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
  throw new HttpError(429, "rate_limited", `Too many requests; retry in ${seconds} s`, {
    "Retry-After": String(seconds),
  });
}

function combineObservers(...observers: Array<ReplyObserver | undefined>): ReplyObserver {
  const present = observers.filter((observer): observer is ReplyObserver => observer !== undefined);
  const call =
    <K extends keyof ReplyObserver>(name: K) =>
    (...args: Parameters<NonNullable<ReplyObserver[K]>>) => {
      for (const observer of present) (observer[name] as ((...values: unknown[]) => void) | undefined)?.(...args);
    };
  return {
    started: call("started"),
    firstToken: call("firstToken"),
    firstSegment: call("firstSegment"),
    sent: call("sent"),
    generatorError: call("generatorError"),
    finished: call("finished"),
  };
}
