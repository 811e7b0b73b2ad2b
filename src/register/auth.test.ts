import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpError } from "../http/errors.ts";
import { createRegisterAuthenticator, type RegisterAuthOptions, type RequestHeaders } from "./auth.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const API_KEY = "service-key-0123456789";

const nowSeconds = () => Math.floor(Date.now() / 1000);

function signHs256(payload: JWTPayload, secret = SECRET, expiresIn: string | number | null = "5m") {
  const jwt = new SignJWT(payload).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setIssuedAt();
  if (expiresIn !== null) jwt.setExpirationTime(expiresIn);
  return jwt.sign(new TextEncoder().encode(secret));
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/** What the authenticator throws, as a plain object for easy assertions. */
async function failure(
  options: RegisterAuthOptions,
  headers: RequestHeaders,
): Promise<{ status: number; code: string; message: string; headers: Record<string, string> }> {
  try {
    await createRegisterAuthenticator(options).authenticate(headers);
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    return { status: error.statusCode, code: error.code, message: error.message, headers: error.headers };
  }
  throw new Error("expected authentication to fail");
}

describe("createRegisterAuthenticator: fail closed", () => {
  it("refuses everything when nothing is configured and names the variables to set", async () => {
    for (const headers of [{}, { authorization: "Bearer x.y.z" }, { "x-api-key": API_KEY }]) {
      const result = await failure({}, headers);
      expect(result.status).toBe(401);
      expect(result.code).toBe("auth_not_configured");
      expect(result.message).toContain("IM_AUTH_JWT_SECRET");
      expect(result.message).toContain("IM_AUTH_JWKS_URL");
      expect(result.message).toContain("IM_SERVICE_API_KEY");
    }
  });

  it("treats empty strings as unset", async () => {
    const result = await failure({ jwtSecret: "", jwksUrl: "", serviceApiKey: "" }, { "x-api-key": "" });
    expect(result.code).toBe("auth_not_configured");
  });

  it("reports what is configured", () => {
    expect(createRegisterAuthenticator({ jwtSecret: SECRET }).configured).toEqual({
      jwtSecret: true,
      jwks: false,
      serviceApiKey: false,
    });
  });

  it("asks for credentials when none are sent", async () => {
    const result = await failure({ jwtSecret: SECRET, serviceApiKey: API_KEY }, {});
    expect(result).toMatchObject({ status: 401, code: "unauthorized" });
    expect(result.message).toContain("Bearer");
    expect(result.message).toContain("X-Api-Key");
    expect(result.headers["WWW-Authenticate"]).toContain("Bearer");
  });
});

describe("createRegisterAuthenticator: HS256", () => {
  const options = { jwtSecret: SECRET };
  const authenticator = createRegisterAuthenticator(options);

  it("accepts a valid token and returns its subject", async () => {
    const token = await signHs256({ sub: "user-1" });
    await expect(authenticator.authenticate({ authorization: `Bearer ${token}` })).resolves.toEqual({
      kind: "jwt",
      subject: "user-1",
    });
    // The scheme is case-insensitive (RFC 9110).
    await expect(authenticator.authenticate({ authorization: `bearer ${token}` })).resolves.toMatchObject({
      subject: "user-1",
    });
  });

  it("refuses a token signed with another secret, without echoing it", async () => {
    const token = await signHs256({ sub: "user-1" }, "another-secret-another-secret-another");
    const result = await failure(options, { authorization: `Bearer ${token}` });
    expect(result).toMatchObject({ status: 401, code: "invalid_token" });
    expect(result.message).not.toContain(token);
    expect(result.message).not.toContain(token.split(".")[2]);
    expect(result.headers["WWW-Authenticate"]).toContain('error="invalid_token"');
  });

  it("refuses an expired token with token_expired", async () => {
    const token = await signHs256({ sub: "user-1" }, SECRET, nowSeconds() - 120);
    const result = await failure(options, { authorization: `Bearer ${token}` });
    expect(result).toMatchObject({ status: 401, code: "token_expired" });
  });

  it("forgives a few seconds of clock skew, not more than the tolerance", async () => {
    const justExpired = await signHs256({ sub: "user-1" }, SECRET, nowSeconds() - 10);
    await expect(authenticator.authenticate({ authorization: `Bearer ${justExpired}` })).resolves.toMatchObject({
      subject: "user-1",
    });
    const strict = createRegisterAuthenticator({ jwtSecret: SECRET, clockToleranceSeconds: 0 });
    await expect(strict.authenticate({ authorization: `Bearer ${justExpired}` })).rejects.toMatchObject({
      code: "token_expired",
    });
  });

  it("requires exp", async () => {
    const token = await signHs256({ sub: "user-1" }, SECRET, null);
    const result = await failure(options, { authorization: `Bearer ${token}` });
    expect(result).toMatchObject({ status: 401, code: "invalid_token" });
    expect(result.message).toContain('"exp"');
  });

  it("requires sub, and a non-empty string one", async () => {
    const missing = await signHs256({ name: "no subject" });
    expect(await failure(options, { authorization: `Bearer ${missing}` })).toMatchObject({
      status: 401,
      code: "invalid_token",
      message: expect.stringContaining('"sub"'),
    });
    const empty = await signHs256({ sub: "" });
    expect(await failure(options, { authorization: `Bearer ${empty}` })).toMatchObject({ code: "invalid_token" });
  });

  it("refuses alg none (a hand-made unsigned token)", async () => {
    const exp = nowSeconds() + 300;
    const unsigned = `${base64url({ alg: "none", typ: "JWT" })}.${base64url({ sub: "admin", exp })}.`;
    const result = await failure(options, { authorization: `Bearer ${unsigned}` });
    expect(result).toMatchObject({ status: 401, code: "invalid_token" });
    // The same payload with a bogus signature part and alg none is refused too.
    const withSignature = `${unsigned}AAAA`;
    expect(await failure(options, { authorization: `Bearer ${withSignature}` })).toMatchObject({
      code: "invalid_token",
    });
  });

  it("refuses other HMAC algorithms than HS256", async () => {
    const token = await new SignJWT({ sub: "user-1" })
      .setProtectedHeader({ alg: "HS512" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));
    expect(await failure(options, { authorization: `Bearer ${token}` })).toMatchObject({ code: "invalid_token" });
  });

  it("checks issuer and audience when configured", async () => {
    const strict = { jwtSecret: SECRET, jwtIssuer: "https://site.example", jwtAudience: "im-bridge" };
    const good = await signHs256({ sub: "u", iss: "https://site.example", aud: ["other", "im-bridge"] });
    await expect(
      createRegisterAuthenticator(strict).authenticate({ authorization: `Bearer ${good}` }),
    ).resolves.toMatchObject({ subject: "u" });

    const wrongIssuer = await signHs256({ sub: "u", iss: "https://evil.example", aud: "im-bridge" });
    const issuerResult = await failure(strict, { authorization: `Bearer ${wrongIssuer}` });
    expect(issuerResult).toMatchObject({ status: 401, code: "invalid_token" });
    expect(issuerResult.message).toContain('"iss"');
    expect(issuerResult.message).not.toContain("evil");

    const wrongAudience = await signHs256({ sub: "u", iss: "https://site.example", aud: "someone-else" });
    expect(await failure(strict, { authorization: `Bearer ${wrongAudience}` })).toMatchObject({
      code: "invalid_token",
      message: expect.stringContaining('"aud"'),
    });

    const noAudience = await signHs256({ sub: "u", iss: "https://site.example" });
    expect(await failure(strict, { authorization: `Bearer ${noAudience}` })).toMatchObject({ code: "invalid_token" });
  });

  it("refuses malformed Authorization headers", async () => {
    for (const authorization of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "Bearer a b", "x"]) {
      const result = await failure(options, { authorization });
      expect(result, authorization).toMatchObject({ status: 401, code: "unauthorized" });
      expect(result.message).toContain("Bearer <JWT>");
    }
  });

  it("refuses garbage in a well-formed Bearer header as an invalid token", async () => {
    for (const token of ["abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA"]) {
      expect(await failure(options, { authorization: `Bearer ${token}` })).toMatchObject({ code: "invalid_token" });
    }
  });

  it("refuses a repeated Authorization header", async () => {
    const token = await signHs256({ sub: "user-1" });
    const result = await failure(options, { authorization: [`Bearer ${token}`, `Bearer ${token}`] });
    expect(result).toMatchObject({ status: 401, code: "unauthorized" });
  });

  it("says when Bearer tokens are not configured", async () => {
    const token = await signHs256({ sub: "user-1" });
    const result = await failure({ serviceApiKey: API_KEY }, { authorization: `Bearer ${token}` });
    expect(result).toMatchObject({ status: 401, code: "unauthorized" });
    expect(result.message).toContain("IM_AUTH_JWT_SECRET");
  });
});

describe("createRegisterAuthenticator: X-Api-Key", () => {
  const options = { serviceApiKey: API_KEY };

  it("accepts the right key", async () => {
    await expect(createRegisterAuthenticator(options).authenticate({ "x-api-key": API_KEY })).resolves.toEqual({
      kind: "service",
    });
  });

  it("refuses a wrong key of the same length and one of another length, without echoing them", async () => {
    const sameLength = `${API_KEY.slice(0, -1)}X`;
    for (const key of [sameLength, "short", `${API_KEY}-and-more`, ""]) {
      const result = await failure(options, { "x-api-key": key });
      expect(result).toMatchObject({ status: 401, code: "unauthorized" });
      if (key) expect(result.message).not.toContain(key);
    }
  });

  it("says when API keys are not configured", async () => {
    const result = await failure({ jwtSecret: SECRET }, { "x-api-key": API_KEY });
    expect(result).toMatchObject({ status: 401, code: "unauthorized" });
    expect(result.message).toContain("IM_SERVICE_API_KEY");
  });

  it("decides on the API key when both credentials are sent", async () => {
    const both = { jwtSecret: SECRET, serviceApiKey: API_KEY };
    const token = await signHs256({ sub: "user-1" });
    await expect(
      createRegisterAuthenticator(both).authenticate({ authorization: `Bearer ${token}`, "x-api-key": API_KEY }),
    ).resolves.toEqual({ kind: "service" });
    // A wrong key is not rescued by a valid JWT.
    expect(await failure(both, { authorization: `Bearer ${token}`, "x-api-key": "wrong" })).toMatchObject({
      code: "unauthorized",
    });
  });
});

describe("createRegisterAuthenticator: JWKS", () => {
  let server: Server;
  let jwksUrl: string;
  let jwksRequests = 0;
  let failJwks = false;
  const keys: JWK[] = [];
  let rsaPrivate: CryptoKey;
  let rsaPublicPem: string;
  let ecPrivate: CryptoKey;
  let strangerPrivate: CryptoKey;

  beforeAll(async () => {
    const rsa = await generateKeyPair("RS256");
    const ec = await generateKeyPair("ES256");
    const stranger = await generateKeyPair("RS256");
    rsaPrivate = rsa.privateKey;
    ecPrivate = ec.privateKey;
    strangerPrivate = stranger.privateKey;
    rsaPublicPem = await exportSPKI(rsa.publicKey);
    keys.push({ ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" });
    keys.push({ ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" });

    server = createServer((request, response) => {
      jwksRequests++;
      if (failJwks || request.url !== "/.well-known/jwks.json") {
        response.writeHead(failJwks ? 500 : 404).end();
        return;
      }
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    jwksUrl = `http://127.0.0.1:${port}/.well-known/jwks.json`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function sign(alg: "RS256" | "ES256", kid: string, key: CryptoKey, payload: JWTPayload = { sub: "jwks-user" }) {
    return new SignJWT(payload).setProtectedHeader({ alg, kid }).setIssuedAt().setExpirationTime("5m").sign(key);
  }

  it("accepts RS256 and ES256 tokens signed by keys of the JWKS", async () => {
    const authenticator = createRegisterAuthenticator({ jwksUrl });
    const rs = await sign("RS256", "rsa-1", rsaPrivate);
    const es = await sign("ES256", "ec-1", ecPrivate, { sub: "ec-user" });
    await expect(authenticator.authenticate({ authorization: `Bearer ${rs}` })).resolves.toEqual({
      kind: "jwt",
      subject: "jwks-user",
    });
    await expect(authenticator.authenticate({ authorization: `Bearer ${es}` })).resolves.toEqual({
      kind: "jwt",
      subject: "ec-user",
    });
  });

  it("uses the injected fetch", async () => {
    let calls = 0;
    const countingFetch: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const authenticator = createRegisterAuthenticator({ jwksUrl }, { fetch: countingFetch });
    const token = await sign("RS256", "rsa-1", rsaPrivate);
    await authenticator.authenticate({ authorization: `Bearer ${token}` });
    await authenticator.authenticate({ authorization: `Bearer ${token}` });
    // The key set is cached after the first fetch.
    expect(calls).toBe(1);
  });

  it("refuses a token signed by a key outside the JWKS", async () => {
    const token = await sign("RS256", "rsa-1", strangerPrivate);
    expect(await failure({ jwksUrl }, { authorization: `Bearer ${token}` })).toMatchObject({
      status: 401,
      code: "invalid_token",
    });
    const unknownKid = await sign("RS256", "nobody", strangerPrivate);
    expect(await failure({ jwksUrl }, { authorization: `Bearer ${unknownKid}` })).toMatchObject({
      code: "invalid_token",
    });
  });

  it("refuses HS256 signed with the public key (algorithm confusion) when only the JWKS is configured", async () => {
    const token = await signHs256({ sub: "attacker" }, rsaPublicPem);
    expect(await failure({ jwksUrl }, { authorization: `Bearer ${token}` })).toMatchObject({
      status: 401,
      code: "invalid_token",
    });
  });

  it("accepts both sources when both are configured, each with its own algorithms", async () => {
    const authenticator = createRegisterAuthenticator({ jwksUrl, jwtSecret: SECRET });
    const hs = await signHs256({ sub: "hs-user" });
    const rs = await sign("RS256", "rsa-1", rsaPrivate);
    await expect(authenticator.authenticate({ authorization: `Bearer ${hs}` })).resolves.toMatchObject({
      subject: "hs-user",
    });
    await expect(authenticator.authenticate({ authorization: `Bearer ${rs}` })).resolves.toMatchObject({
      subject: "jwks-user",
    });
  });

  it("answers 503 auth_unavailable when the JWKS cannot be fetched", async () => {
    const token = await sign("RS256", "rsa-1", rsaPrivate);
    failJwks = true;
    try {
      const serverError = await failure({ jwksUrl }, { authorization: `Bearer ${token}` });
      expect(serverError).toMatchObject({ status: 503, code: "auth_unavailable" });
    } finally {
      failJwks = false;
    }
    // Nothing listens on port 1 of localhost: a connection failure is also our outage.
    const unreachable = await failure(
      { jwksUrl: "http://127.0.0.1:1/jwks.json" },
      { authorization: `Bearer ${token}` },
    );
    expect(unreachable).toMatchObject({ status: 503, code: "auth_unavailable" });
    expect(jwksRequests).toBeGreaterThan(0);
  });
});
