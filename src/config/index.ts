/**
 * The one place that reads the environment. Every setting of the contract and of the README's
 * configuration table is parsed here with zod; anything missing or invalid is reported all at once,
 * naming each variable, so an operator fixes the whole environment in one go.
 */
import { z } from "zod";
import { AllowedHostsError, DEFAULT_MEDIA_ALLOWED_HOSTS, parseAllowedHosts } from "../media/hosts.ts";
import type { MediaSettings } from "../media/index.ts";
import { isTimeZone } from "../usage/day.ts";

const optionalText = z
  .string()
  .trim()
  .transform((value) => (value === "" ? undefined : value))
  .optional();

const integer = (fallback: number, minimum = 0, maximum = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(minimum).max(maximum).default(fallback);

const booleanFlag = (fallback: boolean) =>
  z
    .enum(["true", "false", "1", "0", "yes", "no"])
    .default(fallback ? "true" : "false")
    .transform((value) => value === "true" || value === "1" || value === "yes");

const environmentSchema = z.object({
  NIM_APP_KEY: optionalText,
  NIM_APP_SECRET: optionalText,
  NIM_BOT_ACCID: optionalText.refine(
    (value) => value === undefined || /^[a-zA-Z0-9_@.-]{1,32}$/.test(value),
    "must be 1-32 characters of a-z 0-9 _ @ . -",
  ),
  NIM_API_BASE: z.url().default("https://api.yunxinapi.com/nimserver"),
  NIM_OPEN_API_BASE: z.url().default("https://open.yunxinapi.com"),
  NIM_STREAM_MODE: z.enum(["custom", "native"]).default("custom"),
  /**
   * Native streams: quiet time before a keep-alive chunk, so NIM's 30 s gap rule never ends a
   * stream message while the generator thinks. UNCONFIRMED at NIM that an empty chunk resets it.
   */
  NIM_STREAM_KEEPALIVE_MS: integer(20_000, 100, 29_000),
  /** Per-call timeout for NIM's server API. NIM's own SDK uses 5 s. */
  NIM_REQUEST_TIMEOUT_MS: integer(5_000, 100),
  /** Overall deadline of one logical NIM call including all retries. */
  NIM_RETRY_DEADLINE_MS: integer(30_000, 0),
  NIM_RETRY_MAX_ATTEMPTS: integer(6, 1, 50),
  /**
   * Sockets per NIM origin (keep-alive, reused). Calls beyond it wait for a free socket, within
   * their NIM_REQUEST_TIMEOUT_MS: throughput is about this many calls per NIM round trip.
   */
  NIM_HTTP_CONNECTIONS: integer(64, 1, 1024),

  PORT: integer(8000, 0, 65_535),
  HOST: z.string().default("0.0.0.0"),
  DATABASE_URL: z
    .string()
    .default("sqlite:./data/im-bridge.db")
    .refine(
      (value) => value.startsWith("sqlite:") || /^postgres(ql)?:\/\//.test(value),
      "must be sqlite:PATH or postgres://…",
    ),
  REDIS_URL: optionalText.refine(
    (value) => value === undefined || /^rediss?:\/\//.test(value),
    "must be redis://… or rediss://…",
  ),
  /**
   * Prepended (with ':') to every Redis key im-bridge writes: BullMQ's prefix (instead of `bull`),
   * the rate limits and the register lock. Lets several deployments (or test runs) share one Redis.
   */
  REDIS_KEY_PREFIX: optionalText.refine(
    (value) => value === undefined || /^[A-Za-z0-9_.-]{1,64}$/.test(value),
    "must be 1-64 characters of A-Z a-z 0-9 _ . -",
  ),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),

  IM_AUTH_JWT_SECRET: optionalText,
  IM_AUTH_JWKS_URL: optionalText.refine((value) => value === undefined || URL.canParse(value), "must be a URL"),
  IM_AUTH_JWT_ISSUER: optionalText,
  IM_AUTH_JWT_AUDIENCE: optionalText,
  IM_SERVICE_API_KEY: optionalText,

  /** Callback CurTime must be within this many seconds of our clock, in both directions. */
  CALLBACK_TIME_WINDOW_SECONDS: integer(300, 1),
  /** Largest request body accepted on any route. NIM's biggest callback is well under this. */
  HTTP_BODY_LIMIT_BYTES: integer(64 * 1024, 1024),
  /** A client that has not sent its whole request by then is cut off (slow-body attacks). */
  HTTP_REQUEST_TIMEOUT_MS: integer(10_000, 100),
  /** Comma-separated CIDRs or addresses allowed to call /im/callback; empty = anyone (signature still required). */
  CALLBACK_ALLOWED_IPS: z.string().default(""),
  /** Proxies whose X-Forwarded-For is believed (CIDRs). */
  TRUSTED_PROXIES: z.string().default(""),
  /** `all` runs HTTP and a worker; `http` only takes requests; `worker` only produces replies. */
  SERVE_ROLE: z.enum(["all", "http", "worker"]).default("all"),

  REGISTER_LIMIT_PER_IP_PER_MINUTE: integer(60, 0),
  REGISTER_LIMIT_PER_USER_PER_MINUTE: integer(10, 0),
  REPLY_LIMIT_PER_MINUTE: integer(20, 0),
  REPLY_LIMIT_PER_DAY: integer(500, 0),
  /** Global budget of NIM sends per second, so bursts wait instead of running into 416. */
  /**
   * NIM's per-second limit for sendMsg is not published (nim-protocol.md §3.2, UNCONFIRMED); its
   * user-API category allows 100/s on the standard plan and more on the others. 200/s lets a
   * burst of a few hundred replies start within a second or two; set it to your plan's figure.
   */
  NIM_SEND_RATE_PER_SECOND: integer(200, 0),

  MODERATION_KEYWORDS_FILE: optionalText,
  MODERATION_HTTP_URL: optionalText.refine((value) => value === undefined || URL.canParse(value), "must be a URL"),
  MODERATION_HTTP_TIMEOUT_MS: integer(2000, 1),
  MODERATION_FAIL_OPEN: booleanFlag(false),
  MODERATION_RESPECT_NIM_ANTISPAM: booleanFlag(true),

  OPENAI_BASE_URL: optionalText,
  OPENAI_API_KEY: optionalText,
  OPENAI_MODEL: z.string().default("gpt-4o-mini"),
  GENERATOR_HTTP_URL: optionalText,
  BOT_SYSTEM_PROMPT: z
    .string()
    .default("You are a helpful assistant. Answer in the language the user writes in. 你是一个乐于助人的助手。"),

  /** NIM advises about one send per 200 ms; segments of one stream are paced to this. */
  REPLY_PACING_MS: integer(200, 0),
  REPLY_IDLE_TIMEOUT_SECONDS: integer(60, 1),
  REPLY_TOTAL_TIMEOUT_SECONDS: integer(300, 1),
  /**
   * A safety valve, not a queue: one reply thread carried 2,000 streams in the bench, so replies
   * start at once; NIM_SEND_RATE_PER_SECOND paces what they send (BENCHMARKS.md, docs/capacity.md).
   */
  REPLY_CONCURRENCY: integer(1000, 1, 10_000),
  /**
   * auto: in the all-in-one role replies run on a worker thread of their own, so callback acks
   * never wait behind reply work; on: insist; off: one event loop for everything.
   */
  REPLY_THREAD: z.enum(["auto", "on", "off"]).default("auto"),
  /**
   * How long a worker's claim on a reply lives without renewal (renewed every third of it). When an
   * instance dies, its replies are taken over once this runs out; BullMQ's job lock follows it.
   */
  REPLY_LEASE_SECONDS: integer(30, 1, 3600),
  /** How often each worker looks for accepted messages nobody works on (0 = never). */
  REPLY_SWEEP_INTERVAL_MS: integer(5000, 0),
  HISTORY_TURNS: integer(20, 0, 1000),
  HISTORY_CHARACTERS: integer(8000, 0),
  /**
   * Attempts (claims) of one reply before it ends with the error apology: a message that crashes
   * or fails every worker is not retried forever (each try may cost an LLM call).
   */
  REPLY_MAX_ATTEMPTS: integer(5, 1, 1000),
  /** Finished exchanges (inbox, reply, outbox rows) and audit rows are deleted after this many days (0 = keep). */
  RETENTION_DAYS: integer(30, 0),
  /** At most this many audit rows per minute for refused callbacks; the rest are counted. */
  AUDIT_REJECTED_PER_MINUTE: integer(60, 0),

  // --- Several bots, teams and turn control (contract: "Several bots", "Teams", "Turn control") ---
  /** A JSON file declaring several bots (src/bots); unset: one bot, NIM_BOT_ACCID. */
  BOTS_FILE: optionalText,
  /** `user`: in a team each asker has their own conversation with a bot; `team`: one shared per team. */
  TEAM_SESSION: z.enum(["user", "team"]).default("user"),
  /**
   * Messages of one conversation arriving within this window before generation starts are answered
   * as one turn (a burst of short messages). 0 = off. Capped at a minute: longer would feel broken.
   */
  REPLY_DEBOUNCE_MS: integer(0, 0, 60_000),

  // --- The site's side (issue 16): dynamic tokens, user-to-user moderation, the intercept. ---
  /** `static`: NIM's never-expiring token; `dynamic`: NIM's expiring authType 1 token (contract "Tokens"). */
  NIM_TOKEN_MODE: z.enum(["static", "dynamic"]).default("static"),
  /** Lifetime of a dynamic token. NIM's own limit is not documented; a day at most is a sane bound. */
  NIM_TOKEN_TTL_SECONDS: integer(3600, 60, 7 * 24 * 3600),
  /** Check user↔user P2P and team TEXT messages (from the message copy) with the moderators. */
  MODERATE_USER_MESSAGES: booleanFlag(false),
  /** Recall a blocked user↔user message through msg/recall.action (else only audit and notify). */
  MODERATION_RECALL: booleanFlag(true),
  /** The notice the sender of a recalled message gets from the bot (empty: none). */
  MODERATION_RECALL_NOTICE: z
    .string()
    .default("你的消息因违反社区规范已被撤回。Your message was withdrawn because it breaks the community rules."),
  /** Serve NIM's before-delivery third-party callback (第三方回调) at POST /im/intercept. */
  INTERCEPT_ENABLED: booleanFlag(false),
  /** Our answer deadline; NIM waits 2 s, so answer well before that. */
  INTERCEPT_BUDGET_MS: integer(1500, 50, 1900),
  /** What to answer when the check did not finish in the budget (or failed): allow or block. */
  INTERCEPT_ON_TIMEOUT: z.enum(["allow", "block"]).default("allow"),
  /** UNCONFIRMED at NIM: the `errCode` that lets a message through, and the one that stops it. */
  INTERCEPT_ALLOW_ERR_CODE: z.coerce.number().int().default(0),
  INTERCEPT_BLOCK_ERR_CODE: z.coerce.number().int().default(1),
  /** UNCONFIRMED at NIM: the custom `responseCode` returned to the blocked sender's SDK (20000–20099). */
  INTERCEPT_BLOCK_RESPONSE_CODE: integer(20000, 0, 99_999),
  // ---- operator console (src/admin, src/usage) ----
  /** Turns on /admin; the operators' login token. At least 16 characters. */
  ADMIN_TOKEN: optionalText.refine(
    (value) => value === undefined || value.length >= 16,
    "must be at least 16 characters (use a long random value)",
  ),
  /**
   * A claim of the site's user JWTs (verified like /im/register's) that, when `true`, also logs an
   * operator in, e.g. `im_admin`. Needs ADMIN_TOKEN (the console is off without it).
   */
  ADMIN_JWT_CLAIM: optionalText.refine(
    (value) => value === undefined || /^[A-Za-z0-9_.:/-]{1,100}$/.test(value),
    "must be a claim name (letters, digits, _ . : / -)",
  ),
  ADMIN_SESSION_HOURS: integer(8, 1, 720),
  /** Console login attempts per client address per minute (0 = unlimited). */
  ADMIN_LOGIN_PER_MINUTE: integer(5, 0),
  /** Tokens a user may use per day (0 = no budget); a spent budget answers `limited`. */
  USER_DAILY_TOKEN_BUDGET: integer(0, 0),
  /** Tokens a bot may use per day unless BOTS_FILE gives it its own (0 = no budget). */
  BOT_DAILY_TOKEN_BUDGET: integer(0, 0),
  /** What a bot paused in `note` mode answers. */
  PAUSED_NOTE: optionalText,
  /** The IANA time zone whose midnight starts a usage day (budgets, charts). */
  USAGE_TIME_ZONE: z.string().default("UTC").refine(isTimeZone, "must be an IANA time zone, e.g. Asia/Shanghai"),
});

// ─── Pictures, voice, files and locations (issue 14; README "Pictures, voice and files") ───────────
// Kept in a schema of its own so the media settings read, validate and document as one block.
const mediaEnvironmentSchema = z.object({
  /** Hosts media may be fetched from: `host`, `*.domain` (subdomains), `host:port`. See src/media/hosts.ts. */
  MEDIA_ALLOWED_HOSTS: z
    .string()
    .default(DEFAULT_MEDIA_ALLOWED_HOSTS)
    .superRefine((value, context) => {
      try {
        parseAllowedHosts(value);
      } catch (error) {
        if (!(error instanceof AllowedHostsError)) throw error;
        context.addIssue({ code: "custom", message: error.message.replace(/^MEDIA_ALLOWED_HOSTS: /, "") });
      }
    }),
  /** Also fetch http:// media (tests, a local storage stand-in). */
  MEDIA_ALLOW_HTTP: booleanFlag(false),
  /** Largest picture or voice note downloaded, in bytes. */
  MEDIA_MAX_BYTES: integer(20_000_000, 1),
  /** One download's deadline, redirects and body included. */
  MEDIA_TIMEOUT_MS: integer(15_000, 100),
  MEDIA_MAX_REDIRECTS: integer(3, 0, 10),
  /** Media turns downloaded and decoded at once per process (memory: each may hold MEDIA_MAX_BYTES). */
  MEDIA_CONCURRENCY: integer(4, 1, 1000),
  /** Pictures go to the model as image input (per bot in BOTS_FILE too). */
  BOT_VISION: booleanFlag(false),
  /** Give the model the picture's URL instead of its bytes (the provider downloads it). */
  MEDIA_VISION_PASS_URL: booleanFlag(false),
  /** Largest picture sent to the model, after scaling down, in bytes. */
  MEDIA_VISION_MAX_BYTES: integer(4_000_000, 1_000),
  /** Longest side sent to the model, in pixels; larger pictures are scaled down. */
  MEDIA_VISION_MAX_SIDE: integer(2048, 64, 16_384),
  MEDIA_VISION_DETAIL: z.enum(["auto", "low", "high"]).default("auto"),
  /** OpenAI-compatible speech-to-text base URL (…/v1); unset = voice notes get a note. */
  ASR_BASE_URL: optionalText.refine((value) => value === undefined || URL.canParse(value), "must be a URL"),
  ASR_MODEL: z.string().trim().min(1).default("whisper-1"),
  ASR_API_KEY: optionalText,
  /** ISO-639-1 language hint (e.g. zh); unset = the model detects it. */
  ASR_LANGUAGE: optionalText,
  /** `verbose_json` gives segment confidences for the "I heard: …" line; `json` for servers without it. */
  ASR_RESPONSE_FORMAT: z.enum(["verbose_json", "json"]).default("verbose_json"),
  ASR_TIMEOUT_MS: integer(30_000, 100),
  /** NIM's AAC notes: `auto` (as is, remuxed to M4A if refused), `as-is`, or `m4a` (always remuxed). */
  ASR_AUDIO_FORMAT: z.enum(["auto", "as-is", "m4a"]).default("auto"),
  /** Largest txt/md/csv/json/pdf file read, in bytes. */
  FILE_MAX_BYTES: integer(5_000_000, 1),
  /** Longest file excerpt given to the model, in characters. */
  FILE_EXCERPT_CHARACTERS: integer(6_000, 100),
  FILE_PDF_MAX_PAGES: integer(30, 1, 1000),
  /** A PDF still being read after this is given up (it is read in a thread of its own). */
  FILE_PARSE_TIMEOUT_MS: integer(20_000, 100),
});

function readMediaSettings(values: z.infer<typeof mediaEnvironmentSchema>): MediaSettings {
  return {
    // Validated by the schema above, so this parse cannot fail here.
    allowedHosts: parseAllowedHosts(values.MEDIA_ALLOWED_HOSTS),
    maxBytes: values.MEDIA_MAX_BYTES,
    timeoutMs: values.MEDIA_TIMEOUT_MS,
    allowHttp: values.MEDIA_ALLOW_HTTP,
    maxRedirects: values.MEDIA_MAX_REDIRECTS,
    concurrency: values.MEDIA_CONCURRENCY,
    vision: {
      enabled: values.BOT_VISION,
      passUrl: values.MEDIA_VISION_PASS_URL,
      maxImageBytes: values.MEDIA_VISION_MAX_BYTES,
      maxSide: values.MEDIA_VISION_MAX_SIDE,
      detail: values.MEDIA_VISION_DETAIL,
    },
    transcription: values.ASR_BASE_URL
      ? {
          baseUrl: values.ASR_BASE_URL,
          model: values.ASR_MODEL,
          apiKey: values.ASR_API_KEY,
          language: values.ASR_LANGUAGE,
          responseFormat: values.ASR_RESPONSE_FORMAT,
          timeoutMs: values.ASR_TIMEOUT_MS,
          audioFormat: values.ASR_AUDIO_FORMAT,
        }
      : undefined,
    files: {
      maxBytes: values.FILE_MAX_BYTES,
      excerptCharacters: values.FILE_EXCERPT_CHARACTERS,
      pdfMaxPages: values.FILE_PDF_MAX_PAGES,
      parseTimeoutMs: values.FILE_PARSE_TIMEOUT_MS,
    },
  };
}
// ─── end of the media block ────────────────────────────────────────────────────────────────────────

// BOT_GENERATOR must fail loudly on a typo rather than fall back, so it is validated separately.
const generatorSchema = z.enum(["openai", "http", "demo"]).optional();

export type GeneratorKind = "openai" | "http" | "demo";

export interface Config {
  nim: {
    appKey: string | undefined;
    appSecret: string | undefined;
    botAccid: string | undefined;
    apiBase: string;
    openApiBase: string;
    streamMode: "custom" | "native";
    streamKeepAliveMs: number;
    requestTimeoutMs: number;
    retryDeadlineMs: number;
    retryMaxAttempts: number;
    /** Most sockets open to one NIM origin (NIM_HTTP_CONNECTIONS). */
    httpConnections: number;
  };
  http: { port: number; host: string; bodyLimitBytes: number; requestTimeoutMs: number };
  role: "all" | "http" | "worker";
  security: { callbackAllowedIps: string; trustedProxies: string };
  limits: {
    registerPerIpPerMinute: number;
    registerPerUserPerMinute: number;
    replyPerMinute: number;
    replyPerDay: number;
    nimSendRatePerSecond: number;
  };
  moderation: {
    keywordFile: string | undefined;
    httpUrl: string | undefined;
    httpTimeoutMs: number;
    failOpen: boolean;
    respectNimAntispam: boolean;
  };
  databaseUrl: string;
  redisUrl: string | undefined;
  /** REDIS_KEY_PREFIX; undefined keeps the default key names. */
  redisKeyPrefix: string | undefined;
  logLevel: string;
  auth: {
    jwtSecret: string | undefined;
    jwksUrl: string | undefined;
    jwtIssuer: string | undefined;
    jwtAudience: string | undefined;
    serviceApiKey: string | undefined;
  };
  callback: { timeWindowSeconds: number };
  generator: {
    kind: GeneratorKind;
    openaiBaseUrl: string | undefined;
    openaiApiKey: string | undefined;
    openaiModel: string;
    httpUrl: string | undefined;
    systemPrompt: string;
  };
  reply: {
    pacingMs: number;
    idleTimeoutMs: number;
    totalTimeoutMs: number;
    concurrency: number;
    historyTurns: number;
    historyCharacters: number;
    leaseMs: number;
    sweepIntervalMs: number;
    /** REPLY_MAX_ATTEMPTS */
    maxAttempts: number;
    /** REPLY_THREAD */
    thread: "auto" | "on" | "off";
  };
  /** RETENTION_DAYS; 0 keeps everything. */
  retentionDays: number;
  auditRejectedPerMinute: number;
  /** Several bots, teams and turn control. */
  conversation: {
    /** BOTS_FILE as given (resolved against the working directory by src/bots). */
    botsFile: string | undefined;
    teamSession: "user" | "team";
    debounceMs: number;
  };
  /** The site's side (issue 16); see README "Expiring tokens" and "User-to-user moderation". */
  tokens: { mode: "static" | "dynamic"; ttlSeconds: number };
  userModeration: {
    enabled: boolean;
    recall: boolean;
    recallNotice: string;
    intercept: {
      enabled: boolean;
      budgetMs: number;
      onTimeout: "allow" | "block";
      allowErrCode: number;
      blockErrCode: number;
      blockResponseCode: number;
    };
  };
  /** The operator console, usage and budgets (src/admin/index.ts ConsoleSettings). */
  console: {
    adminToken: string | undefined;
    adminJwtClaim: string | undefined;
    sessionHours: number;
    loginPerMinute: number;
    userDailyTokenBudget: number;
    botDailyTokenBudget: number;
    pausedNote: string | undefined;
    usageTimeZone: string;
  };
  /** Pictures, voice, files and locations (the media block above). */
  media: MediaSettings;
}

export class ConfigurationError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
    this.name = "ConfigurationError";
  }
}

export interface LoadConfigOptions {
  /** Settings that must be present for this command (`serve` needs the NIM credentials). */
  require?: Array<"NIM_APP_KEY" | "NIM_APP_SECRET" | "NIM_BOT_ACCID">;
}

export function loadConfig(
  environment: Record<string, string | undefined> = process.env,
  options: LoadConfigOptions = {},
): Config {
  const problems: string[] = [];
  const parsed = environmentSchema.safeParse(environment);
  const generatorParsed = generatorSchema.safeParse(
    environment.BOT_GENERATOR === "" ? undefined : environment.BOT_GENERATOR,
  );
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(`${issue.path.join(".")}: ${issue.message}`);
    }
  }
  if (!generatorParsed.success) problems.push("BOT_GENERATOR: must be one of openai, http, demo");
  const mediaParsed = mediaEnvironmentSchema.safeParse(environment);
  if (!mediaParsed.success) {
    for (const issue of mediaParsed.error.issues) problems.push(`${issue.path.join(".")}: ${issue.message}`);
  }
  if (!parsed.success || !generatorParsed.success || !mediaParsed.success) throw new ConfigurationError(problems);
  const values = parsed.data;
  const media = readMediaSettings(mediaParsed.data);

  for (const name of options.require ?? []) {
    // With BOTS_FILE the bots (and the default one) come from the file; NIM_BOT_ACCID is optional.
    if (name === "NIM_BOT_ACCID" && values.BOTS_FILE) continue;
    if (!values[name]) problems.push(`${name}: required but not set`);
  }

  const generatorKind: GeneratorKind =
    generatorParsed.data ?? (values.OPENAI_BASE_URL || values.OPENAI_API_KEY ? "openai" : "demo");
  if (generatorKind === "http" && !values.GENERATOR_HTTP_URL) {
    problems.push("GENERATOR_HTTP_URL: required when BOT_GENERATOR=http");
  }
  if (
    (values.MODERATE_USER_MESSAGES || values.INTERCEPT_ENABLED) &&
    !values.MODERATION_KEYWORDS_FILE &&
    !values.MODERATION_HTTP_URL
  ) {
    // Checking users' messages with no moderator would silently check nothing.
    problems.push(
      `${values.MODERATE_USER_MESSAGES ? "MODERATE_USER_MESSAGES" : "INTERCEPT_ENABLED"}: needs MODERATION_KEYWORDS_FILE or MODERATION_HTTP_URL`,
    );
  }
  if (values.GENERATOR_HTTP_URL && !URL.canParse(values.GENERATOR_HTTP_URL)) {
    problems.push("GENERATOR_HTTP_URL: must be a URL");
  }
  if (values.OPENAI_BASE_URL && !URL.canParse(values.OPENAI_BASE_URL)) {
    problems.push("OPENAI_BASE_URL: must be a URL");
  }
  if (problems.length > 0) throw new ConfigurationError(problems);

  return {
    nim: {
      appKey: values.NIM_APP_KEY,
      appSecret: values.NIM_APP_SECRET,
      botAccid: values.NIM_BOT_ACCID?.toLowerCase(),
      apiBase: values.NIM_API_BASE.replace(/\/+$/, ""),
      openApiBase: values.NIM_OPEN_API_BASE.replace(/\/+$/, ""),
      streamMode: values.NIM_STREAM_MODE,
      streamKeepAliveMs: values.NIM_STREAM_KEEPALIVE_MS,
      requestTimeoutMs: values.NIM_REQUEST_TIMEOUT_MS,
      retryDeadlineMs: values.NIM_RETRY_DEADLINE_MS,
      retryMaxAttempts: values.NIM_RETRY_MAX_ATTEMPTS,
      httpConnections: values.NIM_HTTP_CONNECTIONS,
    },
    http: {
      port: values.PORT,
      host: values.HOST,
      bodyLimitBytes: values.HTTP_BODY_LIMIT_BYTES,
      requestTimeoutMs: values.HTTP_REQUEST_TIMEOUT_MS,
    },
    role: values.SERVE_ROLE,
    security: { callbackAllowedIps: values.CALLBACK_ALLOWED_IPS, trustedProxies: values.TRUSTED_PROXIES },
    limits: {
      registerPerIpPerMinute: values.REGISTER_LIMIT_PER_IP_PER_MINUTE,
      registerPerUserPerMinute: values.REGISTER_LIMIT_PER_USER_PER_MINUTE,
      replyPerMinute: values.REPLY_LIMIT_PER_MINUTE,
      replyPerDay: values.REPLY_LIMIT_PER_DAY,
      nimSendRatePerSecond: values.NIM_SEND_RATE_PER_SECOND,
    },
    moderation: {
      keywordFile: values.MODERATION_KEYWORDS_FILE,
      httpUrl: values.MODERATION_HTTP_URL,
      httpTimeoutMs: values.MODERATION_HTTP_TIMEOUT_MS,
      failOpen: values.MODERATION_FAIL_OPEN,
      respectNimAntispam: values.MODERATION_RESPECT_NIM_ANTISPAM,
    },
    databaseUrl: values.DATABASE_URL,
    redisUrl: values.REDIS_URL,
    redisKeyPrefix: values.REDIS_KEY_PREFIX,
    logLevel: values.LOG_LEVEL,
    auth: {
      jwtSecret: values.IM_AUTH_JWT_SECRET,
      jwksUrl: values.IM_AUTH_JWKS_URL,
      jwtIssuer: values.IM_AUTH_JWT_ISSUER,
      jwtAudience: values.IM_AUTH_JWT_AUDIENCE,
      serviceApiKey: values.IM_SERVICE_API_KEY,
    },
    callback: { timeWindowSeconds: values.CALLBACK_TIME_WINDOW_SECONDS },
    generator: {
      kind: generatorKind,
      openaiBaseUrl: values.OPENAI_BASE_URL,
      openaiApiKey: values.OPENAI_API_KEY,
      openaiModel: values.OPENAI_MODEL,
      httpUrl: values.GENERATOR_HTTP_URL,
      systemPrompt: values.BOT_SYSTEM_PROMPT,
    },
    reply: {
      pacingMs: values.REPLY_PACING_MS,
      idleTimeoutMs: values.REPLY_IDLE_TIMEOUT_SECONDS * 1000,
      totalTimeoutMs: values.REPLY_TOTAL_TIMEOUT_SECONDS * 1000,
      concurrency: values.REPLY_CONCURRENCY,
      historyTurns: values.HISTORY_TURNS,
      historyCharacters: values.HISTORY_CHARACTERS,
      leaseMs: values.REPLY_LEASE_SECONDS * 1000,
      sweepIntervalMs: values.REPLY_SWEEP_INTERVAL_MS,
      maxAttempts: values.REPLY_MAX_ATTEMPTS,
      thread: values.REPLY_THREAD,
    },
    retentionDays: values.RETENTION_DAYS,
    auditRejectedPerMinute: values.AUDIT_REJECTED_PER_MINUTE,
    conversation: {
      botsFile: values.BOTS_FILE,
      teamSession: values.TEAM_SESSION,
      debounceMs: values.REPLY_DEBOUNCE_MS,
    },
    tokens: { mode: values.NIM_TOKEN_MODE, ttlSeconds: values.NIM_TOKEN_TTL_SECONDS },
    userModeration: {
      enabled: values.MODERATE_USER_MESSAGES,
      recall: values.MODERATION_RECALL,
      recallNotice: values.MODERATION_RECALL_NOTICE,
      intercept: {
        enabled: values.INTERCEPT_ENABLED,
        budgetMs: values.INTERCEPT_BUDGET_MS,
        onTimeout: values.INTERCEPT_ON_TIMEOUT,
        allowErrCode: values.INTERCEPT_ALLOW_ERR_CODE,
        blockErrCode: values.INTERCEPT_BLOCK_ERR_CODE,
        blockResponseCode: values.INTERCEPT_BLOCK_RESPONSE_CODE,
      },
    },
    console: {
      adminToken: values.ADMIN_TOKEN,
      adminJwtClaim: values.ADMIN_JWT_CLAIM,
      sessionHours: values.ADMIN_SESSION_HOURS,
      loginPerMinute: values.ADMIN_LOGIN_PER_MINUTE,
      userDailyTokenBudget: values.USER_DAILY_TOKEN_BUDGET,
      botDailyTokenBudget: values.BOT_DAILY_TOKEN_BUDGET,
      pausedNote: values.PAUSED_NOTE,
      usageTimeZone: values.USAGE_TIME_ZONE,
    },
    media,
  };
}
