/**
 * The local NIM emulator: a fake NIM that every test (and `npm start`) talks to over real HTTP.
 * On one HTTP server it plays:
 * - NIM's classic server API under `/nimserver` with NIM's quirks (nim-protocol §1–3) and faults;
 * - the v2 stream-message endpoint under `/im/v2` (nim-protocol §5.1), see v2-api.ts;
 * - a client gateway, a WebSocket at `/gateway` standing in for NIM's client SDK (login, send,
 *   receive, offline messages, history), see gateway.ts;
 * - the message-copy callback (消息抄送) to `settings.callbackUrl`, signed like NIM, see callbacks.ts;
 * - NIM's object storage (NOS) for the pictures and files a client sends: `/nos/upload` and
 *   `/nos/<id>/<name>`, see storage.ts;
 * - advanced teams (team/create, add, kick; team sends with ope 1, 804 for a non-member; team 抄送
 *   with `tMembers`), see teams.ts, and recalls with NIM's recall copies (eventType 7 / 8), see recall.ts.
 * It imports nothing from im-bridge except pure helpers (the checksum and the callback builder and
 * signer), so it cannot accidentally agree with the bridge's bugs.
 *
 * @example
 * const emulator = await startNimEmulator({ appKey: "key", appSecret: "secret", callbackUrl: "http://127.0.0.1:8000/im/callback" });
 * const nim = createNimClient({ appKey: "key", appSecret: "secret", apiBase: emulator.classicApiBase, … });
 * emulator.faults.push({ path: "msg/sendMsg.action", kind: "code", code: 500, times: 2 });
 * await emulator.state.waitForMessages({ to: "u_42", count: 3 });
 * const socket = new WebSocket(emulator.gatewayUrl); // then {"type":"login","accid","token"}
 * await emulator.close();
 */
import Fastify, { type FastifyInstance } from "fastify";
import { CallbackDispatcher } from "./callbacks.ts";
import { classicApi } from "./classic-api.ts";
import type { FaultRule } from "./faults.ts";
import { GatewayHub, gateway } from "./gateway.ts";
import {
  type EmulatorCallbackRecord,
  type EmulatorSettings,
  type EmulatorStateOptions,
  NimEmulatorState,
} from "./state.ts";
import { EmulatorStorage, type EmulatorStorageOptions, storageRoutes } from "./storage.ts";
import { v2Api } from "./v2-api.ts";

export { CallbackDispatcher, messageCopyOf } from "./callbacks.ts";

export { ClassicApiError, serialize } from "./classic-api.ts";
export {
  type CallbackFaults,
  createSeededRandom,
  type FaultAction,
  type FaultRule,
  type FaultWhen,
  type RandomFaults,
} from "./faults.ts";
export {
  type GatewayClientFrame,
  GatewayHub,
  type GatewayMessage,
  type GatewayRecall,
  type GatewayServerFrame,
  type GatewaySession,
  type GatewayStreamChunk,
  type GatewayTeam,
  loginFailedCloseCode,
  toGatewayMessage,
} from "./gateway.ts";
export { type RecallRequest, recallCopyOf, recallMessage } from "./recall.ts";
export type {
  CallbackFilter,
  EmulatorAccount,
  EmulatorCallbackRecord,
  EmulatorInterceptRecord,
  EmulatorMessage,
  EmulatorMessageOption,
  EmulatorMessageSource,
  EmulatorNotification,
  EmulatorNotificationOption,
  EmulatorRecall,
  EmulatorRequestRecord,
  EmulatorSettings,
  EmulatorStateOptions,
  EmulatorStream,
  EmulatorTeam,
  MessageFilter,
  NotificationFilter,
  StreamTerminationReason,
} from "./state.ts";
export { isStoredMessage, NimEmulatorState } from "./state.ts";
export { EmulatorStorage, type EmulatorStorageOptions, type StoredObject } from "./storage.ts";
export {
  addTeamMembers,
  createTeam,
  kickTeamMembers,
  TEAM_MEMBER_LIMIT,
  TEAM_MEMBERS_COPY_LIMIT,
  teamMembersCopyValue,
} from "./teams.ts";
export { streamMessagePath, terminateIdleStreams, V2_CODES } from "./v2-api.ts";

export interface NimEmulatorOptions extends EmulatorStateOptions {
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Fastify's request logging; off by default to keep test output quiet. */
  logger?: boolean;
  /** Limits of the NOS stand-in (uploads are kept in memory). */
  storage?: EmulatorStorageOptions;
}

export interface NimEmulatorApp {
  /** Not yet listening; use `app.inject()` for in-process requests or `startNimEmulator` for a port. */
  app: FastifyInstance;
  state: NimEmulatorState;
  /** The fault queue (same array as `state.faults`). */
  faults: FaultRule[];
  /** Mutable at run time (same object as `state.settings`), including `callbackUrl`. */
  settings: EmulatorSettings;
  /** Who is connected to the gateway; `hub.sendTo(accid, frame)` pushes a frame by hand. */
  hub: GatewayHub;
  /** The message-copy sender; `await callbacks.idle()` waits for copies (and retries) in flight. */
  callbacks: CallbackDispatcher;
  /** The uploaded pictures and files (NOS); `storage.publicUrl` is where download links point. */
  storage: EmulatorStorage;
  /** POSTs the signed `{}` NIM's console sends when a callback URL is configured; one attempt. */
  validateCallbackUrl(url?: string): Promise<EmulatorCallbackRecord>;
}

export interface RunningNimEmulator extends NimEmulatorApp {
  /** e.g. http://127.0.0.1:53211 */
  url: string;
  /** `${url}/nimserver`, what the bridge's NIM_API_BASE points at. */
  classicApiBase: string;
  /** `url` itself: the v2 API lives at `${v2ApiBase}/im/v2/…`, what NIM_OPEN_API_BASE points at. */
  v2ApiBase: string;
  /** e.g. ws://127.0.0.1:53211/gateway */
  gatewayUrl: string;
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
  const hub = new GatewayHub(state);
  const callbacks = new CallbackDispatcher(state, closing.signal);
  // Delivery to gateway sessions first, then the copy: both start synchronously on every message.
  const stopDelivery = hub.start();
  const stopCopies = callbacks.start();
  app.addHook("onClose", (_instance, done) => {
    stopDelivery();
    stopCopies();
    done();
  });
  app.register(classicApi, { prefix: "/nimserver", state, closing: closing.signal });
  app.register(v2Api, { prefix: "/im/v2", state, hub, closing: closing.signal });
  app.register(gateway, { state, hub });
  const storage = new EmulatorStorage(options.storage);
  app.register(storageRoutes, { storage });
  return {
    app,
    state,
    faults: state.faults,
    settings: state.settings,
    hub,
    callbacks,
    storage,
    validateCallbackUrl: (url) => callbacks.validateCallbackUrl(url),
  };
}

export async function startNimEmulator(options: NimEmulatorOptions): Promise<RunningNimEmulator> {
  const emulator = createNimEmulatorApp(options);
  const host = options.host ?? "127.0.0.1";
  await emulator.app.listen({ port: options.port ?? 0, host });
  const address = emulator.app.server.address();
  if (address === null || typeof address === "string") throw new Error("NIM emulator: no TCP address");
  const authority = `${host.includes(":") ? `[${host}]` : host}:${address.port}`;
  const url = `http://${authority}`;
  emulator.storage.publicUrl ??= url;
  return {
    ...emulator,
    url,
    classicApiBase: `${url}/nimserver`,
    v2ApiBase: url,
    gatewayUrl: `ws://${authority}/gateway`,
    close: () => emulator.app.close(),
  };
}
