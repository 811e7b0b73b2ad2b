/**
 * POST /im/register (contract.md, "POST /im/register"): authenticate, validate, register.
 *
 * Order of checks, on purpose: content type (415) → credentials (401) → body (400) → user match
 * (403) → NIM (502/503). Credentials come before the body so an anonymous caller learns nothing
 * about what a valid body looks like, and nothing is written or sent to NIM before all checks
 * passed.
 *
 * Every answer carries `Cache-Control: no-store`: a 200 holds a login token, which no browser or
 * proxy cache may keep, and an error must not be replayed from a cache either.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from "fastify";
import { z } from "zod";
import { HttpError } from "../http/errors.ts";
import type { RegisterAuthenticator, RequestHeaders } from "./auth.ts";
import type { RegisterService } from "./service.ts";

export interface RegisterRouteOptions {
  service: RegisterService;
  authenticator: Pick<RegisterAuthenticator, "authenticate">;
  /** Every bot a user may talk to (contract: `bots`); default: only `result.bot`. */
  bots?: () => Array<{ accid: string; name: string }>;
}

/** The path of the route, for wiring and tests. */
export const REGISTER_PATH = "/im/register";

/** The site's user id: NIM never sees it (it sees the accid), but we store and hash it. */
export const USER_ID_MAX_LENGTH = 128;
/** NIM's nickname limit (`user/create.action` `name`, nim-protocol.md §2.1). */
export const NAME_MAX_LENGTH = 64;
/** A register body is a few hundred bytes; anything far larger is refused with 413 unread. */
export const REGISTER_BODY_LIMIT_BYTES = 16 * 1024;

// C0 controls, DEL and C1 controls. They have no business in an id or a nickname and make log
// lines and NIM's UI misbehave.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
// With the `u` flag a surrogate pair is one code point, so only lone (ill-formed) halves match.
// Lone surrogates would all hash to the same U+FFFD bytes, breaking the accid rule's injectivity.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Lengths are UTF-16 code units, the way NIM's Java back end counts String.length(). */
function textField(maximum: number) {
  return z
    .string({ error: "must be a string" })
    .min(1, "must not be empty")
    .max(maximum, `must be at most ${maximum} characters`)
    .refine((value) => !CONTROL_CHARACTERS.test(value), "must not contain control characters")
    .refine((value) => !LONE_SURROGATE.test(value), "must be well-formed Unicode");
}

const userIdSchema = textField(USER_ID_MAX_LENGTH);

/**
 * The body. `null` counts as absent (many JSON encoders write it for empty fields); keys not named
 * here are dropped (zod's default for objects), so a site may send more than we read.
 */
const registerBodySchema = z.object(
  {
    user_id: userIdSchema.nullish(),
    name: textField(NAME_MAX_LENGTH).nullish(),
    refresh: z.boolean({ error: "must be true or false" }).nullish(),
  },
  { error: "Request body must be a JSON object" },
);

type RegisterBody = z.infer<typeof registerBodySchema>;

function badRequest(message: string): HttpError {
  return new HttpError(400, "bad_request", message);
}

/** The first problem, naming its field (`user_id: must be at most 128 characters`). */
function parseBody(body: unknown): RegisterBody {
  const result = registerBodySchema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue || issue.path.length === 0) throw badRequest(issue?.message ?? "Request body is not valid");
  throw badRequest(`${issue.path.join(".")}: ${issue.message}`);
}

/**
 * Fastify parses `text/plain` too, and would hand us a string; the contract promises 415 for
 * anything that is not JSON. Other unknown types are already refused by Fastify with 415.
 */
function requireJson(contentType: string | undefined): void {
  const mediaType = contentType?.split(";")[0]?.trim().toLowerCase();
  if (mediaType !== "application/json") {
    throw new HttpError(415, "unsupported_media_type", "Content-Type must be application/json");
  }
}

/**
 * Node keeps only the first of a repeated Authorization header (and joins repeated X-Api-Key
 * values with ", "), so the authenticator would never see the repetition it refuses. Every copy of
 * a repeated credential header is handed over, as an array, so it is refused instead of one copy
 * being picked silently (a proxy in front may have picked another).
 */
function credentialHeaders(request: FastifyRequest): RequestHeaders {
  const headers: RequestHeaders = { ...request.headers };
  for (const name of ["authorization", "x-api-key"]) {
    // headersDistinct is absent on light-my-request's injected requests.
    const values = (request.raw.headersDistinct as Record<string, string[] | undefined> | undefined)?.[name];
    if (values && values.length > 1) headers[name] = values;
  }
  return headers;
}

/**
 * The Fastify plugin of POST /im/register, callable in two styles:
 *
 * - `await registerRoute(app, options)` or `app.register(registerRoute, options)` adds the route;
 * - `registerRoute(options)` returns a `FastifyPluginAsync`, the style of the composition root's
 *   `routes: [...]` list (like `callbackRoute(options)`).
 *
 * Install `installErrorHandling(app)` on the app so errors get the contract's JSON shape.
 *
 * @example
 * await app.register(registerRoute, {
 *   service: createRegisterService({ nim, accounts, audit, botAccid: config.nim.botAccid }),
 *   authenticator: createRegisterAuthenticator(config.auth),
 * });
 */
export function registerRoute(options: RegisterRouteOptions): FastifyPluginAsync;
export function registerRoute(app: FastifyInstance, options: RegisterRouteOptions): Promise<void>;
export function registerRoute(
  appOrOptions: FastifyInstance | RegisterRouteOptions,
  maybeOptions?: RegisterRouteOptions,
): FastifyPluginAsync | Promise<void> {
  if (maybeOptions === undefined && "service" in appOrOptions && "authenticator" in appOrOptions) {
    const options = appOrOptions;
    return async (app) => addRegisterRoute(app, options);
  }
  if (maybeOptions === undefined) {
    return Promise.reject(new TypeError("registerRoute(app, options): options are required"));
  }
  return addRegisterRoute(appOrOptions as FastifyInstance, maybeOptions);
}

async function addRegisterRoute(app: FastifyInstance, options: RegisterRouteOptions): Promise<void> {
  const { service, authenticator } = options;
  app.post(REGISTER_PATH, { bodyLimit: REGISTER_BODY_LIMIT_BYTES }, async (request, reply) => {
    // Set first, so error answers (sent by the error handler on this same reply) carry it too.
    reply.header("Cache-Control", "no-store");
    requireJson(request.headers["content-type"]);

    const principal = await authenticator.authenticate(credentialHeaders(request));
    const body = parseBody(request.body);

    let siteUserId: string;
    if (principal.kind === "jwt") {
      // The site signed this value, but it is still an id we store and hash: same rules as user_id.
      const subject = userIdSchema.safeParse(principal.subject);
      if (!subject.success) {
        throw badRequest(`JWT sub: ${subject.error.issues[0]?.message ?? "is not a valid user id"}`);
      }
      if (body.user_id != null && body.user_id !== principal.subject) {
        throw new HttpError(403, "user_mismatch", "user_id does not match the JWT's subject");
      }
      siteUserId = principal.subject;
    } else {
      if (body.user_id == null) throw badRequest("user_id: is required when calling with X-Api-Key");
      siteUserId = body.user_id;
    }

    const result = await service.register({
      siteUserId,
      name: body.name ?? undefined,
      refresh: body.refresh ?? false,
    });
    // An explicit shape: nothing else the service might return ever leaks into the answer.
    return reply.status(200).send({
      accid: result.accid,
      token: result.token,
      bot: result.bot,
      bots: options.bots?.() ?? [{ accid: result.bot, name: result.bot }],
      expires_at: result.expiresAt,
    });
  });
}
