import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { REDIS_URL, services } from "../../test/services.ts";
import { combineObservers } from "../reply/observer.ts";
import {
  type ConsoleEvent,
  ConsoleEventHub,
  consoleObserver,
  conversationOf,
  createRedisEventRelay,
  parseEvent,
} from "./event-hub.ts";

describe("console event hub", () => {
  it("turns the observer's delta and finished hooks into events for every subscriber until it leaves", () => {
    const hub = new ConsoleEventHub();
    const seen: ConsoleEvent[] = [];
    const leave = hub.subscribe((event) => seen.push(event));
    hub.subscribe(() => {
      throw new Error("a broken connection");
    });
    const observer = combineObservers(consoleObserver((event) => hub.publish(event)));
    observer.delta?.("r1", "p2p:bot:u", "你好");
    observer.finished?.("r1", "ok", "bot", "p2p:bot:u");
    observer.finished?.("r2", "ok", "bot"); // no conversation: nothing to show
    expect(seen).toEqual([
      { type: "delta", replyTo: "r1", conversationId: "p2p:bot:u", text: "你好" },
      { type: "finished", replyTo: "r1", conversationId: "p2p:bot:u", status: "ok" },
    ]);
    leave();
    hub.publish({ type: "pause", scope: "bot", target: "bot", mode: "skip" });
    expect(seen).toHaveLength(2);
    expect(hub.size).toBe(1);
  });

  it("accepts only well-formed events from the shared channel", () => {
    expect(parseEvent('{"type":"delta","replyTo":"r","conversationId":"c","text":"x"}')).toEqual({
      type: "delta",
      replyTo: "r",
      conversationId: "c",
      text: "x",
    });
    expect(parseEvent('{"type":"delta","replyTo":"r","conversationId":"c","text":1}')).toBeUndefined();
    expect(parseEvent('{"type":"operator","conversationId":"c","text":"x"}')).toBeUndefined();
    expect(parseEvent('{"type":"shell","command":"rm"}')).toBeUndefined();
    expect(parseEvent("not json")).toBeUndefined();
    expect(conversationOf({ type: "pause", scope: "bot", target: "b", mode: null })).toBeUndefined();
    expect(conversationOf({ type: "operator", conversationId: "c", text: "x", at: 1 })).toBe("c");
  });

  describe.runIf(services.redis)("over Redis pub/sub", () => {
    it("delivers one instance's events to another instance's hub", async () => {
      const channel = `test-console-${randomUUID()}`;
      const publisher = new Redis(REDIS_URL);
      const listener = new Redis(REDIS_URL);
      const listeningHub = new ConsoleEventHub();
      const seen: ConsoleEvent[] = [];
      listeningHub.subscribe((event) => seen.push(event));
      const sending = await createRedisEventRelay({
        redis: publisher,
        channel,
        hub: new ConsoleEventHub(),
        onError: () => {},
      });
      const receiving = await createRedisEventRelay({ redis: listener, channel, hub: listeningHub, onError: () => {} });
      try {
        sending.publish({ type: "delta", replyTo: "r", conversationId: "c", text: "hi" });
        await publisher.publish(channel, '{"type":"bogus"}');
        sending.publish({ type: "finished", replyTo: "r", conversationId: "c", status: "ok" });
        const deadline = Date.now() + 5_000;
        while (seen.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
        expect(seen.map((event) => event.type)).toEqual(["delta", "finished"]);
      } finally {
        await sending.close();
        await receiving.close();
        publisher.disconnect();
        listener.disconnect();
      }
    });
  });
});
