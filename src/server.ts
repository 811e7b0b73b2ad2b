/**
 * The composition root: builds every part from the configuration and wires them together. Wiring
 * only: every piece of logic lives in its concern's folder. Nothing else constructs
 * implementations, so tests and `npm start` swap parts here (a fake generator, the emulator's URL)
 * through `overrides` without touching the pipeline.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from "fastify";
import { createOperatorConsole } from "./admin/index.ts";
import { loadBots } from "./bots/index.ts";
import { createIntake } from "./callback/intake.ts";
import { callbackRoute } from "./callback/route.ts";
import { createMessageRouter } from "./callback/router.ts";
import type { Config } from "./config/index.ts";
import type { ReplyGenerator } from "./generators/types.ts";
import { buildHttpApp } from "./http/app.ts";
import { createLogger, type Logger } from "./http/logger.ts";
import { interceptRoute } from "./intercept/route.ts";
import { enforceLimit, optionalPerMinuteLimit } from "./limits/http.ts";
import { createRetentionJob } from "./maintenance/retention.ts";
import { createMetrics, metricsRoute } from "./metrics/index.ts";
import { createUserMessageModeration } from "./moderation/user-messages.ts";
import { ensureBotAccounts } from "./nim/bot-accounts.ts";
import { createPoolSender } from "./nim/pool-sender.ts";
import type { NimClient } from "./nim/types.ts";
import { InProcessQueue } from "./queue/in-process.ts";
import { inboxOnlyQueue } from "./queue/inbox-only.ts";
import type { ReplyQueue } from "./queue/types.ts";
import { createRegisterAuthenticator } from "./register/auth.ts";
import { guardRegisterService } from "./register/guarded-service.ts";
import { createRedisKeyedLock } from "./register/redis-lock.ts";
import { registerRoute } from "./register/route.ts";
import { createRegisterService } from "./register/service.ts";
import { type Clock, systemClock } from "./reply/clock.ts";
import { combineObservers, type ReplyObserver } from "./reply/observer.ts";
import { createLocalTurnControl, createRedisTurnControl, type TurnControl } from "./reply/turn-control.ts";
import type { ReplyWorker } from "./reply/worker.ts";
import { loadGeneratorModule } from "./runtime/generator-module.ts";
import { botGenerators, moderatorFromConfig, nimClientFromConfig } from "./runtime/parts.ts";
import { createReplySide } from "./runtime/reply-side.ts";
import { ReplyThread, replyThreadWanted } from "./runtime/reply-thread.ts";
import { createCallbackGuard } from "./security/callback-guard.ts";
import { createSourceGuard, parseAddressList } from "./security/ip-allow-list.ts";
import { createBoundedAudit } from "./security/rejection-audit.ts";
import { type Database, openDatabase } from "./storage/database.ts";
import { createRepositories, type Repositories } from "./storage/repositories.ts";

export interface BridgeOverrides {
  logger?: Logger;
  nim?: NimClient;
  generator?: ReplyGenerator;
  /**
   * A module (URL) whose default export `(env) => ReplyGenerator` makes the generator, for the
   * reply thread: a function cannot cross into a worker thread, a module URL can. Used in process
   * too when there is no thread. For benchmarks and tests; `generator` wins when both are given.
   */
  generatorModule?: string;
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
  /**
   * Stops intake (HTTP first), hands running replies back (their leases released at once), and
   * closes every connection.
   */
  close(): Promise<void>;
}

export async function createBridge(config: Config, overrides: BridgeOverrides = {}): Promise<Bridge> {
  const { appKey, appSecret } = config.nim;
  if (!appKey || !appSecret) throw new Error("NIM_APP_KEY and NIM_APP_SECRET are required");
  // BOTS_FILE, or the one bot NIM_BOT_ACCID; every problem is named at once (ConfigurationError).
  const registry = loadBots(config);
  const botAccid = registry.default.accid;
  const logger = overrides.logger ?? createLogger({ level: config.logLevel });
  const clock = overrides.clock ?? systemClock;
  const database = await openDatabase(config.databaseUrl, {
    onBackgroundError: (error) => logger.warn({ err: error }, "database connection lost; reconnecting on next use"),
  });
  const repositories = createRepositories(database);
  // One bounded keep-alive pool per NIM origin, shared by the classic and v2 clients; closed last.
  const nimHttp = createPoolSender({ connections: config.nim.httpConnections });
  const nim =
    overrides.nim ??
    nimClientFromConfig(config, overrides.fetch ? { fetch: overrides.fetch } : { http: nimHttp }, logger);
  // With REDIS_URL every instance shares de-duplication, limits, turn control and the job queue.
  // ioredis and BullMQ (about 25 MB resident) are imported only then.
  const bullMq = config.redisUrl ? await import("./queue/bullmq.ts") : undefined;
  const redis = config.redisUrl
    ? new (await import("ioredis")).Redis(config.redisUrl, { maxRetriesPerRequest: null, lazyConnect: false })
    : undefined;
  redis?.on("error", (error) => logger.warn({ err: error }, "redis error"));
  // REDIS_KEY_PREFIX namespaces every key we write, so deployments (or test runs) can share a Redis.
  const redisKey = (name: string) => (config.redisKeyPrefix ? `${config.redisKeyPrefix}:${name}` : name);
  const leaseMs = config.reply.leaseMs;
  // REPLY_THREAD: in the all-in-one role the replies run on a worker thread of their own, so a
  // callback's ack never waits behind reply work (src/runtime/reply-thread.ts).
  const replyThread = useReplyThread(config, overrides)
    ? new ReplyThread({
        data: { config, generatorModule: overrides.generatorModule },
        // The thread's observer calls land on this process's observer (metrics, console, tests).
        observer: () => observer,
        logger,
        hasWork: async () => (await repositories.inbox.unfinished(1)).length > 0,
      })
    : undefined;
  const queue: ReplyQueue =
    replyThread?.queue ??
    overrides.queue ??
    (redis && bullMq
      ? new bullMq.BullMqQueue({
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
  // ---- operator console (src/admin, src/usage): usage, budgets, pauses, live events, /admin ----
  // (The callback's source guard moved up here: the console's login limit uses its client address.)
  const sourceGuard = createSourceGuard({
    allow: parseAddressList(config.security.callbackAllowedIps),
    trustedProxies: parseAddressList(config.security.trustedProxies),
  });
  const clientAddress = (request: FastifyRequest) =>
    sourceGuard.clientAddress(request.socket.remoteAddress, request.headers["x-forwarded-for"]);
  const operatorConsole = await createOperatorConsole({
    settings: config.console,
    database,
    repositories,
    nim,
    clock,
    logger,
    redis,
    redisKey,
    clientAddress,
    verifySiteJwt: createRegisterAuthenticator(config.auth).verifySiteJwt,
    budgetFor: (accid) => registry.find(accid)?.dailyTokenBudget,
  });
  // ---- end of operator console ----
  const observer = combineObservers(metrics.replyObserver(), operatorConsole.observer, overrides.observer);
  const moderator = moderatorFromConfig(config, logger);
  // MODERATE_USER_MESSAGES (issue 16): user↔user messages from the copy, checked in the background.
  const userModeration =
    config.userModeration.enabled && moderator
      ? createUserMessageModeration({
          moderator,
          nim,
          audit: repositories.audit,
          isBot: (accid) => registry.isBot(accid),
          noticeFrom: botAccid,
          recall: config.userModeration.recall,
          notice: config.userModeration.recallNotice,
          respectNimAntispam: config.moderation.respectNimAntispam,
          logger,
          now: () => clock.now(),
        })
      : undefined;
  const runWorker = overrides.worker ?? config.role !== "http";
  const serveHttpRoutes = config.role !== "worker";
  const generatorOverride =
    runWorker && !replyThread
      ? (overrides.generator ?? (await loadGeneratorModule(overrides.generatorModule)))
      : undefined;
  const replySide =
    runWorker && !replyThread
      ? createReplySide({
          config,
          registry,
          generators: botGenerators(registry, generatorOverride),
          logger,
          clock,
          repositories,
          nim,
          observer,
          moderator,
          redis,
          redisKey,
          queue,
          consoleReplyOptions: operatorConsole.replyOptions,
          ...(overrides.fetch ? { fetch: overrides.fetch } : { http: nimHttp }),
        })
      : undefined;
  const processor = replySide?.processor;
  const worker = replySide?.worker;
  const turnControl: TurnControl = redis
    ? await createRedisTurnControl({
        redis,
        channel: redisKey("im-bridge:turn-control"),
        cancellations: processor?.cancellations,
        logger,
      })
    : (replyThread?.turnControl ?? createLocalTurnControl(processor?.cancellations));
  const retention = createRetentionJob({
    retention: repositories.retention,
    days: config.retentionDays,
    logger,
  });

  const registerService = guardRegisterService({
    service: createRegisterService({
      nim,
      accounts: repositories.accounts,
      audit: repositories.audit,
      botAccid,
      logger,
      // Two instances must not register the same new user at once (see register/service.ts).
      ...(redis ? { lock: createRedisKeyedLock({ redis, keyPrefix: redisKey("im-bridge:register-lock") }) } : {}),
      // NIM_TOKEN_MODE=dynamic: expiring tokens minted here, no NIM call once the account exists.
      ...(config.tokens.mode === "dynamic"
        ? { dynamicTokens: { appKey, appSecret, ttlSeconds: config.tokens.ttlSeconds } }
        : {}),
    }),
    perUserLimit: optionalPerMinuteLimit(config.limits.registerPerUserPerMinute, redisKey("register-user"), redis),
    onOutcome: (outcome) => metrics.registerOutcome(outcome),
  });
  const registerPerIp = optionalPerMinuteLimit(config.limits.registerPerIpPerMinute, redisKey("register-ip"), redis);
  const authenticator = createRegisterAuthenticator(config.auth);
  const rejections = createBoundedAudit({
    record: (event, detail) => repositories.audit.record(event, null, detail, clock.now()),
    perWindow: config.auditRejectedPerMinute,
    windowMs: 60_000,
    now: () => clock.now(),
    logger,
  });
  const callbackGuard = createCallbackGuard(sourceGuard, {
    onRefused: async (address) => {
      metrics.callbackOutcome("rejected", "source-address");
      logger.warn({ address }, "callback refused: source address not allowed");
      await rejections.refuse("callback.rejected", { reason: "source-address", ip: address });
    },
  });
  const intake = createIntake({
    repositories,
    queue,
    clock,
    logger,
    router: createMessageRouter({
      bots: registry,
      teamSession: config.conversation.teamSession,
      now: () => clock.now(),
      // Never silence: every kind of media message to a bot is answered (read, or a note).
      acceptsMessageType: (type) => ["picture", "audio", "video", "file", "location"].includes(type),
    }),
    turnControl,
  });

  const app = await buildHttpApp({
    logger,
    bodyLimitBytes: config.http.bodyLimitBytes,
    requestTimeoutMs: config.http.requestTimeoutMs,
    routes: [
      metricsRoute(metrics),
      ...(serveHttpRoutes ? [...httpRoutes(), ...operatorConsole.routes] : []),
      ...(overrides.extraRoutes ?? []),
    ],
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
        await enforceLimit(registerPerIp, address);
      });
      await scope.register(
        registerRoute({ service: registerService, authenticator, bots: () => registry.summaries() }),
      );
    };
    return [
      callbackRoute({
        appSecret: appSecret as string,
        windowMs: config.callback.timeWindowSeconds * 1000,
        intake,
        clock,
        rejections,
        guard: callbackGuard,
        clientAddress: (request) =>
          sourceGuard.clientAddress(request.socket.remoteAddress, request.headers["x-forwarded-for"]),
        onOutcome: (outcome, detail) => metrics.callbackOutcome(outcome, detail),
        ...(userModeration ? { onMessage: (event) => userModeration.consider(event) } : {}),
      }),
      registerWithPerIpLimit,
      // INTERCEPT_ENABLED (issue 16): NIM's before-delivery third-party callback at POST /im/intercept.
      ...(config.userModeration.intercept.enabled && moderator
        ? [
            interceptRoute({
              appSecret: appSecret as string,
              windowMs: config.callback.timeWindowSeconds * 1000,
              clock,
              timers: clock,
              audit: repositories.audit,
              moderator,
              isBot: (accid) => registry.isBot(accid),
              settings: config.userModeration.intercept,
              guard: callbackGuard,
              rejections,
              clientAddress: (request) =>
                sourceGuard.clientAddress(request.socket.remoteAddress, request.headers["x-forwarded-for"]),
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
      await ensureBotAccounts(nim, registry.all, logger);
      await worker?.start();
      await replyThread?.start();
      retention.start();
      return app.listen({ port: config.http.port, host: config.http.host });
    },
    async close() {
      if (closed) return;
      closed = true;
      retention.stop();
      await app.close();
      await worker?.stop();
      await replyThread?.stop();
      await userModeration?.idle();
      moderator?.close?.();
      await turnControl.close();
      await operatorConsole.close();
      if (!overrides.queue && bullMq && queue instanceof bullMq.BullMqQueue) await queue.stop();
      await nimHttp.close();
      await redis?.quit().catch(() => redis.disconnect());
      await database.close();
    },
  };
}

/** Whether replies run on their own thread (REPLY_THREAD; see src/runtime/reply-thread.ts). */
function useReplyThread(config: Config, overrides: BridgeOverrides): boolean {
  return replyThreadWanted(config, {
    runsWorker: overrides.worker ?? true,
    inProcessOverrides: (["generator", "nim", "queue", "clock", "fetch", "logger"] as const).filter(
      (name) => overrides[name] !== undefined,
    ),
  });
}
