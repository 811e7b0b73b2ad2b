/**
 * Creates (once, idempotently) the NIM account of a site user and hands out its login token.
 *
 * One registration, under a per-user lock:
 *
 * - **known user, no refresh**: the stored token is returned; NIM is not called. The route is hit
 *   on every page load of the site, so the common case costs one database read.
 * - **known user, refresh**: a new token is generated, set in NIM (`user/update.action`), stored,
 *   and audited as `register.refreshed`. If NIM no longer has the account (414 "accid not exist"),
 *   it is created again with that token (`register.recreated`).
 * - **unknown user**: `user/create.action` with a token we generate (and the nickname, if given),
 *   then stored and audited as `register.created`. When NIM answers 414 "already register" the account exists without our
 *   record of it (the database was lost, or another instance raced us): we take it over by setting
 *   a new token and audit `register.taken_over`. The accid rule is deterministic, so the account NIM
 *   has is this user's and nobody else's (see accid.ts).
 *
 * Tokens are generated here, not by NIM, so every path (create, take-over, refresh) works the same
 * way and the token in our database is by construction the one we just gave NIM.
 *
 * The in-process lock serialises registrations of one site user **within this process**: ten
 * concurrent first calls produce one NIM account and ten identical working tokens, because the
 * nine that wait find the row the first one stored. Across instances the optional `lock`
 * dependency (a Redis lock, see ./redis-lock.ts; server.ts passes one whenever REDIS_URL is set)
 * does the same. Without it, two instances registering the same new user at the same moment both
 * succeed (one creates, the other takes over), but the one that writes its row last need not be
 * the one that set NIM's token last, so the stored token could be one NIM no longer has.
 *
 * With `dynamicTokens` (NIM_TOKEN_MODE=dynamic) everything above still decides the account and its
 * static token, but the answer carries a dynamic token minted from the AppSecret instead (see
 * `loginToken`): the common case then costs no NIM call at all, and the static token is a random
 * value nobody is given. `refresh` still rotates that static token at NIM (and re-creates a lost
 * account), so an operator can invalidate a static token handed out before the switch.
 *
 * The token never appears in a log line, an error or an audit record.
 */
import { randomBytes } from "node:crypto";
import { HttpError } from "../http/errors.ts";
import { createDynamicToken, dynamicTokenExpiresAt } from "../nim/dynamic-token.ts";
import { isAlreadyRegisteredError, isNimError, type NimError } from "../nim/errors.ts";
import type { NimClient } from "../nim/types.ts";
import type { AccountRepository, AuditRepository } from "../storage/repositories.ts";
import { accidForSiteUser } from "./accid.ts";
import { createKeyedLock } from "./keyed-lock.ts";
import { LockTimeoutError, LockUnavailableError } from "./redis-lock.ts";

/** The longest token NIM accepts (`user/create.action`, nim-protocol.md §2.1). */
export const NIM_TOKEN_MAX_LENGTH = 128;

/** What the service logs through; a pino Logger fits. */
export interface RegisterLogger {
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
}

export interface RegisterServiceOptions {
  nim: NimClient;
  accounts: Pick<AccountRepository, "findBySiteUser" | "findByAccid" | "upsert">;
  audit: Pick<AuditRepository, "record">;
  /** NIM_BOT_ACCID. No site user may be given this accid. */
  botAccid: string;
  /** Epoch milliseconds; injectable for tests. */
  now?: () => number;
  /** Token generator; injectable for tests. Must return 1–128 characters. */
  generateToken?: () => string;
  logger?: RegisterLogger;
  /**
   * A lock shared by every instance, keyed by site user id (taken inside the in-process lock).
   * Needed as soon as two instances serve /im/register; see the module comment.
   */
  lock?: { run<T>(key: string, task: () => Promise<T>): Promise<T> };
  /**
   * NIM_TOKEN_MODE=dynamic: hand out NIM's expiring dynamic token (authType 1, see
   * ../nim/dynamic-token.ts) instead of the account's static token. The account is still created
   * once with a random static token, which is stored but given to nobody. After that, registering
   * costs no NIM call: the token is computed here. Absent: static tokens (NIM_TOKEN_MODE=static).
   */
  dynamicTokens?: { appKey: string; appSecret: string; ttlSeconds: number };
}

export interface RegisterRequest {
  siteUserId: string;
  /** Nickname given to NIM when the account is created (not updated later). */
  name?: string | undefined;
  /** Rotate the token: the old one stops working in NIM. */
  refresh?: boolean | undefined;
}

export interface RegisterResult {
  accid: string;
  token: string;
  /** The bot's accid, so the front end knows whom to talk to. */
  bot: string;
  /** ISO 8601 UTC time at which a dynamic token stops working; null for a static token. */
  expiresAt: string | null;
}

export interface RegisterService {
  register(request: RegisterRequest): Promise<RegisterResult>;
}

/**
 * 32 random bytes as base64url: 43 characters of `A-Z a-z 0-9 - _`, 256 bits of entropy, well
 * inside NIM's 128-character limit and safe in a URL, a header or a form field.
 */
export function generateNimToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * NIM's answer to `user/update.action` for an accid it does not have. The emulator (and integrators'
 * reports) give 414 "accid not exist"; NIM's status table also has 404 "object not found", and no
 * source says which one this call returns, so both count.
 */
export function isUnknownAccount(error: unknown): boolean {
  return (
    isNimError(error) &&
    error.kind === "api" &&
    (error.code === 404 || (error.code === 414 && /not exist/i.test(error.desc)))
  );
}

/**
 * Whether a NIM failure is worth a retry by the caller: NIM's own verdict, transport failures,
 * frequency control (416) and anything 5xx (NIM's body code or an HTTP status from a gateway).
 */
export function isTransientNimFailure(error: NimError): boolean {
  return (
    error.retryable ||
    error.kind === "timeout" ||
    error.kind === "network" ||
    error.kind === "aborted" ||
    error.code === 416 ||
    error.code >= 500
  );
}

/** NIM's desc is NIM's text; it is shown to the caller, so it is bounded. */
function shortDescription(desc: string): string {
  const trimmed = desc.trim();
  return trimmed.length > 200 ? `${trimmed.slice(0, 200)}…` : trimmed;
}

/**
 * Maps a NIM failure to the HTTP answer of /im/register: 503 `nim_unavailable` when trying again
 * later can help, 502 `nim_error` when NIM refused the request as such. NIM's code is always in the
 * message so an operator can look it up.
 */
export function nimFailureToHttpError(error: NimError): HttpError {
  if (isTransientNimFailure(error)) {
    const what = error.code > 0 ? `code ${error.code}` : error.kind;
    return new HttpError(503, "nim_unavailable", `NIM is unavailable (${what}); try again`);
  }
  const description = shortDescription(error.desc);
  if (error.kind === "api" || error.kind === "http") {
    return new HttpError(
      502,
      "nim_error",
      `NIM refused the request (code ${error.code}${description ? `: ${description}` : ""})`,
    );
  }
  // invalid-response, invalid-request: not a refusal by NIM, but not something a retry fixes either.
  return new HttpError(502, "nim_error", `NIM request failed (${error.kind}${description ? `: ${description}` : ""})`);
}

export function createRegisterService(options: RegisterServiceOptions): RegisterService {
  const { nim, accounts, audit } = options;
  const botAccid = options.botAccid.toLowerCase();
  const now = options.now ?? Date.now;
  const generateToken = options.generateToken ?? generateNimToken;
  const logger = options.logger;
  const lock = createKeyedLock();

  function newToken(): string {
    const token = generateToken();
    // A token NIM would refuse is a programming error in an injected generator, not a NIM failure.
    if (token.length === 0 || token.length > NIM_TOKEN_MAX_LENGTH) {
      throw new Error(`generated token must be 1-${NIM_TOKEN_MAX_LENGTH} characters`);
    }
    return token;
  }

  /** Logs a NIM failure and turns it into the route's 502/503; other errors pass through as they are. */
  function reportNimFailure(accid: string, action: string, error: unknown): unknown {
    if (!isNimError(error)) return error;
    // NimError's desc never carries a token (the client redacts what NIM echoes), so it may be logged.
    logger?.warn(
      { accid, action, nimKind: error.kind, nimCode: error.code, nimDesc: error.desc },
      "register: NIM call failed",
    );
    return nimFailureToHttpError(error);
  }

  async function callNim<T>(accid: string, action: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw reportNimFailure(accid, action, error);
    }
  }

  function refuseBotAccid(accid: string): void {
    if (accid === botAccid) {
      throw new HttpError(409, "accid_conflict", "This user id maps to the bot's accid and cannot be registered");
    }
  }

  async function registerLocked(request: RegisterRequest): Promise<AccountRegistration> {
    const { siteUserId } = request;
    let accid: string;
    try {
      accid = accidForSiteUser(siteUserId);
    } catch (error) {
      throw new HttpError(400, "bad_request", `user_id: ${(error as Error).message}`);
    }
    refuseBotAccid(accid);

    const existing = await accounts.findBySiteUser(siteUserId);
    if (existing) {
      refuseBotAccid(existing.accid);
      if (!request.refresh) return { accid: existing.accid, token: existing.token, bot: botAccid };

      const token = newToken();
      // NIM first, then our row: if the database write failed after NIM changed the token, the
      // caller gets a 500 and refreshes again; the other order could leave a stored token that
      // NIM does not know, and every later call would hand that out.
      // The row's name mirrors what NIM was told; only a re-creation tells NIM a name.
      let name = existing.name;
      let event: "register.refreshed" | "register.recreated" = "register.refreshed";
      try {
        await nim.updateToken({ accid: existing.accid, token });
      } catch (error) {
        if (!isUnknownAccount(error)) throw reportNimFailure(existing.accid, "updateToken", error);
        // We have a row but NIM has no account (another NIM app, or it was deleted there): a
        // refresh is the user asking for a working token, so create the account again.
        logger?.warn({ accid: existing.accid }, "register: NIM does not know this account; creating it again");
        name = request.name ?? existing.name;
        const recreatedName = name;
        await callNim(existing.accid, "createAccount", () =>
          nim.createAccount({ accid: existing.accid, token, ...(recreatedName ? { name: recreatedName } : {}) }),
        );
        event = "register.recreated";
      }
      await accounts.upsert({ siteUserId, accid: existing.accid, token, name }, now());
      await audit.record(event, existing.accid, { siteUserId }, now());
      logger?.info({ accid: existing.accid, event }, "register: token refreshed");
      return { accid: existing.accid, token, bot: botAccid };
    }

    // The rule is injective, so this only fires if stored data predates it or was edited by hand;
    // handing this user someone else's NIM account would be far worse than refusing.
    const owner = await accounts.findByAccid(accid);
    if (owner && owner.site_user_id !== siteUserId) {
      throw new HttpError(409, "accid_conflict", "The accid of this user id is already held by another user");
    }

    let token = newToken();
    let event: "register.created" | "register.taken_over";
    // The row's name mirrors what NIM was told: user/update.action on a take-over sets no name.
    let name: string | null = request.name ?? null;
    try {
      const created = await nim.createAccount({ accid, token, ...(request.name ? { name: request.name } : {}) });
      // NIM echoes the token it stored; prefer its word in case it ever differs from ours.
      if (created.token) token = created.token;
      event = "register.created";
    } catch (error) {
      if (!isAlreadyRegisteredError(error)) throw reportNimFailure(accid, "createAccount", error);
      // The account exists in NIM but not in our database: its token is unknown to us, so set ours.
      logger?.warn({ accid }, "register: NIM already has this account; taking it over with a new token");
      await callNim(accid, "updateToken", () => nim.updateToken({ accid, token }));
      event = "register.taken_over";
      name = null;
    }

    await accounts.upsert({ siteUserId, accid, token, name }, now());
    await audit.record(event, accid, { siteUserId }, now());
    logger?.info({ accid, event }, "register: account ready");
    return { accid, token, bot: botAccid };
  }

  async function registerShared(request: RegisterRequest): Promise<AccountRegistration> {
    const shared = options.lock;
    if (!shared) return registerLocked(request);
    try {
      return await shared.run(request.siteUserId, () => registerLocked(request));
    } catch (error) {
      if (error instanceof LockTimeoutError) {
        throw new HttpError(503, "register_busy", "A registration of this user is still in progress; try again", {
          "Retry-After": "1",
        });
      }
      if (error instanceof LockUnavailableError) {
        logger?.warn({ err: error.message }, "register: the shared lock is unavailable");
        throw new HttpError(503, "register_unavailable", "Registration is unavailable right now; try again", {
          "Retry-After": "1",
        });
      }
      throw error;
    }
  }

  /**
   * The answer's token. Static mode: the account's own token. Dynamic mode: a token minted now for
   * the accid, so a repeated call always gets a full lifetime, and the static token stays unknown
   * outside our database.
   */
  function loginToken(registration: AccountRegistration): RegisterResult {
    const dynamic = options.dynamicTokens;
    if (!dynamic) return { ...registration, expiresAt: null };
    const curTimeMs = Math.floor(now());
    const token = createDynamicToken({
      appKey: dynamic.appKey,
      appSecret: dynamic.appSecret,
      accid: registration.accid,
      curTimeMs,
      ttlSeconds: dynamic.ttlSeconds,
    });
    const expiresAt = new Date(dynamicTokenExpiresAt(curTimeMs, dynamic.ttlSeconds)).toISOString();
    return { accid: registration.accid, token, bot: registration.bot, expiresAt };
  }

  return {
    async register(request) {
      // Keyed by the site user id: two ids never share an accid, so this also serialises per accid.
      return loginToken(await lock.run(request.siteUserId, () => registerShared(request)));
    },
  };
}

/** What the account steps produce: the account's static token, before loginToken decides what to hand out. */
type AccountRegistration = Omit<RegisterResult, "expiresAt">;
