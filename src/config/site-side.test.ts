/**
 * The settings of the site's side (issue 16): token mode, user-to-user moderation, the intercept.
 * Kept apart from index.test.ts so the block can move without touching the rest.
 */
import { describe, expect, it } from "vitest";
import { ConfigurationError, loadConfig } from "./index.ts";

const required = { NIM_APP_KEY: "key", NIM_APP_SECRET: "secret", NIM_BOT_ACCID: "advisor_bot" };

function problemsOf(environment: Record<string, string>): string[] {
  try {
    loadConfig(environment);
  } catch (error) {
    if (error instanceof ConfigurationError) return error.problems;
    throw error;
  }
  return [];
}

describe("loadConfig: the site's side", () => {
  it("defaults to static tokens of the contract's TTL, and to no user moderation", () => {
    const config = loadConfig(required);
    expect(config.tokens).toEqual({ mode: "static", ttlSeconds: 3600 });
    expect(config.userModeration).toMatchObject({
      enabled: false,
      recall: true,
      intercept: { enabled: false, budgetMs: 1500, onTimeout: "allow", allowErrCode: 0, blockErrCode: 1 },
    });
  });

  it("reads dynamic tokens and refuses a TTL below a minute", () => {
    expect(loadConfig({ ...required, NIM_TOKEN_MODE: "dynamic", NIM_TOKEN_TTL_SECONDS: "600" }).tokens).toEqual({
      mode: "dynamic",
      ttlSeconds: 600,
    });
    expect(problemsOf({ ...required, NIM_TOKEN_TTL_SECONDS: "5" })[0]).toMatch(/^NIM_TOKEN_TTL_SECONDS/);
    expect(problemsOf({ ...required, NIM_TOKEN_MODE: "rotating" })[0]).toMatch(/^NIM_TOKEN_MODE/);
  });

  it("refuses user moderation or the intercept without any moderator", () => {
    expect(problemsOf({ ...required, MODERATE_USER_MESSAGES: "true" })).toEqual([
      "MODERATE_USER_MESSAGES: needs MODERATION_KEYWORDS_FILE or MODERATION_HTTP_URL",
    ]);
    expect(problemsOf({ ...required, INTERCEPT_ENABLED: "true" })).toEqual([
      "INTERCEPT_ENABLED: needs MODERATION_KEYWORDS_FILE or MODERATION_HTTP_URL",
    ]);
    const config = loadConfig({
      ...required,
      MODERATE_USER_MESSAGES: "true",
      MODERATION_HTTP_URL: "http://127.0.0.1:9/check",
      INTERCEPT_ENABLED: "yes",
      INTERCEPT_BUDGET_MS: "1000",
      INTERCEPT_ON_TIMEOUT: "block",
    });
    expect(config.userModeration.enabled).toBe(true);
    expect(config.userModeration.intercept).toMatchObject({ enabled: true, budgetMs: 1000, onTimeout: "block" });
  });

  it("keeps the intercept's budget under NIM's 2 seconds", () => {
    expect(problemsOf({ ...required, INTERCEPT_BUDGET_MS: "2000" })[0]).toMatch(/^INTERCEPT_BUDGET_MS/);
  });
});
