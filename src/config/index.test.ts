import { describe, expect, it } from "vitest";
import { ConfigurationError, loadConfig } from "./index.ts";

const required = { NIM_APP_KEY: "key", NIM_APP_SECRET: "secret", NIM_BOT_ACCID: "Advisor_Bot" };

describe("loadConfig", () => {
  it("applies the contract's defaults", () => {
    const config = loadConfig(required);
    expect(config.http).toMatchObject({ port: 8000, host: "0.0.0.0" });
    expect(config.nim.streamMode).toBe("custom");
    expect(config.nim.botAccid).toBe("advisor_bot");
    expect(config.databaseUrl).toMatch(/^sqlite:.*data/);
    expect(config.redisUrl).toBeUndefined();
    expect(config.generator.kind).toBe("demo");
    expect(config.reply).toMatchObject({ pacingMs: 200, idleTimeoutMs: 60_000 });
    expect(config.callback.timeWindowSeconds).toBe(300);
  });

  it("reads the scale-out settings: lease, sweep interval and Redis key prefix", () => {
    const defaults = loadConfig(required);
    expect(defaults.reply).toMatchObject({ leaseMs: 30_000, sweepIntervalMs: 5_000 });
    expect(defaults.redisKeyPrefix).toBeUndefined();
    const set = loadConfig({
      ...required,
      REPLY_LEASE_SECONDS: "2",
      REPLY_SWEEP_INTERVAL_MS: "0",
      REDIS_KEY_PREFIX: "staging-1",
    });
    expect(set.reply).toMatchObject({ leaseMs: 2_000, sweepIntervalMs: 0 });
    expect(set.redisKeyPrefix).toBe("staging-1");
    expect(() => loadConfig({ ...required, REPLY_LEASE_SECONDS: "0" })).toThrow(/REPLY_LEASE_SECONDS/);
    expect(() => loadConfig({ ...required, REDIS_KEY_PREFIX: "a:b" })).toThrow(/REDIS_KEY_PREFIX/);
  });

  it("picks the openai generator when an OpenAI endpoint or key is set", () => {
    expect(loadConfig({ ...required, OPENAI_API_KEY: "sk-x" }).generator.kind).toBe("openai");
    expect(loadConfig({ ...required, OPENAI_BASE_URL: "http://127.0.0.1:11434/v1" }).generator.kind).toBe("openai");
    expect(loadConfig({ ...required, OPENAI_API_KEY: "sk-x", BOT_GENERATOR: "demo" }).generator.kind).toBe("demo");
  });

  it("names every missing required setting at once", () => {
    try {
      loadConfig({}, { require: ["NIM_APP_KEY", "NIM_APP_SECRET", "NIM_BOT_ACCID"] });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigurationError);
      const message = (error as Error).message;
      for (const name of ["NIM_APP_KEY", "NIM_APP_SECRET", "NIM_BOT_ACCID"]) expect(message).toContain(name);
    }
  });

  it("names every invalid setting and never echoes a secret", () => {
    try {
      loadConfig({
        ...required,
        NIM_APP_SECRET: "super-secret-value",
        PORT: "eighty",
        NIM_STREAM_MODE: "fast",
        DATABASE_URL: "mysql://x",
        BOT_GENERATOR: "gpt",
        REDIS_URL: "http://x",
      });
      expect.unreachable();
    } catch (error) {
      const message = (error as Error).message;
      for (const name of ["PORT", "NIM_STREAM_MODE", "DATABASE_URL", "BOT_GENERATOR"]) expect(message).toContain(name);
      expect(message).not.toContain("super-secret-value");
    }
  });

  it("takes NIM_STREAM_MODE=native with a keep-alive under NIM's 30 s gap, and refuses other modes", () => {
    const config = loadConfig({ ...required, NIM_STREAM_MODE: "native" });
    expect(config.nim.streamMode).toBe("native");
    expect(config.nim.streamKeepAliveMs).toBe(20_000);
    expect(() => loadConfig({ ...required, NIM_STREAM_MODE: "streamy" })).toThrow(/NIM_STREAM_MODE/);
    expect(() => loadConfig({ ...required, NIM_STREAM_KEEPALIVE_MS: "30000" })).toThrow(/NIM_STREAM_KEEPALIVE_MS/);
  });

  it("bounds NIM's sockets per origin with NIM_HTTP_CONNECTIONS (default 64, at least 1)", () => {
    expect(loadConfig(required).nim.httpConnections).toBe(64);
    expect(loadConfig({ ...required, NIM_HTTP_CONNECTIONS: "8" }).nim.httpConnections).toBe(8);
    expect(() => loadConfig({ ...required, NIM_HTTP_CONNECTIONS: "0" })).toThrow(/NIM_HTTP_CONNECTIONS/);
    expect(() => loadConfig({ ...required, NIM_HTTP_CONNECTIONS: "many" })).toThrow(/NIM_HTTP_CONNECTIONS/);
  });

  it("requires GENERATOR_HTTP_URL for the http generator", () => {
    expect(() => loadConfig({ ...required, BOT_GENERATOR: "http" })).toThrow(/GENERATOR_HTTP_URL/);
    expect(
      loadConfig({ ...required, BOT_GENERATOR: "http", GENERATOR_HTTP_URL: "http://site/api/stream" }).generator
        .httpUrl,
    ).toBe("http://site/api/stream");
  });
});

describe("loadConfig: several bots, teams and turn control", () => {
  it("defaults to one bot, per-asker team conversations and no debounce", () => {
    expect(loadConfig(required).conversation).toEqual({ botsFile: undefined, teamSession: "user", debounceMs: 0 });
  });

  it("reads BOTS_FILE, TEAM_SESSION and REPLY_DEBOUNCE_MS", () => {
    const config = loadConfig({
      ...required,
      BOTS_FILE: " ./bots.json ",
      TEAM_SESSION: "team",
      REPLY_DEBOUNCE_MS: "800",
    });
    expect(config.conversation).toEqual({ botsFile: "./bots.json", teamSession: "team", debounceMs: 800 });
  });

  it("names a bad TEAM_SESSION and an out-of-range REPLY_DEBOUNCE_MS together", () => {
    expect(() => loadConfig({ ...required, TEAM_SESSION: "group", REPLY_DEBOUNCE_MS: "-1" })).toThrow(
      /TEAM_SESSION[\s\S]*REPLY_DEBOUNCE_MS|REPLY_DEBOUNCE_MS[\s\S]*TEAM_SESSION/,
    );
    expect(() => loadConfig({ ...required, REPLY_DEBOUNCE_MS: "60001" })).toThrow(/REPLY_DEBOUNCE_MS/);
  });

  it("does not require NIM_BOT_ACCID when BOTS_FILE declares the bots", () => {
    const environment = { NIM_APP_KEY: "key", NIM_APP_SECRET: "secret", BOTS_FILE: "bots.json" };
    expect(
      loadConfig(environment, { require: ["NIM_APP_KEY", "NIM_APP_SECRET", "NIM_BOT_ACCID"] }).nim.botAccid,
    ).toBeUndefined();
    expect(() => loadConfig({ NIM_APP_KEY: "key", NIM_APP_SECRET: "secret" }, { require: ["NIM_BOT_ACCID"] })).toThrow(
      /NIM_BOT_ACCID/,
    );
  });
});
