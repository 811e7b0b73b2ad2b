/**
 * The reply thread's own start (see reply-thread.ts): builds the reply side from the configuration
 * it is handed, with its own database connection and NIM client, and talks to the process over
 * the worker port.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { consoleReplyOptions } from "../admin/index.ts";
import { PauseRepository } from "../admin/pauses.ts";
import { loadBots } from "../bots/index.ts";
import { createLogger } from "../http/logger.ts";
import { createPoolSender } from "../nim/pool-sender.ts";
import { InProcessQueue } from "../queue/in-process.ts";
import { systemClock } from "../reply/clock.ts";
import { openDatabase } from "../storage/database.ts";
import { createRepositories } from "../storage/repositories.ts";
import { UsageRepository } from "../usage/repository.ts";
import { loadGeneratorModule } from "./generator-module.ts";
import { botGenerators, moderatorFromConfig, nimClientFromConfig } from "./parts.ts";
import { createReplySide } from "./reply-side.ts";
import { createRelayObserver } from "./reply-thread-entry-observer.ts";
import type { FromReplyThread, ReplyThreadData, ToReplyThread } from "./reply-thread-messages.ts";

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("reply-thread-entry must run in a worker thread");
  const send = (message: FromReplyThread) => port.postMessage(message);
  const { config, generatorModule } = workerData as ReplyThreadData;
  const registry = loadBots(config);
  const logger = createLogger({ level: config.logLevel }).child({ thread: "reply" });
  const clock = systemClock;
  // The process opened the database first, so its migrations have run.
  const database = await openDatabase(config.databaseUrl, {
    onBackgroundError: (error) => logger.warn({ err: error }, "database connection lost; reconnecting on next use"),
  });
  const repositories = createRepositories(database);
  // The thread's own keep-alive pool to NIM, bounded like the process's (NIM_HTTP_CONNECTIONS).
  const nimHttp = createPoolSender({ connections: config.nim.httpConnections });
  const nim = nimClientFromConfig(config, { http: nimHttp }, logger);
  const generators = botGenerators(registry, await loadGeneratorModule(generatorModule));
  const moderator = moderatorFromConfig(config, logger);
  // Usage, budgets and pauses only: the console's pages and live view are the process's.
  const consoleOptions = consoleReplyOptions({
    settings: config.console,
    usage: new UsageRepository(database),
    pauses: new PauseRepository(database),
    budgetFor: (accid) => registry.find(accid)?.dailyTokenBudget,
  });
  const queue = new InProcessQueue({
    concurrency: config.reply.concurrency,
    onError: (job, error, attempt) =>
      logger.error({ err: error, msgidServer: job.msgidServer, attempt }, "reply job failed"),
  });
  const observer = createRelayObserver((calls) => send({ type: "observed", calls }));
  const { processor, worker } = createReplySide({
    config,
    registry,
    generators,
    logger,
    clock,
    repositories,
    nim,
    observer,
    moderator,
    redis: undefined,
    redisKey: (name) => name,
    queue,
    consoleReplyOptions: consoleOptions,
    http: nimHttp,
  });

  const depthTimer = setInterval(() => {
    queue.depth().then(
      (depth) => send({ type: "depth", depth }),
      () => undefined,
    );
  }, 1_000);
  depthTimer.unref();

  let stopping = false;
  port.on("message", (message: ToReplyThread) => {
    switch (message.type) {
      case "job":
        queue.enqueue({ msgidServer: message.msgidServer }).catch((error: unknown) => {
          // The inbox row stays; the sweep or the next start picks it up.
          logger.warn({ err: error, msgidServer: message.msgidServer }, "could not queue a reply");
        });
        return;
      case "cancel":
        processor.cancellations.cancel(message.replyTo, message.reason);
        return;
      case "stop":
        if (stopping) return;
        stopping = true;
        clearInterval(depthTimer);
        void (async () => {
          await worker.stop();
          observer.flush();
          moderator?.close?.();
          await database.close();
          await nimHttp.close();
          send({ type: "stopped" });
          port.close();
        })().catch((error: unknown) => {
          logger.error({ err: error }, "reply thread could not stop cleanly");
          send({ type: "stopped" });
          port.close();
        });
        return;
    }
  });

  await worker.start();
  send({ type: "ready" });
}

main().catch((error: unknown) => {
  parentPort?.postMessage({ type: "failed", message: error instanceof Error ? error.message : String(error) });
  // Let the message go out before the thread ends with an error code.
  setImmediate(() => process.exit(1));
});
