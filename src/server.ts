/**
 * The composition root: builds every part from the configuration and wires them together.
 * Nothing else constructs implementations, so tests and `npm start` swap parts here (a fake
 * generator, the emulator's URL) through `overrides` without touching the pipeline.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import { callbackRoute } from "./callback/route.ts";
import type { Config } from "./config/index.ts";
import { createGenerator } from "./generators/index.ts";
import type { ReplyGenerator } from "./generators/types.ts";
import { buildHttpApp } from "./http/app.ts";
import { createLogger, type Logger } from "./http/logger.ts";
import { createNimClient } from "./nim/client.ts";
import { isAlreadyRegisteredError } from "./nim/errors.ts";
import type { NimClient } from "./nim/types.ts";
import { InProcessQueue } from "./queue/in-process.ts";
import type { ReplyQueue } from "./queue/types.ts";
import { createRegisterAuthenticator } from "./register/auth.ts";
import { registerRoute } from "./register/route.ts";
import { createRegisterService } from "./register/service.ts";
import { type Clock, systemClock } from "./reply/clock.ts";
import type { ReplyObserver } from "./reply/observer.ts";
import { createReplyProcessor } from "./reply/pipeline.ts";
import { createReplyWorker, type ReplyWorker } from "./reply/worker.ts";
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
  const queue =
    overrides.queue ??
    new InProcessQueue({
      concurrency: config.reply.concurrency,
      onError: (job, error, attempt) =>
        logger.error({ err: error, msgidServer: job.msgidServer, attempt }, "reply job failed"),
    });

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
    leaseMs: 30_000,
    ...(overrides.observer ? { observer: overrides.observer } : {}),
  });
  const runWorker = overrides.worker ?? true;
  const worker = runWorker
    ? createReplyWorker({ queue, processReply, repositories, logger, singleInstance: !config.redisUrl })
    : undefined;

  const registerService = createRegisterService({
    nim,
    accounts: repositories.accounts,
    audit: repositories.audit,
    botAccid,
    logger,
  });
  const authenticator = createRegisterAuthenticator(config.auth);

  const app = await buildHttpApp({
    logger,
    bodyLimitBytes: config.http.bodyLimitBytes,
    routes: [
      callbackRoute({
        appSecret,
        botAccid,
        windowMs: config.callback.timeWindowSeconds * 1000,
        repositories,
        queue,
        clock,
      }),
      registerRoute({ service: registerService, authenticator }),
      ...(overrides.extraRoutes ?? []),
    ],
    readiness: async () => {
      await database.kysely.selectFrom("accounts").select("accid").limit(1).execute();
    },
  });

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
      await database.close();
    },
  };
}

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
