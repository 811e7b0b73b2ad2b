/**
 * The console's live feed: replies as they stream, pushed to every open console page over
 * server-sent events, without any page polling the database.
 *
 *   processor / writer ──observer (delta, finished)──▶ hub ──▶ each SSE client (filtered by conversation)
 *
 * With Redis (`createRedisEventRelay`) the observer publishes to a pub/sub channel instead and the
 * hub is fed from that channel, so an HTTP-only instance (SERVE_ROLE=http) shows the replies its
 * workers produce. Pub/sub is fire-and-forget: a page that was offline reloads the conversation
 * from the database, which holds every sent message anyway.
 *
 * @module
 */
import type { Redis } from "ioredis";
import type { ReplyObserver } from "../reply/observer.ts";

export type ConsoleEvent =
  /** NIM accepted a message of a reply that added `text`. */
  | { type: "delta"; replyTo: string; conversationId: string; text: string }
  /** The reply ended with `status`. */
  | { type: "finished"; replyTo: string; conversationId: string; status: string }
  /** An operator wrote to the user as the bot. */
  | { type: "operator"; conversationId: string; text: string; at: number }
  /** A pause was set or lifted. */
  | { type: "pause"; scope: "bot" | "conversation"; target: string; mode: string | null };

export type ConsoleListener = (event: ConsoleEvent) => void;

export class ConsoleEventHub {
  private readonly listeners = new Set<ConsoleListener>();

  /** Delivers to every listener now; one failing listener does not stop the others. */
  publish(event: ConsoleEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener is an SSE connection: if writing failed, its close handler removes it.
      }
    }
  }

  subscribe(listener: ConsoleListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get size(): number {
    return this.listeners.size;
  }
}

/** The observer hooks that turn the pipeline's steps into console events for `publish`. */
export function consoleObserver(publish: (event: ConsoleEvent) => void): ReplyObserver {
  return {
    delta: (replyTo, conversationId, text) => publish({ type: "delta", replyTo, conversationId, text }),
    finished: (replyTo, status, _bot, conversationId) => {
      if (conversationId) publish({ type: "finished", replyTo, conversationId, status });
    },
  };
}

export interface RedisEventRelayOptions {
  /** Publishes; a duplicate of it subscribes (a subscribed connection can do nothing else). */
  redis: Redis;
  channel: string;
  hub: ConsoleEventHub;
  onError: (error: unknown) => void;
}

export interface EventRelay {
  /** Where local events go: to the channel, and from there to every instance's hub. */
  publish(event: ConsoleEvent): void;
  close(): Promise<void>;
}

/** Fans console events out over Redis pub/sub to the hubs of every instance (this one included). */
export async function createRedisEventRelay(options: RedisEventRelayOptions): Promise<EventRelay> {
  const subscriber = options.redis.duplicate();
  subscriber.on("error", options.onError);
  subscriber.on("message", (_channel: string, text: string) => {
    const event = parseEvent(text);
    if (event) options.hub.publish(event);
  });
  await subscriber.subscribe(options.channel);
  return {
    publish(event) {
      options.redis.publish(options.channel, JSON.stringify(event)).catch(options.onError);
    },
    async close() {
      await subscriber.quit().catch(() => subscriber.disconnect());
    },
  };
}

/** Accepts only the shapes above: the channel is shared, and a stray message must not reach a page. */
export function parseEvent(text: string): ConsoleEvent | undefined {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const strings = (...names: string[]) => names.every((name) => typeof value[name] === "string");
    switch (value.type) {
      case "delta":
        return strings("replyTo", "conversationId", "text") ? (value as ConsoleEvent) : undefined;
      case "finished":
        return strings("replyTo", "conversationId", "status") ? (value as ConsoleEvent) : undefined;
      case "operator":
        return strings("conversationId", "text") && typeof value.at === "number" ? (value as ConsoleEvent) : undefined;
      case "pause":
        return strings("scope", "target") ? (value as ConsoleEvent) : undefined;
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

/** The conversation an event concerns (undefined for events every page wants). */
export function conversationOf(event: ConsoleEvent): string | undefined {
  return event.type === "pause" ? undefined : event.conversationId;
}
