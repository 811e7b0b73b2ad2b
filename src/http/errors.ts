/**
 * One error shape for every 4xx/5xx: {"error":{"code":"…","message":"…"}}. Route code throws
 * HttpError; Fastify's own failures (bad JSON, wrong content type, body too large, unknown
 * route) are mapped here so a client never sees two shapes.
 */
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

export class HttpError extends Error {
  override readonly name = "HttpError";
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

const fastifyCodes: Record<string, { status: number; code: string; message: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    code: "unsupported_media_type",
    message: "Content-Type must be application/json",
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    status: 400,
    code: "bad_request",
    message: "Content-Length does not match the body",
  },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: "body_too_large", message: "Request body is too large" },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: "invalid_json", message: "Request body is empty" },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: "invalid_json", message: "Request body is not valid JSON" },
  FST_ERR_CTP_EMPTY_TYPE: { status: 415, code: "unsupported_media_type", message: "Content-Type is empty" },
  FST_ERR_CTP_INVALID_TYPE: { status: 415, code: "unsupported_media_type", message: "Content-Type is invalid" },
  FST_ERR_BAD_URL: { status: 400, code: "bad_request", message: "Malformed URL" },
  FST_ERR_ASYNC_CONSTRAINT: { status: 400, code: "bad_request", message: "Bad request" },
};

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | HttpError, request, reply) => {
    if (error instanceof HttpError) {
      for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
      if (error.statusCode >= 500) request.log.error({ code: error.code }, error.message);
      return reply.status(error.statusCode).send(errorBody(error.code, error.message));
    }
    const known = error.code ? fastifyCodes[error.code] : undefined;
    if (known) return reply.status(known.status).send(errorBody(known.code, known.message));
    if (error instanceof SyntaxError || (error as { type?: string }).type === "entity.parse.failed") {
      return reply.status(400).send(errorBody("invalid_json", "Request body is not valid JSON"));
    }
    if (error.validation) {
      return reply.status(400).send(errorBody("bad_request", error.message));
    }
    const status = typeof error.statusCode === "number" && error.statusCode >= 400 ? error.statusCode : 500;
    if (status === 429) {
      return reply.status(429).send(errorBody("rate_limited", error.message || "Too many requests"));
    }
    if (status >= 500) {
      request.log.error({ err: error }, "unhandled error");
      return reply.status(status).send(errorBody("internal_error", "Internal server error"));
    }
    return reply.status(status).send(errorBody("bad_request", error.message));
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send(errorBody("not_found", `No route for ${request.method} ${request.url.split("?")[0]}`));
  });
}

/**
 * Fastify's `frameworkErrors`: a URL the router cannot decode (`/im/%zz`) never reaches the error
 * handler, so without this it would be answered in Fastify's own shape.
 */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const known = error.code ? fastifyCodes[error.code] : undefined;
  void reply
    .status(known?.status ?? 400)
    .send(errorBody(known?.code ?? "bad_request", known?.message ?? "Bad request"));
}

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser refuses (malformed, Content-Length
 * together with Transfer-Encoding, headers too large) or one not received within the request
 * timeout is answered here, before any route, in the one error shape, and the socket is closed.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  let status = 400;
  let body = errorBody("bad_request", "Malformed HTTP request");
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    status = 408;
    body = errorBody("request_timeout", "The request was not received in time");
  } else if (error.code === "HPE_HEADER_OVERFLOW") {
    status = 431;
    body = errorBody("headers_too_large", "Request headers are too large");
  }
  const text = JSON.stringify(body);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
  socket.destroy(error);
}
