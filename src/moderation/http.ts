/**
 * A moderator that asks an external HTTP service (a site's own filter, or a thin adapter in front
 * of a vendor's content-security API). The exchange is documented in docs/moderation.md; keep the
 * two in step.
 *
 * Request:  POST url, `{"stage":"input"|"output","text":"…","accid":"…"}` (application/json)
 * Answer:   2xx with `{"allowed": true}` or `{"allowed": false, "reason": "…", "category": "…"}`
 *
 * Anything else (timeout, connection error, non-2xx, a body without a boolean `allowed`) means the
 * service could not decide: `failOpen` lets the text through, otherwise it is blocked with reason
 * "moderation unavailable". Closed is the default in the settings because a bot that says
 * something it must not is usually worse than one that is briefly unavailable.
 */
import { z } from "zod";
import type { ModerationLogger } from "./keyword.ts";
import type { ModerationContext, ModerationVerdict, Moderator } from "./types.ts";

export interface HttpModeratorOptions {
  url: string;
  /** Bound on the whole exchange, connection and body included. */
  timeoutMs: number;
  /** What an undecided check returns: true lets the text through, false blocks it. */
  failOpen: boolean;
  /** Extra request headers, e.g. `{ authorization: "Bearer …" }`. */
  headers?: Record<string, string>;
  /** Injectable for tests. */
  fetch?: typeof fetch;
  logger?: Pick<ModerationLogger, "warn">;
}

/** The JSON body POSTed to the service. */
export interface HttpModerationRequest {
  stage: "input" | "output";
  text: string;
  accid: string;
}

const answerSchema = z.object({
  allowed: z.boolean(),
  reason: z.string().optional(),
  category: z.string().optional(),
});

export const UNAVAILABLE_REASON = "moderation unavailable";

export function createHttpModerator(options: HttpModeratorOptions): Moderator {
  const fetchFunction = options.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    accept: "application/json",
    // Lower-cased so a caller's "Content-Type" replaces ours instead of being appended to it.
    ...Object.fromEntries(Object.entries(options.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value])),
  };
  // Only the origin and path go into logs: a query string may carry a key.
  const displayUrl = (() => {
    try {
      const parsed = new URL(options.url);
      return `${parsed.origin}${parsed.pathname}`;
    } catch {
      return "(invalid moderation URL)";
    }
  })();

  const undecided: ModerationVerdict = options.failOpen
    ? { allowed: true }
    : { allowed: false, reason: UNAVAILABLE_REASON, category: "unavailable" };

  async function ask(stage: HttpModerationRequest["stage"], text: string, context: ModerationContext) {
    const body: HttpModerationRequest = { stage, text, accid: context.accid };
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`no answer within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    try {
      const response = await fetchFunction(options.url, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      // The body is read under the same timer: a service that sends headers and stalls is undecided too.
      const answerText = await response.text();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const answer = answerSchema.safeParse(JSON.parse(answerText));
      if (!answer.success) throw new Error('answer has no boolean "allowed"');
      if (answer.data.allowed) return { allowed: true } as const;
      return {
        allowed: false,
        reason: answer.data.reason || "blocked by the moderation service",
        ...(answer.data.category ? { category: answer.data.category } : {}),
      } as const;
    } catch (error) {
      const message = controller.signal.aborted
        ? String((controller.signal.reason as Error)?.message ?? "timed out")
        : (error as Error).message;
      options.logger?.warn(
        { url: displayUrl, stage, error: message, failOpen: options.failOpen },
        "moderation service undecided",
      );
      return undecided;
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    checkInput: (text, context) => ask("input", text, context),
    checkOutput: (window, context) => ask("output", window, context),
  };
}
