/**
 * Hostile and malformed input against both endpoints, over real ports: broken, huge and deeply
 * nested JSON, wrong types, Unicode edge cases, injection strings, odd and repeated headers, bad
 * and replayed signatures, oversized and stalled bodies, odd URLs and methods.
 *
 * Every case checks the status (and the JSON error shape when an HTTP answer is given), that
 * nothing reached NIM and nothing was written beyond what the case expects (audit rows may grow:
 * rejections are audited), and that the server still serves a good request afterwards.
 */
import { request as httpRequest } from "node:http";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildMessageCopy, newMessageIdServer } from "../src/callback/build.ts";
import { callbackChecksum, md5Hex, signCallback } from "../src/callback/sign.ts";
import {
  APP_SECRET,
  BOT,
  countRows,
  type RawExchange,
  rawHttp,
  SERVICE_KEY,
  type Stack,
  signedCallbackHeaders,
  sleep,
  startStack,
  WRITABLE_TABLES,
} from "./harness.ts";

const JWT_SECRET = "hostile-suite-jwt-secret";
const REQUEST_TIMEOUT_MS = 1_500;
const WINDOW_SECONDS = 3;
const PER_USER_LIMIT = 3;

interface Outcome {
  /** Undefined when the server closed the connection without an answer. */
  status: number | undefined;
  headers: Record<string, string>;
  text: string;
  closed?: boolean;
  elapsedMs?: number;
}

type Headers = Record<string, string> | string[];

let stack: Stack;

/** node:http without keep-alive, so no request meets a socket the server is closing. */
function send(method: string, path: string, headers: Headers, body?: string | Buffer): Promise<Outcome> {
  const url = new URL(stack.bridgeUrl);
  // An explicit length: for DELETE and GET node:http would otherwise send the body unframed.
  const framed =
    body === undefined || Array.isArray(headers)
      ? headers
      : { ...headers, "content-length": String(Buffer.byteLength(body)) };
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host: url.hostname, port: url.port, method, path, headers: framed, agent: false, timeout: 10_000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const flat: Record<string, string> = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(", ") : value;
          }
          resolve({ status: response.statusCode, headers: flat, text: Buffer.concat(chunks).toString("utf8") });
        });
        response.on("error", reject);
      },
    );
    request.on("timeout", () => request.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
    request.on("error", reject);
    request.end(body);
  });
}

function fromRaw(exchange: RawExchange): Outcome {
  return {
    status: exchange.status,
    headers: exchange.headers,
    text: exchange.body,
    closed: exchange.closed,
    elapsedMs: exchange.elapsedMs,
  };
}

function postCallback(body: string | Buffer, headers: Record<string, string> = signedCallbackHeaders(body)) {
  return send("POST", "/im/callback", headers, body);
}

function postSigned(body: string | Buffer, curTime = Date.now()) {
  return postCallback(body, signedCallbackHeaders(body, curTime));
}

function postRegister(body: string | Buffer, headers: Record<string, string> = { "x-api-key": SERVICE_KEY }) {
  return send("POST", "/im/register", { "content-type": "application/json", ...headers }, body);
}

function registerJson(value: unknown, headers?: Record<string, string>) {
  return postRegister(JSON.stringify(value), headers);
}

/** A raw request with the body's Content-Length computed, header lines given as written. */
function rawRequest(method: string, path: string, headerLines: string[], body = "") {
  const bytes = Buffer.from(body, "utf8");
  const head = [
    `${method} ${path} HTTP/1.1`,
    `Host: ${new URL(stack.bridgeUrl).host}`,
    ...headerLines,
    `Content-Length: ${bytes.length}`,
    "Connection: close",
  ].join("\r\n");
  return rawHttp(stack.bridgeUrl, [`${head}\r\n\r\n`, bytes]).then(fromRaw);
}

function jwt(subject: string | undefined, options: { secret?: string; expiresIn?: string } = {}) {
  const token = new SignJWT(subject === undefined ? {} : { sub: subject }).setProtectedHeader({ alg: "HS256" });
  token.setExpirationTime(options.expiresIn ?? "1h");
  return token.sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

/** A user→bot TEXT copy as NIM writes it, with fields overridden (raw JSON text: anything goes). */
function copyWith(overrides: Record<string, unknown>, from = "u_hostile_nobody"): string {
  const copy: Record<string, unknown> = buildMessageCopy({ from, to: BOT, body: "hello" });
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete copy[key];
    else copy[key] = value;
  }
  return JSON.stringify(copy);
}

function nested(depth: number, open: string, close: string, inner = "1"): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

type Expectation = {
  /** HTTP status, or "closed" for a connection ended without an answer within the bound. */
  status: number | "closed" | "408-or-closed";
  /** JSON error code expected in the body. */
  code?: string;
  /** Rows each table may gain (default 0); and accounts NIM may gain. */
  writes?: Partial<Record<(typeof WRITABLE_TABLES)[number], number>>;
  nimAccounts?: number;
  /** Further checks on the outcome. */
  check?: (outcome: Outcome) => void | Promise<void>;
};

interface HostileCase extends Expectation {
  name: string;
  run: () => Promise<Outcome>;
}

const acknowledged = (name: string, body: () => string | Buffer): HostileCase => ({
  name: `callback, signed, ${name}: acknowledged 200, nothing written`,
  run: () => postSigned(body()),
  status: 200,
  check: (outcome) => expect(JSON.parse(outcome.text)).toEqual({ ok: true }),
});

const badRegister = (name: string, value: unknown, code = "bad_request"): HostileCase => ({
  name: `register, ${name}: 400`,
  run: () => registerJson(value),
  status: 400,
  code,
});

/** A hostile but valid user id: registered (one account here and at NIM) under an h_ accid. */
const oddButValidUser = (name: string, userId: string): HostileCase => ({
  name: `register, ${name}: 200 with a hashed accid`,
  run: () => registerJson({ user_id: userId }),
  status: 200,
  writes: { accounts: 1 },
  nimAccounts: 1,
  check: (outcome) => {
    const body = JSON.parse(outcome.text) as { accid: string; token: string; bot: string };
    expect(body.accid).toMatch(/^h_[0-9a-f]{30}$/);
    expect(body.bot).toBe(BOT);
    expect(Object.keys(body).sort()).toEqual(["accid", "bot", "bots", "expires_at", "token"]);
    expect(outcome.text).not.toContain("<script>");
  },
});

const cases: HostileCase[] = [
  // ---- /im/callback: bodies ----
  {
    name: "callback, broken JSON without a signature: 401",
    run: () => postCallback('{"eventType":"1",', { "content-type": "application/json" }),
    status: 401,
    code: "invalid_signature",
  },
  acknowledged("broken JSON", () => '{"eventType":"1","convType":'),
  acknowledged("deeply nested object (10 000 levels)", () => nested(10_000, '{"a":', "}")),
  acknowledged("deeply nested array (10 000 levels)", () => nested(10_000, "[", "]")),
  acknowledged("a JSON string, not an object", () => '"just a string"'),
  acknowledged("JSON null", () => "null"),
  acknowledged("eventType as an object", () => copyWith({ eventType: { $gt: "" } })),
  acknowledged("msgidServer that is not digits", () => copyWith({ msgidServer: "1 OR 1=1" })),
  acknowledged("msgidServer as a float", () => copyWith({ msgidServer: 1.5 })),
  acknowledged("fromAccount as an array", () => copyWith({ fromAccount: ["u_a", "u_b"] })),
  acknowledged("TEXT body as a number", () => copyWith({ body: 42 })),
  acknowledged("TEXT body missing", () => copyWith({ body: undefined })),
  acknowledged("msgTimestamp that is not a number", () => copyWith({ msgTimestamp: "yesterday" })),
  acknowledged("antispam flag that is neither true nor false", () => copyWith({ antispam: "maybe" })),
  acknowledged("convType as a number", () => copyWith({ convType: 1 })),
  acknowledged("a message to someone else with RTL override, zero-width and NUL", () =>
    JSON.stringify(buildMessageCopy({ from: "u_x", to: "u_y\u202e\u200b", body: "\u0000\u0007\u202etxt.exe\u200b" })),
  ),
  acknowledged(
    "lone surrogates escaped in every string",
    () =>
      // Written as JSON escapes, the way a hostile sender would put them on the wire.
      '{"eventType":"\\ud800","convType":"\\udfff","to":"\\ud800","fromAccount":"\\udc00"}',
  ),
  acknowledged("prototype keys", () => '{"__proto__":{"eventType":"1"},"constructor":{"prototype":{"x":1}}}'),
  {
    name: "callback, signed, huge JSON over the body limit: 413",
    run: () => postSigned(JSON.stringify({ eventType: "1", pad: "x".repeat(70_000) })),
    status: 413,
    code: "body_too_large",
  },
  // ---- /im/callback: signatures ----
  {
    name: "callback, no signature headers at all: 401",
    run: () => postCallback("{}", { "content-type": "application/json" }),
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, CheckSum missing: 401",
    run: () => {
      const { CheckSum: _, ...rest } = signedCallbackHeaders("{}") as Record<string, string>;
      return postCallback("{}", rest);
    },
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, MD5 of another body: 401",
    run: () => postCallback('{"eventType":"2"}', signedCallbackHeaders("{}")),
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, CheckSum made with another secret: 401",
    run: () => {
      const signed = signCallback({ appSecret: "not-the-secret", body: "{}", curTime: Date.now() });
      return postCallback("{}", { "content-type": "application/json", ...signed });
    },
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, CheckSum garbled (non-hex, latin-1 bytes): 401",
    run: () => {
      const headers = signedCallbackHeaders("{}");
      return postCallback("{}", { ...headers, CheckSum: "zz\u00e9\u00ff".padEnd(40, "q") });
    },
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, CurTime in seconds (the server API's unit): 401",
    run: () => postSigned("{}", Math.floor(Date.now() / 1000)),
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, CurTime ten minutes in the future: 401",
    run: () => postSigned("{}", Date.now() + 600_000),
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, CurTime not a number (signed over the garbage): 401",
    run: () => {
      const md5 = md5Hex(Buffer.from("{}"));
      const curTime = "1e13";
      return postCallback("{}", {
        "content-type": "application/json",
        MD5: md5,
        CurTime: curTime,
        CheckSum: callbackChecksum(APP_SECRET, md5, curTime),
      });
    },
    status: 401,
    code: "invalid_signature",
  },
  {
    name: "callback, CurTime with 30 digits (signed): 401",
    run: () => {
      const md5 = md5Hex(Buffer.from("{}"));
      const curTime = "9".repeat(30);
      return postCallback("{}", {
        "content-type": "application/json",
        MD5: md5,
        CurTime: curTime,
        CheckSum: callbackChecksum(APP_SECRET, md5, curTime),
      });
    },
    status: 401,
    code: "invalid_signature",
  },
  ...(["CheckSum", "MD5", "CurTime"] as const).map(
    (header): HostileCase => ({
      name: `callback, ${header} sent twice (raw socket): 401`,
      run: () => {
        const signed = signCallback({ appSecret: APP_SECRET, body: "{}", curTime: Date.now() });
        const lines = Object.entries(signed).map(([name, value]) => `${name}: ${value}`);
        // The very same value twice: still refused, a repeated signature header is never guessed at.
        lines.push(`${header.toUpperCase()}: ${signed[header]}`);
        return rawRequest("POST", "/im/callback", ["Content-Type: application/json", ...lines], "{}");
      },
      status: 401,
      code: "invalid_signature",
    }),
  ),
  {
    name: "callback, oddly cased header names (raw socket): 200",
    run: () => {
      const signed = signCallback({ appSecret: APP_SECRET, body: "{}", curTime: Date.now() });
      return rawRequest(
        "POST",
        "/im/callback",
        [
          "CONTENT-TYPE: Application/JSON",
          `md5: ${signed.MD5}`,
          `cHeCkSuM: ${signed.CheckSum}`,
          `CURTIME: ${signed.CurTime}`,
        ],
        "{}",
      );
    },
    status: 200,
  },
  // ---- /im/callback: content type, URL, method ----
  {
    name: "callback, no Content-Type: 415",
    run: () => {
      const { "content-type": _, ...rest } = signedCallbackHeaders("{}");
      return postCallback("{}", rest);
    },
    status: 415,
    code: "unsupported_media_type",
  },
  {
    name: "callback, Content-Type application/jsonx: 415",
    run: () => postCallback("{}", { ...signedCallbackHeaders("{}"), "content-type": "application/jsonx" }),
    status: 415,
    code: "unsupported_media_type",
  },
  {
    name: "callback, GET: 404 JSON",
    run: () => send("GET", "/im/callback", {}),
    status: 404,
    code: "not_found",
  },
  {
    name: "callback, DELETE with a signed body: 404 JSON",
    run: () => send("DELETE", "/im/callback", signedCallbackHeaders("{}"), "{}"),
    status: 404,
    code: "not_found",
  },
  ...[
    "/im/callback/",
    "/IM/CALLBACK",
    "/im//callback",
    "/im/callback;x=1",
    "/im/%2e%2e/im/callback",
    "/im/callback%00",
  ].map(
    (path): HostileCase => ({
      name: `callback at ${JSON.stringify(path)}: 404 JSON`,
      run: () => send("POST", path, signedCallbackHeaders("{}"), "{}"),
      status: 404,
      code: "not_found",
    }),
  ),
  {
    name: "callback, path with a malformed percent escape: 400 JSON",
    run: () => send("POST", "/im/%zz", signedCallbackHeaders("{}"), "{}"),
    status: 400,
    code: "bad_request",
  },
  {
    name: "callback, an 8 KB query string on a signed validation: 200 (the query is ignored)",
    run: () => send("POST", `/im/callback?${"q=%00%ff&".repeat(900)}`, signedCallbackHeaders("{}"), "{}"),
    status: 200,
  },
  {
    name: "callback, a URL over the header size limit: 431",
    run: () => send("POST", `/im/callback?${"a".repeat(20_000)}`, signedCallbackHeaders("{}"), "{}"),
    status: 431,
    code: "headers_too_large",
  },
  {
    name: "callback, Content-Length and Transfer-Encoding together (smuggling): 400",
    run: () => {
      const signed = signCallback({ appSecret: APP_SECRET, body: "{}", curTime: Date.now() });
      const head = [
        "POST /im/callback HTTP/1.1",
        `Host: ${new URL(stack.bridgeUrl).host}`,
        "Content-Type: application/json",
        ...Object.entries(signed).map(([name, value]) => `${name}: ${value}`),
        "Content-Length: 2",
        "Transfer-Encoding: chunked",
        "Connection: close",
      ].join("\r\n");
      return rawHttp(stack.bridgeUrl, [`${head}\r\n\r\n2\r\n{}\r\n0\r\n\r\n`]).then(fromRaw);
    },
    status: 400,
    code: "bad_request",
  },
  // ---- slow and endless bodies ----
  {
    name: "callback, chunked body that never ends: cut off by the request timeout",
    run: () => {
      const head = [
        "POST /im/callback HTTP/1.1",
        `Host: ${new URL(stack.bridgeUrl).host}`,
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
      ].join("\r\n");
      return rawHttp(stack.bridgeUrl, [`${head}\r\n\r\n`, '6\r\n{"a":1\r\n'], { timeoutMs: 8_000 }).then(fromRaw);
    },
    status: "408-or-closed",
  },
  {
    name: "register, a body that trickles in one byte every 300 ms: cut off by the request timeout",
    run: () => {
      const body = JSON.stringify({ user_id: "slowpoke", name: "x".repeat(200) });
      const head = [
        "POST /im/register HTTP/1.1",
        `Host: ${new URL(stack.bridgeUrl).host}`,
        "Content-Type: application/json",
        `X-Api-Key: ${SERVICE_KEY}`,
        `Content-Length: ${body.length}`,
      ].join("\r\n");
      const pieces: Array<string | { pauseMs: number }> = [`${head}\r\n\r\n`];
      for (const character of body) pieces.push(character, { pauseMs: 300 });
      return rawHttp(stack.bridgeUrl, pieces, { timeoutMs: 8_000 }).then(fromRaw);
    },
    status: "408-or-closed",
  },
  {
    name: "callback, headers sent, then silence before the body: cut off by the request timeout",
    run: () => {
      const head = [
        "POST /im/callback HTTP/1.1",
        `Host: ${new URL(stack.bridgeUrl).host}`,
        "Content-Type: application/json",
        "Content-Length: 5000",
      ].join("\r\n");
      return rawHttp(stack.bridgeUrl, [`${head}\r\n\r\n`, '{"eventType":'], { timeoutMs: 8_000 }).then(fromRaw);
    },
    status: "408-or-closed",
  },
  // ---- /im/register: bodies ----
  {
    name: "register, broken JSON: 400",
    run: () => postRegister('{"user_id": "alice"'),
    status: 400,
    code: "invalid_json",
  },
  {
    name: "register, huge JSON over its limit: 413",
    run: () => registerJson({ user_id: "big", pad: "x".repeat(20_000) }),
    status: 413,
    code: "body_too_large",
  },
  {
    name: "register, 10 000 levels of nesting (over the limit): 413",
    run: () => postRegister(nested(10_000, "[", "]")),
    status: 413,
    code: "body_too_large",
  },
  {
    name: "register, 5 000 levels of nesting as user_id: 400",
    run: () => postRegister(`{"user_id":${nested(5_000, "[", "]")}}`),
    status: 400,
  },
  badRegister("a JSON array", ["alice"]),
  badRegister("a JSON string", "alice"),
  badRegister("JSON null", null),
  badRegister("user_id as a number", { user_id: 42 }),
  badRegister("user_id as a boolean", { user_id: true }),
  badRegister("user_id as an object", { user_id: { $ne: null } }),
  badRegister("user_id empty", { user_id: "" }),
  badRegister("user_id of 129 characters", { user_id: "a".repeat(129) }),
  badRegister("user_id null (required with the API key)", { user_id: null }),
  badRegister("name as a number", { user_id: "named", name: 7 }),
  badRegister("name of 65 characters", { user_id: "named", name: "n".repeat(65) }),
  badRegister('refresh as the string "true"', { user_id: "fresh", refresh: "true" }),
  {
    name: "register, a lone high surrogate escaped in JSON: 400",
    run: () => postRegister('{"user_id":"alice\\ud800"}'),
    status: 400,
  },
  {
    name: "register, a lone low surrogate escaped in the name: 400",
    run: () => postRegister('{"user_id":"bob","name":"\\udc00x"}'),
    status: 400,
  },
  badRegister("NUL in user_id", { user_id: "ali\u0000ce" }),
  badRegister("ESC and BEL in user_id", { user_id: "\u001b[31mred\u0007" }),
  badRegister("a C1 control (NEL) in name", { user_id: "nel", name: "a\u0085b" }),
  badRegister("newline in name (log injection)", { user_id: "logger", name: "x\ninfo: forged log line" }),
  {
    name: "register, __proto__ key (prototype pollution): 400",
    run: () => postRegister('{"user_id":"proto","__proto__":{"admin":true}}'),
    status: 400,
  },
  oddButValidUser("SQL in user_id", "'; DROP TABLE accounts;--"),
  oddButValidUser("HTML in user_id", "<script>alert(1)</script>"),
  oddButValidUser("RTL override in user_id", "alice\u202egpj.exe"),
  oddButValidUser("zero-width space in user_id", "ali\u200bce"),
  {
    name: "register, HTML and SQL in name: 200, stored verbatim at NIM, never echoed",
    run: () => registerJson({ user_id: "named_user", name: "<img src=x onerror=alert(1)>' OR 1=1 --" }),
    status: 200,
    writes: { accounts: 1 },
    nimAccounts: 1,
    check: (outcome) => {
      const body = JSON.parse(outcome.text) as { accid: string };
      expect(body.accid).toBe("u_named_user");
      expect(outcome.text).not.toContain("<img");
      expect(stack.emulator.state.findAccount("u_named_user")?.name).toBe("<img src=x onerror=alert(1)>' OR 1=1 --");
    },
  },
  // ---- /im/register: credentials and headers ----
  {
    name: "register, no credentials: 401",
    run: () => registerJson({ user_id: "anon" }, {}),
    status: 401,
    code: "unauthorized",
  },
  {
    name: "register, wrong API key: 401",
    run: () => registerJson({ user_id: "anon" }, { "x-api-key": `${SERVICE_KEY}x` }),
    status: 401,
  },
  {
    name: "register, garbled bearer token: 401",
    run: () => registerJson({ user_id: "anon" }, { authorization: "Bearer !!!not-a-jwt###" }),
    status: 401,
  },
  {
    name: 'register, unsigned JWT (alg "none"): 401',
    run: () => {
      const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const token = `${part({ alg: "none", typ: "JWT" })}.${part({ sub: "anon", exp: 4_000_000_000 })}.`;
      return registerJson({}, { authorization: `Bearer ${token}` });
    },
    status: 401,
  },
  {
    name: "register, JWT signed with another secret: 401",
    run: async () => registerJson({}, { authorization: `Bearer ${await jwt("anon", { secret: "other" })}` }),
    status: 401,
  },
  {
    name: "register, expired JWT: 401",
    run: async () => registerJson({}, { authorization: `Bearer ${await jwt("anon", { expiresIn: "-2h" })}` }),
    status: 401,
    code: "token_expired",
  },
  {
    name: "register, JWT for another user than user_id: 403",
    run: async () => registerJson({ user_id: "victim" }, { authorization: `Bearer ${await jwt("attacker")}` }),
    status: 403,
    code: "user_mismatch",
  },
  {
    name: "register, JWT whose sub holds a NUL: 400",
    run: async () => registerJson({}, { authorization: `Bearer ${await jwt("evil\u0000sub")}` }),
    status: 400,
  },
  {
    name: "register, X-Api-Key sent twice, both correct (raw socket): 401",
    run: () =>
      rawRequest(
        "POST",
        "/im/register",
        ["Content-Type: application/json", `X-Api-Key: ${SERVICE_KEY}`, `x-api-key: ${SERVICE_KEY}`],
        JSON.stringify({ user_id: "twice" }),
      ),
    status: 401,
  },
  {
    name: "register, Authorization sent twice, valid then garbage (raw socket): 401",
    run: async () =>
      rawRequest(
        "POST",
        "/im/register",
        [
          "Content-Type: application/json",
          `Authorization: Bearer ${await jwt("dup_a")}`,
          "authorization: Bearer x.y.z",
        ],
        "{}",
      ),
    status: 401,
  },
  {
    name: "register, Authorization sent twice, garbage then valid (raw socket): 401",
    run: async () =>
      rawRequest(
        "POST",
        "/im/register",
        [
          "Content-Type: application/json",
          "Authorization: Bearer x.y.z",
          `AUTHORIZATION: Bearer ${await jwt("dup_b")}`,
        ],
        "{}",
      ),
    status: 401,
  },
  {
    name: "register, oddly cased header names (raw socket): 200",
    run: () =>
      rawRequest(
        "POST",
        "/im/register",
        ["CoNtEnT-TyPe: Application/JSON; Charset=UTF-8", `X-API-KEY: ${SERVICE_KEY}`],
        JSON.stringify({ user_id: "odd_case" }),
      ),
    status: 200,
    writes: { accounts: 1 },
    nimAccounts: 1,
  },
  {
    name: "register, Content-Type text/plain with a JSON body: 415",
    run: () =>
      send("POST", "/im/register", { "content-type": "text/plain", "x-api-key": SERVICE_KEY }, '{"user_id":"t"}'),
    status: 415,
    code: "unsupported_media_type",
  },
  {
    name: "register, GET with a query: 404 JSON",
    run: () => send("GET", "/im/register?user_id=alice", { "x-api-key": SERVICE_KEY }),
    status: 404,
    code: "not_found",
  },
  {
    name: "register, PUT: 404 JSON",
    run: () => send("PUT", "/im/register", { "content-type": "application/json", "x-api-key": SERVICE_KEY }, "{}"),
    status: 404,
    code: "not_found",
  },
  {
    name: `register, the same user a ${PER_USER_LIMIT + 1}th time in a minute: 429 with Retry-After`,
    run: async () => {
      for (let attempt = 0; attempt < PER_USER_LIMIT; attempt += 1) {
        const outcome = await registerJson({ user_id: "hammer" });
        expect(outcome.status).toBe(200);
      }
      return registerJson({ user_id: "hammer" });
    },
    status: 429,
    code: "rate_limited",
    writes: { accounts: 1 },
    nimAccounts: 1,
    check: (outcome) => expect(Number(outcome.headers["retry-after"])).toBeGreaterThanOrEqual(1),
  },
];

interface Snapshot {
  rows: Record<string, number>;
  botMessages: number;
  nimMessages: number;
  nimAccounts: number;
}

async function snapshot(): Promise<Snapshot> {
  return {
    rows: await countRows(stack.bridge!.database),
    botMessages: stack.emulator.state.messagesMatching({ from: BOT }).length,
    nimMessages: stack.emulator.state.messages.length,
    nimAccounts: stack.emulator.state.accounts.size,
  };
}

function expectJsonErrorShape(outcome: Outcome, code?: string) {
  expect(outcome.headers["content-type"] ?? "").toMatch(/^application\/json/);
  const body = JSON.parse(outcome.text) as { error?: { code?: unknown; message?: unknown } };
  expect(typeof body.error?.code).toBe("string");
  expect(typeof body.error?.message).toBe("string");
  if (code !== undefined) expect(body.error?.code).toBe(code);
}

async function expectStillServing() {
  const validation = await postSigned("{}");
  expect(validation.status).toBe(200);
  expect(JSON.parse(validation.text)).toEqual({ ok: true });
}

describe("hostile input", () => {
  beforeAll(async () => {
    stack = await startStack({
      env: {
        HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        CALLBACK_TIME_WINDOW_SECONDS: String(WINDOW_SECONDS),
        IM_AUTH_JWT_SECRET: JWT_SECRET,
        REGISTER_LIMIT_PER_IP_PER_MINUTE: "100000",
        REGISTER_LIMIT_PER_USER_PER_MINUTE: String(PER_USER_LIMIT),
      },
      scenario: { kind: "text", text: "The one and only answer.", pieces: 3, delayMs: 5 },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("has at least 40 cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
  });

  it.each(cases)("$name", async (testCase) => {
    const before = await snapshot();
    const startedAt = Date.now();
    const outcome = await testCase.run();
    const elapsedMs = outcome.elapsedMs ?? Date.now() - startedAt;

    if (testCase.status === "408-or-closed" || testCase.status === "closed") {
      // Bounded: the request timeout (plus the server's check granularity), never the client's patience.
      expect(elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 3_000);
      if (outcome.status !== undefined) {
        expect(testCase.status).toBe("408-or-closed");
        expect(outcome.status).toBe(408);
        expectJsonErrorShape(outcome, "request_timeout");
      } else {
        expect(outcome.closed).toBe(true);
      }
    } else {
      expect({ status: outcome.status, text: outcome.text.slice(0, 300) }).toMatchObject({ status: testCase.status });
      if (testCase.status >= 400) expectJsonErrorShape(outcome, testCase.code);
    }
    await testCase.check?.(outcome);

    // Anything wrongly accepted would be sent to NIM shortly after the answer: give it the chance.
    if (outcome.status === 200) await sleep(150);
    const after = await snapshot();
    for (const table of WRITABLE_TABLES) {
      expect({ table, added: (after.rows[table] ?? 0) - (before.rows[table] ?? 0) }).toEqual({
        table,
        added: testCase.writes?.[table] ?? 0,
      });
    }
    expect(after.botMessages).toBe(before.botMessages);
    expect(after.nimAccounts - before.nimAccounts).toBe(testCase.nimAccounts ?? 0);
    if (!testCase.nimAccounts) expect(after.nimMessages).toBe(before.nimMessages);
    await expectStillServing();
  });

  it("a replayed callback (same bytes, same headers) later gets no second reply; past the window it gets 401", async () => {
    const accid = await stack.register("replayed");
    const msgidServer = newMessageIdServer();
    const body = JSON.stringify(buildMessageCopy({ from: accid, to: BOT, body: "only once", msgidServer }));
    const curTime = Date.now();
    const headers = signedCallbackHeaders(body, curTime);
    expect((await postCallback(body, headers)).status).toBe(200);
    const reply = await stack.waitForReply(msgidServer);
    expect(reply.status).toBe("ok");
    const delivered = reply.messages.length;
    const rows = await countRows(stack.bridge!.database);

    // Later, but inside the window: acknowledged (NIM may redeliver), no new work.
    await sleep(1_000);
    const again = await postCallback(body, headers);
    expect(again.status).toBe(200);
    expect(JSON.parse(again.text)).toEqual({ ok: true });
    await sleep(300);
    expect(stack.delivered(msgidServer).messages).toHaveLength(delivered);

    // Past the window the same captured request is refused outright.
    await sleep(Math.max(0, curTime + WINDOW_SECONDS * 1000 + 200 - Date.now()));
    const stale = await postCallback(body, headers);
    expect(stale.status).toBe(401);
    expectJsonErrorShape(stale, "invalid_signature");
    expect(JSON.parse(stale.text).error.message).toContain("too-old");
    await sleep(200);
    expect(stack.delivered(msgidServer).messages).toHaveLength(delivered);
    const rowsAfter = await countRows(stack.bridge!.database);
    for (const table of WRITABLE_TABLES) expect(rowsAfter[table]).toBe(rows[table]);
    const audit = await stack.bridge!.repositories.audit.list({ event: "callback.rejected" });
    expect(audit.some((row) => JSON.parse(row.detail ?? "{}").reason === "too-old")).toBe(true);
  });

  it("the same callback posted 10 times at once gets exactly one reply", async () => {
    const accid = await stack.register("stampede");
    const msgidServer = newMessageIdServer();
    const body = JSON.stringify(buildMessageCopy({ from: accid, to: BOT, body: "at once", msgidServer }));
    const headers = signedCallbackHeaders(body);
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => postCallback(body, headers)));
    expect(outcomes.map((outcome) => outcome.status)).toEqual(Array(10).fill(200));
    const reply = await stack.waitForReply(msgidServer);
    await sleep(300);
    const final = stack.delivered(msgidServer);
    expect(final.messages.filter((entry) => entry.body.done)).toHaveLength(1);
    expect(final.messages.length).toBe(reply.messages.length);
    expect(final.deltaText).toBe(final.finalText);
  });

  it("still answers a real user normally after all of that", async () => {
    const accid = await stack.register("survivor");
    const reply = await stack.waitForReply(await stack.send(accid, "are you still there?"));
    expect(reply.status).toBe("ok");
    expect(reply.finalText).toBe("The one and only answer.");
  });
});
