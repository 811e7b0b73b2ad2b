/**
 * The local NIM emulator: a fake NIM that every test (and `npm start`) talks to over real HTTP.
 * It plays NIM's classic server API with NIM's quirks (nim-protocol §1–3) plus fault injection.
 * It imports nothing from im-bridge except pure helpers (the checksum), so it cannot accidentally
 * agree with the bridge's bugs.
 *
 * @example
 * const emulator = await startNimEmulator({ appKey: "key", appSecret: "secret" });
 * const nim = createNimClient({ appKey: "key", appSecret: "secret", apiBase: emulator.classicApiBase, … });
 * emulator.faults.push({ path: "msg/sendMsg.action", kind: "code", code: 500, times: 2 });
 * await emulator.state.waitForMessages({ to: "u_42", count: 3 });
 * await emulator.close();
 */
import Fastify, { type FastifyInstance } from "fastify";
import { classicApi } from "./classic-api.ts";
import type { FaultRule } from "./faults.ts";
import { type EmulatorSettings, type EmulatorStateOptions, NimEmulatorState } from "./state.ts";

export { ClassicApiError, serialize } from "./classic-api.ts";
export {
  createSeededRandom,
  type FaultAction,
  type FaultRule,
  type FaultWhen,
  type RandomFaults,
} from "./faults.ts";
export type {
  EmulatorAccount,
  EmulatorMessage,
  EmulatorMessageOption,
  EmulatorNotification,
  EmulatorNotificationOption,
  EmulatorRequestRecord,
  EmulatorSettings,
  EmulatorStateOptions,
  MessageFilter,
  NotificationFilter,
} from "./state.ts";
export { NimEmulatorState } from "./state.ts";

export interface NimEmulatorOptions extends EmulatorStateOptions {
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Fastify's request logging; off by default to keep test output quiet. */
  logger?: boolean;
}

export interface NimEmulatorApp {
  /** Not yet listening; use `app.inject()` for in-process requests or `startNimEmulator` for a port. */
  app: FastifyInstance;
  state: NimEmulatorState;
  /** The fault queue (same array as `state.faults`). */
  faults: FaultRule[];
  /** Mutable at run time (same object as `state.settings`). */
  settings: EmulatorSettings;
}

export interface RunningNimEmulator extends NimEmulatorApp {
  /** e.g. http://127.0.0.1:53211 */
  url: string;
  /** `${url}/nimserver`, what the bridge's NIM_API_BASE points at. */
  classicApiBase: string;
  close(): Promise<void>;
}

export function createNimEmulatorApp(options: NimEmulatorOptions): NimEmulatorApp {
  const state = new NimEmulatorState(options);
  // Destroys open connections on close, so a test's close() never waits for a held request.
  const app = Fastify({ logger: options.logger ?? false, forceCloseConnections: true });
  const closing = new AbortController();
  app.addHook("preClose", (done) => {
    closing.abort();
    done();
  });
  app.register(classicApi, { prefix: "/nimserver", state, closing: closing.signal });
  return { app, state, faults: state.faults, settings: state.settings };
}

export async function startNimEmulator(options: NimEmulatorOptions): Promise<RunningNimEmulator> {
  const emulator = createNimEmulatorApp(options);
  const host = options.host ?? "127.0.0.1";
  await emulator.app.listen({ port: options.port ?? 0, host });
  const address = emulator.app.server.address();
  if (address === null || typeof address === "string") throw new Error("NIM emulator: no TCP address");
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`;
  return {
    ...emulator,
    url,
    classicApiBase: `${url}/nimserver`,
    close: () => emulator.app.close(),
  };
}
