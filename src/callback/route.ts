/**
 * POST /im/callback: NIM's message-copy callback (消息抄送).
 *
 * NIM counts a copy as delivered only on HTTP 200 (or 500) within 5 seconds, so this route does
 * the minimum before answering: verify the signature over the exact raw bytes, parse, and for a
 * user→bot text write one inbox row (the durable job) in one transaction. Generation happens
 * afterwards in the worker; the answer never waits on it.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { HttpError } from "../http/errors.ts";
import type { Clock } from "../reply/clock.ts";
import type { BoundedAudit } from "../security/rejection-audit.ts";
import type { MessageEvent } from "./events.ts";
import type { Intake } from "./intake.ts";
import { parseCallbackEvent } from "./parse.ts";
import { acceptRawJson, verifiedRawBody } from "./signed-request.ts";

export interface CallbackRouteOptions {
  appSecret: string;
  /** Allowed distance of CurTime from our clock, both directions. */
  windowMs: number;
  intake: Intake;
  clock: Clock;
  /** Audit rows for refused callbacks, at a bounded rate (an unauthenticated flood writes few). */
  rejections: BoundedAudit;
  /** Outcome counter for metrics: accepted, duplicate, ignored, rejected, unavailable. */
  onOutcome?: (outcome: CallbackOutcome, detail?: string) => void;
  /**
   * Called synchronously with every verified message event (any sender, any conversation) before
   * the route decides what to do with it; must not block or throw (user-to-user moderation starts
   * its background check here, see moderation/user-messages.ts).
   */
  onMessage?: (event: MessageEvent) => void;
  /** Extra checks before verification (source address allow-list); throw HttpError to refuse. */
  guard?: (request: FastifyRequest) => Promise<void> | void;
  /**
   * The caller's address as the allow-list sees it (X-Forwarded-For believed only from trusted
   * proxies), so logs and audit rows name the same address the guard judged. Default: the socket's.
   */
  clientAddress?: (request: FastifyRequest) => string;
}

export type CallbackOutcome = "accepted" | "duplicate" | "ignored" | "validation" | "rejected" | "unavailable";

export function callbackRoute(options: CallbackRouteOptions): FastifyPluginAsync {
  return async (app) => {
    // The signature covers the raw bytes, so the body must reach us unparsed.
    acceptRawJson(app);

    app.post("/im/callback", async (request, reply) => {
      await options.guard?.(request);
      const rawBody = await verifiedRawBody(request, {
        appSecret: options.appSecret,
        windowMs: options.windowMs,
        now: options.clock.now(),
        rejections: options.rejections,
        event: "callback.rejected",
        clientAddress: options.clientAddress?.(request) ?? request.socket.remoteAddress ?? "",
        onRejected: (reason) => options.onOutcome?.("rejected", reason),
      });

      const event = parseCallbackEvent(rawBody);
      if (event.kind === "message") options.onMessage?.(event);
      if (event.kind === "validation") {
        options.onOutcome?.("validation");
        return reply.send({ ok: true });
      }
      let outcome: Awaited<ReturnType<Intake["handle"]>>;
      try {
        outcome = await options.intake.handle(event);
      } catch (error) {
        // Not stored durably: a 200 or a 500 would both tell NIM it was delivered and lose it.
        options.onOutcome?.("unavailable");
        request.log.error(
          { err: error, kind: event.kind },
          "callback not stored (database unavailable): answered 503 so that NIM may deliver it again",
        );
        throw new HttpError(503, "storage_unavailable", "The message could not be stored; deliver it again later");
      }
      switch (outcome.kind) {
        case "accepted":
          options.onOutcome?.("accepted");
          request.log.info({ msgidServer: outcome.msgidServer }, "callback accepted");
          break;
        case "duplicate":
          options.onOutcome?.("duplicate");
          request.log.info({ msgidServer: outcome.msgidServer }, "callback redelivered: already accepted");
          break;
        case "recall":
          options.onOutcome?.("accepted", "recall");
          request.log.info({ msgidServer: outcome.msgidServer, effect: outcome.effect }, "recall copy handled");
          break;
        case "ignored":
          options.onOutcome?.("ignored", event.kind);
          // Unknown shapes are acknowledged (NIM would otherwise retry them) and logged, never a crash.
          request.log[event.kind === "unknown" || event.kind === "invalid-json" ? "info" : "debug"](
            { kind: event.kind, reason: outcome.reason },
            "callback acknowledged without work",
          );
          break;
      }
      return reply.send({ ok: true });
    });
  };
}
