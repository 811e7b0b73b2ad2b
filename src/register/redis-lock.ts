/**
 * A per-key mutex shared by every instance through Redis: the same `run(key, task)` as the
 * in-process KeyedLock (./keyed-lock.ts), but two processes with the same key never run their
 * tasks at the same time. The register service uses it so that two instances registering one new
 * user cannot interleave their NIM calls (create vs. take-over) and store a token NIM no longer has.
 *
 * - Acquire: `SET key token NX PX ttl` with a random token, retried every `retryDelayMs` (with a
 *   little jitter) until it succeeds or `waitTimeoutMs` passes (LockTimeoutError).
 * - While the task runs the lock is extended every ttl/3, only if it still holds our token (Lua),
 *   so a slow NIM call does not lose it; a holder that dies stops extending and the lock expires
 *   after at most `ttlMs`, so a crash never blocks a user for longer than that.
 * - Release deletes the key only if it still holds our token (Lua): a holder whose lock expired
 *   and was taken by someone else cannot delete the new holder's lock.
 *
 * Every Redis command is bounded by `commandTimeoutMs` (the shared client has
 * maxRetriesPerRequest: null and would otherwise wait out a Redis outage): an unreachable Redis
 * fails the acquire with LockUnavailableError instead of hanging the request.
 *
 * Like every lease-based lock it cannot fence: a holder frozen for longer than ttlMs (no
 * extension) may resume after another caller took the lock. The extension every ttl/3 makes that
 * need a pause of two thirds of the TTL.
 */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";

/** Deletes KEYS[1] only when it holds ARGV[1] (our token). */
const RELEASE_SCRIPT = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;

/** Extends KEYS[1] to ARGV[2] ms only when it holds ARGV[1] (our token). */
const EXTEND_SCRIPT = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`;

export interface RedisKeyedLockOptions {
  redis: Redis;
  /** Keys are `<keyPrefix>:<key>`. */
  keyPrefix: string;
  /** How long a lock outlives its last extension (default 10 s). */
  ttlMs?: number;
  /** Longest a caller waits for the lock (default 15 s). */
  waitTimeoutMs?: number;
  /** Pause between acquire attempts (default 50 ms, plus up to half of it as jitter). */
  retryDelayMs?: number;
  /** Longest one Redis command may take (default 2 s). */
  commandTimeoutMs?: number;
  /** Told when an extension finds the lock gone (it expired and may be held by someone else). */
  onLost?: (key: string) => void;
}

/** The lock stayed held by someone else for the whole wait. */
export class LockTimeoutError extends Error {
  override readonly name = "LockTimeoutError";
  constructor(
    readonly key: string,
    readonly waitedMs: number,
  ) {
    super(`lock "${key}" still held by another caller after ${waitedMs} ms`);
  }
}

/** Redis did not answer (or failed) while acquiring. */
export class LockUnavailableError extends Error {
  override readonly name = "LockUnavailableError";
}

export interface DistributedKeyedLock {
  run<T>(key: string, task: () => Promise<T>): Promise<T>;
}

export function createRedisKeyedLock(options: RedisKeyedLockOptions): DistributedKeyedLock {
  const { redis } = options;
  const ttlMs = options.ttlMs ?? 10_000;
  const waitTimeoutMs = options.waitTimeoutMs ?? 15_000;
  const retryDelayMs = options.retryDelayMs ?? 50;
  const commandTimeoutMs = options.commandTimeoutMs ?? 2_000;
  if (!Number.isInteger(ttlMs) || ttlMs < 30) throw new RangeError("ttlMs must be an integer of at least 30");
  if (options.keyPrefix.length === 0) throw new RangeError("keyPrefix must not be empty");

  function bounded<T>(command: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LockUnavailableError(`Redis did not answer within ${commandTimeoutMs} ms`)),
        commandTimeoutMs,
      );
    });
    return Promise.race([command, timeout]).finally(() => clearTimeout(timer));
  }

  async function acquire(redisKey: string, token: string): Promise<void> {
    const startedAt = Date.now();
    for (;;) {
      let answer: string | null;
      try {
        answer = await bounded(redis.set(redisKey, token, "PX", ttlMs, "NX"));
      } catch (error) {
        if (error instanceof LockUnavailableError) throw error;
        throw new LockUnavailableError(`Redis failed: ${(error as Error).message}`, { cause: error });
      }
      if (answer === "OK") return;
      const waited = Date.now() - startedAt;
      if (waited >= waitTimeoutMs) throw new LockTimeoutError(redisKey, waited);
      const pause = retryDelayMs + Math.floor(Math.random() * (retryDelayMs / 2));
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, waitTimeoutMs - waited)));
    }
  }

  return {
    async run<T>(key: string, task: () => Promise<T>): Promise<T> {
      const redisKey = `${options.keyPrefix}:${key}`;
      const token = randomBytes(16).toString("base64url");
      await acquire(redisKey, token);
      let lost = false;
      const extender = setInterval(
        () => {
          bounded(redis.eval(EXTEND_SCRIPT, 1, redisKey, token, String(ttlMs)))
            .then((extended) => {
              if (Number(extended) !== 1 && !lost) {
                lost = true;
                options.onLost?.(key);
              }
            })
            // A missed extension is retried at the next tick; the TTL leaves room for two.
            .catch(() => {});
        },
        Math.max(10, Math.floor(ttlMs / 3)),
      );
      extender.unref();
      try {
        return await task();
      } finally {
        clearInterval(extender);
        // If this fails the key simply expires after ttlMs.
        await bounded(redis.eval(RELEASE_SCRIPT, 1, redisKey, token)).catch(() => {});
      }
    },
  };
}
