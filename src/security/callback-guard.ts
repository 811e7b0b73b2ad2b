/**
 * Adapts a SourceGuard to the callback route's `guard` option: refuses a request from an address
 * outside CALLBACK_ALLOWED_IPS with 403 (the contract's status for a refused source) before the
 * signature is even computed, and logs the attempt.
 */
import type { FastifyRequest } from "fastify";
import { HttpError } from "../http/errors.ts";
import type { SourceGuard } from "./ip-allow-list.ts";

export interface CallbackGuardOptions {
  /** Told about every refusal, e.g. to count it (`metrics.callbackOutcome("rejected", "source-address")`) or audit it. */
  onRefused?: (address: string, request: FastifyRequest) => void | Promise<void>;
}

export function createCallbackGuard(
  guard: SourceGuard,
  options: CallbackGuardOptions = {},
): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    if (!guard.restricted) return;
    // The socket's address, not request.ip: the app runs with trustProxy off and this guard does
    // its own, stricter X-Forwarded-For handling.
    const address = guard.clientAddress(request.socket.remoteAddress, request.headers["x-forwarded-for"]);
    if (guard.isAllowed(address)) return;
    request.log.warn({ address, peer: request.socket.remoteAddress }, "callback refused: source address not allowed");
    await options.onRefused?.(address, request);
    throw new HttpError(403, "forbidden_source", `Source address ${address} is not allowed to call this endpoint`);
  };
}
