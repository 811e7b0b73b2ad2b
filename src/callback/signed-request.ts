/**
 * What every NIM-signed route shares (the message copy and the before-delivery intercept): the
 * body must reach the route as the exact raw bytes (the MD5 and CheckSum cover them), and a refused
 * signature is logged and audited at a bounded rate before its 401.
 *
 * @module
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { HttpError } from "../http/errors.ts";
import type { BoundedAudit } from "../security/rejection-audit.ts";
import { verifyCallback } from "./verify.ts";

const JSON_TYPE = /^application\/json\s*(;.*)?$/i;

/** Makes JSON bodies of this (encapsulated) scope arrive as raw Buffers. */
export function acceptRawJson(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPE, { parseAs: "buffer" }, (_request, body, done) => done(null, body));
}

export interface SignedRequestOptions {
  appSecret: string;
  windowMs: number;
  now: number;
  rejections: BoundedAudit;
  /** Audit event name for a refusal, e.g. `callback.rejected`. */
  event: string;
  /** The caller's address as the allow-list judges it. */
  clientAddress: string;
  onRejected?: (reason: string) => void;
}

/** The raw body of a correctly signed request; throws 401 (after a bounded audit) otherwise. */
export async function verifiedRawBody(request: FastifyRequest, options: SignedRequestOptions): Promise<Buffer> {
  const rawBody = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  const verification = verifyCallback({
    headers: request.headers,
    rawBody,
    appSecret: options.appSecret,
    now: options.now,
    windowMs: options.windowMs,
  });
  if (verification.ok) return rawBody;
  options.onRejected?.(verification.reason);
  request.log.warn({ reason: verification.reason, ip: options.clientAddress }, `${options.event}`);
  await options.rejections.refuse(options.event, { reason: verification.reason, ip: options.clientAddress });
  throw new HttpError(401, "invalid_signature", `Signature rejected: ${verification.reason}`);
}
