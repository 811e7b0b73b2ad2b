import { describe, expect, it } from "vitest";
import { loadConfig } from "../config/index.ts";
import { replyThreadLoadable, replyThreadWanted } from "./reply-thread.ts";
import { createRelayObserver } from "./reply-thread-entry-observer.ts";
import type { ObservedCall } from "./reply-thread-messages.ts";

const required = { NIM_APP_KEY: "key", NIM_APP_SECRET: "secret", NIM_BOT_ACCID: "advisor_bot" };
const fileDatabase = { ...required, DATABASE_URL: "sqlite:/tmp/im-bridge-thread-test/bridge.db" };
const plain: { runsWorker: boolean; inProcessOverrides: string[] } = { runsWorker: true, inProcessOverrides: [] };

describe("replyThreadWanted", () => {
  it("is off when told so, whatever else holds", () => {
    expect(replyThreadWanted(loadConfig({ ...fileDatabase, REPLY_THREAD: "off" }), plain)).toBe(false);
  });

  it("starts the thread when told on and nothing stands in the way", () => {
    expect(replyThreadWanted(loadConfig({ ...fileDatabase, REPLY_THREAD: "on" }), plain)).toBe(true);
  });

  it("auto follows whether the entry can be loaded here (vitest transpiles in memory: no)", () => {
    expect(replyThreadWanted(loadConfig(fileDatabase), plain)).toBe(replyThreadLoadable());
    expect(replyThreadLoadable()).toBe(false);
  });

  it("keeps one loop in auto and names every reason in on", () => {
    const cases: Array<[Record<string, string>, typeof plain, string]> = [
      [{ SERVE_ROLE: "worker" }, plain, "SERVE_ROLE is not all"],
      [{}, { runsWorker: false, inProcessOverrides: [] }, "SERVE_ROLE is not all"],
      [{ REDIS_URL: "redis://127.0.0.1:6379" }, plain, "REDIS_URL is set"],
      [{ DATABASE_URL: "sqlite::memory:" }, plain, "in memory"],
      [{}, { runsWorker: true, inProcessOverrides: ["generator", "logger"] }, "generator, logger"],
    ];
    for (const [environment, context, reason] of cases) {
      expect(replyThreadWanted(loadConfig({ ...fileDatabase, ...environment, REPLY_THREAD: "auto" }), context)).toBe(
        false,
      );
      expect(() =>
        replyThreadWanted(loadConfig({ ...fileDatabase, ...environment, REPLY_THREAD: "on" }), context),
      ).toThrow(reason);
    }
  });
});

describe("createRelayObserver", () => {
  it("sends the calls of one turn as one batch, in order, and flush sends what is pending at once", async () => {
    const batches: ObservedCall[][] = [];
    const observer = createRelayObserver((calls) => batches.push(calls));
    observer.started?.("a", 1);
    observer.sent?.("segment", "ok", 3);
    observer.delta?.("a", "p2p:bot:user", "hi");
    expect(batches).toHaveLength(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toEqual([
      [
        { method: "started", args: ["a", 1] },
        { method: "sent", args: ["segment", "ok", 3] },
        { method: "delta", args: ["a", "p2p:bot:user", "hi"] },
      ],
    ]);
    observer.finished?.("a", "ok", "bot", "p2p:bot:user");
    observer.flush();
    expect(batches[1]).toEqual([{ method: "finished", args: ["a", "ok", "bot", "p2p:bot:user"] }]);
  });
});
