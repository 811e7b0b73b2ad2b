/**
 * The HTTP side: Fastify with the one error shape, secret-free request logs and the routes each
 * concern contributes (callback, register, health, metrics). No route logic lives here.
 */
import fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync } from "fastify";
import { clientErrorHandler, frameworkErrorHandler, installErrorHandling } from "./errors.ts";
import type { Logger } from "./logger.ts";

export interface HttpAppOptions {
  logger: Logger;
  bodyLimitBytes: number;
  /** Bound on how long a client may take to send its request (a slow body is cut off). */
  requestTimeoutMs?: number;
  routes: FastifyPluginAsync[];
  /** Answers /readyz: resolves when every backing service answers. */
  readiness?: () => Promise<void>;
}

export async function buildHttpApp(options: HttpAppOptions): Promise<FastifyInstance> {
  // pino's Logger and Fastify's FastifyBaseLogger differ only in typing details.
  const requestTimeout = options.requestTimeoutMs ?? 10_000;
  const app: FastifyInstance = fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: options.bodyLimitBytes,
    requestTimeout,
    // No socket inactivity timeout: it also ran while a handler waited on NIM, so a register slower
    // than the request timeout lost its connection instead of getting its answer. Receiving is
    // bounded by requestTimeout and headersTimeout below, idle keep-alive by keepAliveTimeout.
    connectionTimeout: 0,
    // Node checks the request timeout only every connectionsCheckingInterval (default 30 s), and
    // not at all while headersTimeout (default 60 s) is the larger one: without these a body
    // trickling in a byte at a time outlived a 1.5 s timeout by half a minute.
    http: {
      connectionsCheckingInterval: Math.min(1_000, Math.max(100, Math.floor(requestTimeout / 4))),
      headersTimeout: requestTimeout,
      requestTimeout,
    },
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler,
    // Only the path is logged by Fastify's request serializer; bodies never are.
    trustProxy: false,
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  installErrorHandling(app);
  app.get("/healthz", async () => ({ ok: true }));
  app.get("/readyz", async (_request, reply) => {
    try {
      await options.readiness?.();
      return { ok: true };
    } catch (error) {
      return reply
        .status(503)
        .send({ error: { code: "not_ready", message: `Not ready: ${(error as Error).message}` } });
    }
  });
  for (const route of options.routes) await app.register(route);
  return app;
}
