/**
 * Who may call POST /im/register (contract.md, "POST /im/register", Auth).
 *
 * Two kinds of caller:
 *
 * - a **site user** with `Authorization: Bearer <JWT>` signed by the site, either with the HS256
 *   secret `IM_AUTH_JWT_SECRET` or with a key from the JWKS at `IM_AUTH_JWKS_URL`. The token's
 *   `sub` is the site user id; it may register only itself (the route enforces that);
 * - the **site's back end** with `X-Api-Key: <IM_SERVICE_API_KEY>`, registering any user.
 *
 * Security decisions, each on purpose:
 *
 * - **Fail closed.** With nothing configured every call is refused with a message naming the
 *   variables to set, so an operator who forgot them sees why instead of running an open endpoint.
 * - **Algorithms are pinned per key source.** The secret verifies only HS256; the JWKS only the
 *   asymmetric algorithms below. So an attacker cannot sign HS256 with the (public) JWKS key as the
 *   HMAC secret (the classic algorithm-confusion attack), and `alg: none` is never accepted. jose
 *   checks the algorithm before it resolves any key.
 * - **`exp` and `sub` are required.** A token without an expiry would be a password forever.
 * - **Clock tolerance 30 s.** The site's and our clocks may drift a little; 30 s forgives NTP-level
 *   skew without meaningfully extending a token's life.
 * - **Constant-time API key check.** Both the presented and the configured key are hashed with
 *   sha256 and the digests compared with `timingSafeEqual`, so neither the content nor the length
 *   of the key leaks through timing.
 * - **Nothing presented is echoed.** Error messages describe what is wrong, never the token or key.
 * - **One credential decides.** When `X-Api-Key` is present it is the credential that is checked
 *   (a back end may forward a user's Authorization header along with its own key); a wrong key is
 *   refused even if the JWT would have been fine.
 * - **A JWKS that cannot be fetched is our outage, not the caller's fault**: 503 `auth_unavailable`
 *   instead of a 401 that would make a front end throw away a perfectly good session.
 *
 * jose is imported by the first JWT to verify, not at start: a bridge whose site registers users
 * with the API key only never holds it (about 5 MB of resident memory).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { JWSAlgorithm, JWTVerifyGetKey, RemoteJWKSet } from "jose";
import { HttpError } from "../http/errors.ts";

/** The configuration this needs; `Config["auth"]` fits as is. Empty strings count as unset. */
export interface RegisterAuthOptions {
  /** HS256 secret of the site's user JWTs (`IM_AUTH_JWT_SECRET`). */
  jwtSecret?: string | undefined;
  /** JWKS of the site's user JWTs (`IM_AUTH_JWKS_URL`). */
  jwksUrl?: string | undefined;
  /** When set, a JWT's `iss` must equal it. */
  jwtIssuer?: string | undefined;
  /** When set, a JWT's `aud` must contain it. */
  jwtAudience?: string | undefined;
  /** Key of the site's back end (`IM_SERVICE_API_KEY`). */
  serviceApiKey?: string | undefined;
  /** Allowed clock skew for `exp`/`nbf`/`iat`, in seconds. Default 30. */
  clockToleranceSeconds?: number;
}

export interface RegisterAuthDependencies {
  /** Used to fetch the JWKS (tests and proxies inject one). Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** How long one JWKS fetch may take. Default 5000 ms (jose's default). */
  jwksTimeoutMs?: number;
}

/** The authenticated caller: a site user (its JWT `sub`) or the site's back end. */
export type RegisterPrincipal = { kind: "jwt"; subject: string } | { kind: "service" };

/** Header values as Node and Fastify present them (lower-case names). */
export type RequestHeaders = Record<string, string | string[] | undefined>;

export interface RegisterAuthenticator {
  /** Resolves to the caller, or throws HttpError 401 (503 when the JWKS cannot be fetched). */
  authenticate(headers: RequestHeaders): Promise<RegisterPrincipal>;
  /**
   * Verifies a site JWT exactly as `authenticate` does (same keys, algorithms, issuer, audience,
   * required `exp` and `sub`) and returns its claims: the operator console's admin-claim login.
   * Optional, so stand-in authenticators need not implement it.
   */
  verifySiteJwt?(token: string): Promise<{ subject: string; claims: Record<string, unknown> }>;
  /** Which methods are configured, e.g. for a start-up log line. */
  readonly configured: { jwtSecret: boolean; jwks: boolean; serviceApiKey: boolean };
}

/** The default skew allowed between the site's clock and ours. */
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;

/** The only algorithm the shared secret verifies. */
const SECRET_ALGORITHMS: JWSAlgorithm[] = ["HS256"];
/** What the JWKS verifies: asymmetric signatures only (never HMAC; see the module comment). */
const JWKS_ALGORITHMS: JWSAlgorithm[] = ["RS256", "PS256", "ES256", "EdDSA"];

/** RFC 6750 §2.1: `Bearer` + one or more spaces + a b64token. Case-insensitive scheme (RFC 9110 §11.1). */
const BEARER_HEADER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;

const NOT_CONFIGURED_MESSAGE =
  "Registration is disabled because no authentication is configured: set IM_AUTH_JWT_SECRET or " +
  "IM_AUTH_JWKS_URL (site user JWTs) and/or IM_SERVICE_API_KEY (server-to-server calls)";

/** Thrown inside the key resolver when the JWKS could not be fetched; mapped to 503. */
class JwksUnavailableError extends Error {
  override readonly name = "JwksUnavailableError";
}

function unauthorized(code: string, message: string, bearerError?: "invalid_token" | "invalid_request"): HttpError {
  // RFC 6750 §3: a 401 for a bearer-protected resource names the scheme, and the error if there was one.
  const challenge = bearerError ? `Bearer realm="im-bridge", error="${bearerError}"` : `Bearer realm="im-bridge"`;
  return new HttpError(401, code, message, { "WWW-Authenticate": challenge });
}

function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/** A header that must appear at most once; a repeated one is refused rather than guessed at. */
function singleHeader(headers: RequestHeaders, name: string): string | undefined {
  const value = headers[name];
  if (Array.isArray(value)) {
    throw unauthorized("unauthorized", `The ${name} header must be sent once`, "invalid_request");
  }
  return value;
}

function isNonEmpty(value: string | undefined): value is string {
  return typeof value === "string" && value.length > 0;
}

type Jose = typeof import("jose");

/** Turns jose's verification failures into our 401s without repeating anything from the token. */
function tokenError(error: unknown, errors: Jose["errors"]): HttpError {
  if (error instanceof errors.JWTExpired) {
    return unauthorized("token_expired", "The JWT has expired", "invalid_token");
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    // error.claim is the claim's name (e.g. "sub", "iss"), never its value.
    const problem = error.reason === "missing" ? "is missing the required" : "has an unacceptable";
    return unauthorized("invalid_token", `The JWT ${problem} "${error.claim}" claim`, "invalid_token");
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return unauthorized("invalid_token", "The JWT's signing algorithm is not accepted", "invalid_token");
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return unauthorized("invalid_token", "The JWT signature is not valid", "invalid_token");
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return unauthorized("invalid_token", "The JWT was not signed by a key of the configured JWKS", "invalid_token");
  }
  return unauthorized("invalid_token", "The JWT is malformed or cannot be verified", "invalid_token");
}

/**
 * Builds the authenticator for POST /im/register from `Config["auth"]`-like options.
 *
 * @example
 * const authenticator = createRegisterAuthenticator(config.auth);
 * const principal = await authenticator.authenticate(request.headers);
 * if (principal.kind === "jwt") registerOnly(principal.subject);
 */
export function createRegisterAuthenticator(
  options: RegisterAuthOptions,
  dependencies: RegisterAuthDependencies = {},
): RegisterAuthenticator {
  const secretKey = isNonEmpty(options.jwtSecret) ? new TextEncoder().encode(options.jwtSecret) : undefined;
  // Parsed here, so a malformed IM_AUTH_JWKS_URL still fails at start; fetched on first use either way.
  const jwksUrl = isNonEmpty(options.jwksUrl) ? new URL(options.jwksUrl) : undefined;
  // Only the digest is kept: the comparison works on equal-length digests, whatever the key lengths.
  const apiKeyDigest = isNonEmpty(options.serviceApiKey) ? sha256(options.serviceApiKey) : undefined;
  const jwtConfigured = secretKey !== undefined || jwksUrl !== undefined;

  const algorithms = [...(secretKey ? SECRET_ALGORITHMS : []), ...(jwksUrl ? JWKS_ALGORITHMS : [])];
  const clockTolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;

  let loading: Promise<{ jose: Jose; resolveKey: JWTVerifyGetKey }> | undefined;
  const load = () =>
    (loading ??= import("jose").then((jose) => {
      const { errors } = jose;
      const remoteKeys: RemoteJWKSet | undefined = jwksUrl
        ? jose.createRemoteJWKSet(jwksUrl, {
            ...(dependencies.fetch ? { [jose.customFetch]: dependencies.fetch } : {}),
            ...(dependencies.jwksTimeoutMs !== undefined ? { timeoutDuration: dependencies.jwksTimeoutMs } : {}),
          })
        : undefined;
      // jose has already checked `alg` against `algorithms` when this runs, so HS256 here means the
      // secret is configured, and anything else means the JWKS is.
      const resolveKey: JWTVerifyGetKey = async (header, token) => {
        if (header.alg === "HS256" && secretKey) return secretKey;
        if (!remoteKeys) throw new errors.JOSEAlgNotAllowed("no key source for this algorithm");
        try {
          return await remoteKeys(header, token);
        } catch (error) {
          // No matching key or an unsupported key is the token's problem (401); a JWKS that cannot be
          // fetched or parsed is ours (503). jose raises a bare JOSEError for a non-200 answer.
          const fetchProblem =
            !(error instanceof errors.JOSEError) ||
            error instanceof errors.JWKSTimeout ||
            error instanceof errors.JWKSInvalid ||
            error.code === errors.JOSEError.code;
          if (fetchProblem) throw new JwksUnavailableError("JWKS could not be fetched", { cause: error });
          throw error;
        }
      };
      return { jose, resolveKey };
    }));

  async function verifyJwt(token: string): Promise<RegisterPrincipal> {
    const { subject } = await verifyClaims(token);
    return { kind: "jwt", subject };
  }

  /** The token's verified subject and claims (the operator console reads its admin claim). */
  async function verifyClaims(token: string): Promise<{ subject: string; claims: Record<string, unknown> }> {
    // Outside the try below: a jose that cannot be loaded is a broken install, not a bad token.
    const { jose, resolveKey } = await load();
    try {
      const { payload } = await jose.jwtVerify(token, resolveKey, {
        algorithms,
        clockTolerance,
        requiredClaims: ["exp", "sub"],
        ...(isNonEmpty(options.jwtIssuer) ? { issuer: options.jwtIssuer } : {}),
        ...(isNonEmpty(options.jwtAudience) ? { audience: options.jwtAudience } : {}),
      });
      if (typeof payload.sub !== "string" || payload.sub.length === 0) {
        throw unauthorized("invalid_token", 'The JWT "sub" claim must be a non-empty string', "invalid_token");
      }
      return { subject: payload.sub, claims: payload };
    } catch (error) {
      if (error instanceof HttpError) throw error;
      if (error instanceof JwksUnavailableError) {
        throw new HttpError(503, "auth_unavailable", "The JWKS at IM_AUTH_JWKS_URL could not be fetched; try again");
      }
      throw tokenError(error, jose.errors);
    }
  }

  return {
    async verifySiteJwt(token) {
      if (!jwtConfigured) {
        throw unauthorized("unauthorized", "Neither IM_AUTH_JWT_SECRET nor IM_AUTH_JWKS_URL is configured");
      }
      return verifyClaims(token);
    },
    configured: {
      jwtSecret: secretKey !== undefined,
      jwks: jwksUrl !== undefined,
      serviceApiKey: apiKeyDigest !== undefined,
    },

    async authenticate(headers) {
      if (!jwtConfigured && !apiKeyDigest) {
        throw unauthorized("auth_not_configured", NOT_CONFIGURED_MESSAGE);
      }

      const apiKey = singleHeader(headers, "x-api-key");
      if (apiKey !== undefined) {
        if (!apiKeyDigest) {
          throw unauthorized("unauthorized", "X-Api-Key is not accepted: IM_SERVICE_API_KEY is not configured");
        }
        if (!timingSafeEqual(sha256(apiKey), apiKeyDigest)) {
          throw unauthorized("unauthorized", "The X-Api-Key is not valid");
        }
        return { kind: "service" };
      }

      const authorization = singleHeader(headers, "authorization");
      if (authorization !== undefined) {
        if (!jwtConfigured) {
          throw unauthorized(
            "unauthorized",
            "Bearer tokens are not accepted: neither IM_AUTH_JWT_SECRET nor IM_AUTH_JWKS_URL is configured",
          );
        }
        const match = BEARER_HEADER.exec(authorization.trim());
        if (!match?.[1]) {
          throw unauthorized("unauthorized", "The Authorization header must be 'Bearer <JWT>'", "invalid_request");
        }
        return verifyJwt(match[1]);
      }

      const accepted = [jwtConfigured && "Authorization: Bearer <JWT>", apiKeyDigest && "X-Api-Key"].filter(Boolean);
      throw unauthorized("unauthorized", `Credentials are required: send ${accepted.join(" or ")}`);
    },
  };
}
