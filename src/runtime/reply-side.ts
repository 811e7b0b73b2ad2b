/**
 * The reply side of the composition: everything that produces answers (transport, media, limits,
 * the processor and the worker), built from the configuration and a few parts the caller owns.
 * Both the process itself (`createBridge`) and the reply thread (reply-thread-entry.ts) build it
 * here, so the two ways of running replies cannot drift apart.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { OperatorConsole } from "../admin/index.ts";
import type { BotRegistry } from "../bots/index.ts";
import type { Config } from "../config/index.ts";
import type { ReplyGenerator } from "../generators/types.ts";
import type { Logger } from "../http/logger.ts";
import { createReplyLimits, createSendBudget } from "../limits/index.ts";
import { createMediaDependencies, prepareMediaTurn, readMediaAttachment } from "../media/index.ts";
import type { Moderator } from "../moderation/index.ts";
import { isStreamMessageRefusal } from "../nim/errors.ts";
import type { NimHttpSender } from "../nim/http.ts";
import type { NimClient } from "../nim/types.ts";
import { createNimV2Client } from "../nim/v2-client.ts";
import type { ReplyQueue } from "../queue/types.ts";
import type { Clock } from "../reply/clock.ts";
import type { ReplyObserver } from "../reply/observer.ts";
import { parsePayload } from "../reply/payload.ts";
import { type BotProfile, createReplyProcessor, type ReplyProcessor } from "../reply/processor.ts";
import { createCustomTransport } from "../reply/transport/custom.ts";
import { createFallbackTransport } from "../reply/transport/fallback.ts";
import { NativeStreamTransport } from "../reply/transport/native.ts";
import type { ReplyTransport } from "../reply/transport/types.ts";
import { createReplyWorker, type ReplyWorker } from "../reply/worker.ts";
import type { InboxMessage, Repositories } from "../storage/repositories.ts";
import { replyMentionFields } from "../teams/mentions.ts";

export interface ReplySideOptions {
  config: Config;
  registry: BotRegistry;
  /** The generator of each bot, by accid. */
  generators: ReadonlyMap<string, ReplyGenerator>;
  logger: Logger;
  clock: Clock;
  repositories: Repositories;
  nim: NimClient;
  observer: ReplyObserver;
  moderator: Moderator | undefined;
  redis: Redis | undefined;
  redisKey: (name: string) => string;
  queue: ReplyQueue;
  /** The operator console's usage, budgets and pauses. */
  consoleReplyOptions: OperatorConsole["replyOptions"];
  /** NIM's v2 API (native streams) goes through this fetch (tests) … */
  fetch?: typeof fetch;
  /** … or this shared keep-alive pool (closed by the caller). */
  http?: NimHttpSender;
}

export interface ReplySide {
  readonly processor: ReplyProcessor;
  readonly worker: ReplyWorker;
}

export function createReplySide(options: ReplySideOptions): ReplySide {
  const { config, registry, generators, logger, clock, repositories, nim, redis, redisKey } = options;
  const { appKey, appSecret } = config.nim;
  if (!appKey || !appSecret) throw new Error("NIM_APP_KEY and NIM_APP_SECRET are required");
  const botProfile = (accid: string): BotProfile | undefined => {
    const bot = registry.find(accid);
    const generator = bot && generators.get(bot.accid);
    return bot && generator ? { accid: bot.accid, systemPrompt: bot.systemPrompt, generator } : undefined;
  };
  const limitBackend = redis ? { redis } : {};
  // Per asker and bot: each bot's own limits (BOTS_FILE), defaulting to REPLY_LIMIT_PER_*.
  const replyLimitsByBot = new Map(
    registry.all
      .filter((bot) => bot.limits.replyPerMinute > 0 || bot.limits.replyPerDay > 0)
      .map((bot) => [
        bot.accid,
        createReplyLimits({
          perMinute: bot.limits.replyPerMinute || Number.MAX_SAFE_INTEGER,
          perDay: bot.limits.replyPerDay || Number.MAX_SAFE_INTEGER,
          keyPrefix: redisKey(`im-bridge:reply:${bot.accid}`),
          ...limitBackend,
        }),
      ]),
  );
  const sendBudget =
    config.limits.nimSendRatePerSecond > 0
      ? createSendBudget({
          ratePerSecond: config.limits.nimSendRatePerSecond,
          burst: config.limits.nimSendRatePerSecond,
          // Under overload a send waits for its turn however long the round is (streams coalesce
          // meanwhile) rather than going over NIM's budget.
          maxWaitMs: Number.POSITIVE_INFINITY,
          keyPrefix: redisKey("im-bridge:send"),
          ...limitBackend,
        })
      : undefined;

  // NIM_STREAM_MODE: custom segments, or NIM's v2 stream messages falling back to custom segments
  // for a reply NIM refuses them for (feature not enabled for the app, …).
  const customTransport = createCustomTransport({
    nim,
    mentionFields: (address) =>
      replyMentionFields(
        { accid: address.askerAccid, nick: address.askerNick },
        { botName: registry.find(address.botAccid)?.name ?? address.botAccid },
      ),
  });
  const transport: ReplyTransport =
    config.nim.streamMode === "native"
      ? createFallbackTransport({
          primary: new NativeStreamTransport({
            nim: createNimV2Client({
              appKey,
              appSecret,
              openApiBase: config.nim.openApiBase,
              timeoutMs: config.nim.requestTimeoutMs,
              retry: { maxAttempts: config.nim.retryMaxAttempts, deadlineMs: config.nim.retryDeadlineMs },
              ...(options.fetch ? { fetch: options.fetch } : {}),
              ...(options.http && !options.fetch ? { http: options.http } : {}),
              logger,
            }),
            keepAliveIntervalMs: config.nim.streamKeepAliveMs,
            logger,
          }),
          fallback: customTransport,
          isRefusal: isStreamMessageRefusal,
          logger,
          onFallback: (address, error) => {
            repositories.audit
              .record(
                "reply.native_refused",
                address.replyTo,
                { bot: address.botAccid, message: String(error) },
                clock.now(),
              )
              .catch((auditError: unknown) => logger.warn({ err: auditError }, "could not audit a native refusal"));
          },
        })
      : customTransport;
  // Pictures, voice, files and locations (src/media): fetched only from MEDIA_ALLOWED_HOSTS.
  const media = createMediaDependencies(config.media);
  const prepareMedia = async (message: InboxMessage, signal: AbortSignal) => {
    const stored = parsePayload<{ rawType: string; attach: unknown }>(message.payload);
    const attachment = readMediaAttachment(String(stored.rawType ?? message.message_type), stored.attach);
    if (!attachment) return undefined;
    const vision = registry.find(message.bot_accid)?.vision ?? config.media.vision.enabled;
    return prepareMediaTurn(
      attachment,
      { ...config.media, vision: { ...config.media.vision, enabled: vision } },
      { ...media, signal },
    );
  };
  const processor = createReplyProcessor({
    repositories,
    transport,
    bot: botProfile,
    pacingMs: config.reply.pacingMs,
    idleTimeoutMs: config.reply.idleTimeoutMs,
    totalTimeoutMs: config.reply.totalTimeoutMs,
    historyTurns: config.reply.historyTurns,
    historyCharacters: config.reply.historyCharacters,
    maxAttempts: config.reply.maxAttempts,
    clock,
    logger,
    workerId: `worker-${randomUUID()}`,
    leaseMs: config.reply.leaseMs,
    observer: options.observer,
    replyLimits: (accid: string) => replyLimitsByBot.get(accid.toLowerCase()),
    debounceMs: config.conversation.debounceMs,
    media: prepareMedia,
    ...(options.moderator ? { moderator: options.moderator } : {}),
    ...(sendBudget ? { sendBudget } : {}),
    respectNimAntispam: config.moderation.respectNimAntispam,
    enqueue: (job) => options.queue.enqueue(job),
    ...options.consoleReplyOptions,
  });
  const worker = createReplyWorker({
    queue: options.queue,
    processReply: (job, signal) => processor.process(job, signal),
    repositories,
    logger,
    singleInstance: !config.redisUrl,
    sweepIntervalMs: config.reply.sweepIntervalMs,
  });
  return { processor, worker };
}
