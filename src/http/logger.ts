/**
 * The service's logger: pino with redaction of every place a secret can sit. Secrets (AppSecret,
 * CheckSum, tokens, API keys, JWTs) never reach a log line; tests assert it.
 */
import { type DestinationStream, type Logger, pino } from "pino";

export const REDACTED_PATHS = [
  "req.headers.authorization",
  "req.headers['x-api-key']",
  "req.headers.checksum",
  "req.headers.cookie",
  "headers.authorization",
  "headers['x-api-key']",
  "headers.checksum",
  "*.token",
  "*.appSecret",
  "*.apiKey",
  "token",
  "appSecret",
  "apiKey",
];

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      base: { service: "im-bridge" },
    },
    options.destination,
  );
}

export type { Logger };
