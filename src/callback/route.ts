/**
 * POST /im/callback: NIM's message-copy callback (消息抄送).
 *
 * NIM counts a copy as delivered only on HTTP 200 (or 500) within 5 seconds, so this route does
 * the minimum before answering: verify the signature over the exact raw bytes, parse, and for a
 * user→bot text write one inbox row (the durable job) in one transaction. Generation happens
 * afterwards in the worker; the answer never waits on it.
 */
import type { FastifyPluginAsync } from "fastify";
import { HttpError } from "../http/errors.ts";
import type { ReplyQueue } from "../queue/types.ts";
import type { Clock } from "../reply/clock.ts";
import type { Repositories } from "../storage/repositories.ts";
import type { MessageEvent } from "./events.ts";
import { isUserToBotText, parseCallbackEvent } from "./parse.ts";
import { verifyCallback } from "./verify.ts";

export interface CallbackRouteOptions {
  appSecret: string;
  botAccid: string;
  /** Allowed distance of CurTime from our clock, both directions. */
  windowMs: number;
  repositories: Repositories;
  queue: ReplyQueue;
  clock: Clock;
  /** Outcome counter for metrics: accepted, duplicate, ignored, rejected. */
  onOutcome?: (outcome: CallbackOutcome, detail?: string) => void;
  /**
   * Called synchronously with every verified message event (any sender, any conversation) before
   * the route decides what to do with it; must not block or throw (user-to-user moderation starts
   * its background check here, see moderation/user-messages.ts).
   */
  onMessage?: (event: MessageEvent) => void;
  /** Extra checks before verification (source address allow-list); throw HttpError to refuse. */
  guard?: (request: import("fastify").FastifyRequest) => Promise<void> | void;
}

export type CallbackOutcome = "accepted" | "duplicate" | "ignored" | "validation" | "rejected";

const JSON_TYPE = /^application\/json\s*(;.*)?$/i;

export function callbackRoute(options: CallbackRouteOptions): FastifyPluginAsync {
  return async (app) => {
    // The signature covers the raw bytes, so the body must reach us unparsed.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser(JSON_TYPE, { parseAs: "buffer" }, (_request, body, done) => done(null, body));

    app.post("/im/callback", async (request, reply) => {
      await options.guard?.(request);
      const rawBody = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const now = options.clock.now();
      const verification = verifyCallback({
        headers: request.headers,
        rawBody,
        appSecret: options.appSecret,
        now,
        windowMs: options.windowMs,
      });
      if (!verification.ok) {
        options.onOutcome?.("rejected", verification.reason);
        request.log.warn({ reason: verification.reason, ip: request.ip }, "callback rejected");
        await options.repositories.audit.record(
          "callback.rejected",
          null,
          { reason: verification.reason, ip: request.ip },
          now,
        );
        throw new HttpError(401, "invalid_signature", `Callback signature rejected: ${verification.reason}`);
      }

      const event = parseCallbackEvent(rawBody);
      if (event.kind === "message") options.onMessage?.(event);
      if (event.kind === "validation") {
        options.onOutcome?.("validation");
        return reply.send({ ok: true });
      }
      if (!isUserToBotText(event, options.botAccid)) {
        options.onOutcome?.("ignored", event.kind);
        // Unknown shapes are acknowledged (NIM would otherwise retry them) and logged, never a crash.
        request.log[event.kind === "unknown" || event.kind === "invalid-json" ? "info" : "debug"](
          { kind: event.kind },
          "callback acknowledged without work",
        );
        return reply.send({ ok: true });
      }

      const accepted = await options.repositories.inbox.accept({
        msgidServer: event.msgidServer,
        fromAccid: event.fromAccount.toLowerCase(),
        toAccid: event.to.toLowerCase(),
        text: event.text,
        msgTimestamp: event.msgTimestamp,
        now,
        antispam: event.antispam,
      });
      if (!accepted) {
        options.onOutcome?.("duplicate");
        request.log.info({ msgidServer: event.msgidServer }, "callback redelivered: already accepted");
        return reply.send({ ok: true });
      }
      options.onOutcome?.("accepted");
      request.log.info({ msgidServer: event.msgidServer, from: event.fromAccount }, "callback accepted");
      // The row is committed; if enqueueing fails the start-up resume picks it up.
      await options.queue.enqueue({ msgidServer: event.msgidServer }).catch((error: unknown) => {
        request.log.error({ err: error, msgidServer: event.msgidServer }, "enqueue failed; will resume at start");
      });
      return reply.send({ ok: true });
    });
  };
}
