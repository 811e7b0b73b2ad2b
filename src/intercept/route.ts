/**
 * POST /im/intercept: NIM's before-delivery third-party callback (第三方回调), see ./index.ts.
 *
 * Verified exactly like the message copy (same headers, same pure `verifyCallback` over the raw
 * bytes, same time window); a refused signature is a 401 and NIM then applies its console default.
 * Every accepted request is answered within INTERCEPT_BUDGET_MS with a decision; the audit row of a
 * block is written after the answer is on its way, so the database never eats NIM's 2 seconds.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { acceptRawJson, verifiedRawBody } from "../callback/signed-request.ts";
import { HttpError } from "../http/errors.ts";
import type { Clock } from "../reply/clock.ts";
import type { BoundedAudit } from "../security/rejection-audit.ts";
import type { AuditRepository } from "../storage/repositories.ts";
import {
  createInterceptChecker,
  type InterceptCheckerOptions,
  type InterceptSettings,
  interceptAnswer,
  parseInterceptBody,
} from "./index.ts";

export const INTERCEPT_PATH = "/im/intercept";

export interface InterceptRouteOptions extends InterceptCheckerOptions {
  appSecret: string;
  /** Allowed distance of CurTime from our clock, both directions (CALLBACK_TIME_WINDOW_SECONDS). */
  windowMs: number;
  clock: Clock;
  audit: Pick<AuditRepository, "record">;
  settings: InterceptSettings;
  /** Extra checks before verification (the callback's source-address allow-list). */
  guard?: (request: FastifyRequest) => Promise<void> | void;
  /** Refused signatures are audited at a bounded rate (shared with the message copy). */
  rejections: BoundedAudit;
  /** The caller's address as the allow-list sees it. */
  clientAddress?: (request: FastifyRequest) => string;
}

export function interceptRoute(options: InterceptRouteOptions): FastifyPluginAsync {
  const decide = createInterceptChecker(options);
  return async (app) => {
    // The signature covers the raw bytes, so the body must reach us unparsed.
    acceptRawJson(app);

    app.post(INTERCEPT_PATH, async (request, reply) => {
      await options.guard?.(request);
      const now = options.clock.now();
      const rawBody = await verifiedRawBody(request, {
        appSecret: options.appSecret,
        windowMs: options.windowMs,
        now,
        rejections: options.rejections,
        event: "intercept.rejected",
        clientAddress: options.clientAddress?.(request) ?? request.socket.remoteAddress ?? "",
      });

      let body: unknown;
      try {
        body = JSON.parse(rawBody.toString("utf8"));
      } catch {
        throw new HttpError(400, "bad_request", "Intercept body is not JSON");
      }
      const message = parseInterceptBody(body);
      const outcome = await decide(message);
      if (outcome.why === "timeout" || outcome.why === "error") {
        request.log.warn(
          { why: outcome.why, decision: outcome.decision, from: message?.from },
          "intercept: moderation did not decide in time; answering the configured default",
        );
      }
      if (outcome.decision === "block" && message) {
        const detail = {
          from: message.from.toLowerCase(),
          to: message.to,
          conversation: message.conversation,
          why: outcome.why,
          reason: outcome.verdict && !outcome.verdict.allowed ? outcome.verdict.reason : null,
        };
        void options.audit
          .record("moderation.intercept.blocked", detail.from, detail, now)
          .catch((error: unknown) => request.log.error({ err: error }, "audit write failed"));
      }
      return reply.send(interceptAnswer(outcome.decision, options.settings));
    });
  };
}
