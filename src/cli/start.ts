/**
 * `npm start`: the local all-in-one. A NIM emulator, the bridge wired to it, and a demo chat page,
 * on one machine with no account or key anywhere:
 *
 *     browser ──HTTP──► bridge (PORT, default 8000): demo page, /demo/login, /im/register, /im/callback
 *        │                  ▲ message copy (signed)          │ msg/sendMsg (signed)
 *        └──WebSocket──► NIM emulator (a free port): /gateway ◄┘
 *
 * The emulator's app key and secret are made up per run (the emulator forgets everything when it
 * stops anyway); the secret never leaves this process. The demo site's JWT secret is random per
 * run too, so a demo JWT dies with the process. The generator is the offline demo one unless an
 * LLM is configured (OPENAI_BASE_URL / OPENAI_API_KEY, or BOT_GENERATOR), exactly as loadConfig
 * decides for `serve`. Two demo bots (顾问 and 导师, written to `data/demo-bots.json`) answer unless
 * BOTS_FILE names the operator's own, and the page's group room is a team of the demo users and
 * every bot. The page's pictures and files go to the emulator's storage (NOS stand-in), which the
 * bridge may fetch media from (MEDIA_ALLOWED_HOSTS / MEDIA_ALLOW_HTTP, unless set).
 *
 * It binds to 127.0.0.1 unless HOST says otherwise: `POST /demo/login` hands a JWT to anyone, so
 * the demo should not be reachable from the network by accident.
 *
 * @example
 * const stack = await startLocalStack({ port: 0, dataDirectory: tmp, env: { LOG_LEVEL: "silent" } });
 * await fetch(`${stack.url}/demo/config`);
 * await stack.close();
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadBots } from "../bots/index.ts";
import { ConfigurationError, type GeneratorKind, loadConfig } from "../config/index.ts";
import { addTeamMembers, createTeam, type RunningNimEmulator, startNimEmulator } from "../emulator/index.ts";
import { createLogger, type Logger } from "../http/logger.ts";
import { type Bridge, createBridge } from "../server.ts";
import { buildClientBundle } from "../web/client-bundle.ts";
import { createDemoRoom } from "../web/demo-room.ts";
import { demoSiteRoutes } from "../web/demo-site.ts";

export interface LocalStackOptions {
  /** The bridge's port. Default: PORT from the environment, else 8000. 0 = a free port. */
  port?: number;
  /** Where the bridge and the emulator listen. Default: HOST from the environment, else 127.0.0.1. */
  host?: string;
  /** The emulator's port. Default 0: a free port. */
  emulatorPort?: number;
  /** Where the SQLite database goes. Default ./data. */
  dataDirectory?: string;
  /** The environment to read instead of process.env (tests pass a small, hermetic one). */
  env?: Record<string, string | undefined>;
  logger?: Logger;
}

export interface LocalStack {
  /** The page to open, e.g. http://127.0.0.1:8000/ */
  url: string;
  /** The emulator's base URL (its gateway is `${emulatorUrl.replace("http", "ws")}/gateway`). */
  emulatorUrl: string;
  bridge: Bridge;
  emulator: RunningNimEmulator;
  /** Which generator answers: `demo` unless an LLM or an HTTP back end is configured. */
  generator: GeneratorKind;
  close(): Promise<void>;
}

/** The requested port is taken: the message says which and what to do. */
export class PortInUseError extends Error {
  override readonly name = "PortInUseError";
  constructor(
    readonly port: number,
    readonly host: string,
  ) {
    super(
      `Port ${port} on ${host} is already in use (another im-bridge, or another program, is listening there). ` +
        `Stop it, or pick another port: PORT=${port === 8000 ? 8080 : port + 1} npm start`,
    );
  }
}

export const DEMO_BOT_ACCID = "advisor_bot";
/** The second demo bot, so the page's bot picker and the group room have a choice. */
export const DEMO_TUTOR_ACCID = "tutor_bot";
/** The demo's bots when BOTS_FILE is not set: written to the data directory at start. */
const DEMO_BOTS = {
  bots: [
    {
      accid: DEMO_BOT_ACCID,
      name: "顾问",
      system_prompt:
        "You are a friendly financial adviser. Answer in the language the user writes in. 你是一位友好的理财顾问。",
    },
    {
      accid: DEMO_TUTOR_ACCID,
      name: "导师",
      system_prompt: "You are a patient tutor. Answer in the language the user writes in. 你是一位耐心的学习导师。",
    },
  ],
};
const DEMO_ROOM_NAME = "演示群";
const DEFAULT_PORT = 8000;
const DEFAULT_HOST = "127.0.0.1";
const WEB_DIRECTORY = fileURLToPath(new URL("../../web/", import.meta.url));

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const environment = options.env ?? process.env;
  const host = options.host ?? (environment.HOST || DEFAULT_HOST);
  const port = options.port ?? (environment.PORT ? Number(environment.PORT) : DEFAULT_PORT);
  const dataDirectory = resolve(options.dataDirectory ?? "data");
  mkdirSync(dataDirectory, { recursive: true });

  const appKey = `demo${randomBytes(8).toString("hex")}`;
  const appSecret = randomBytes(24).toString("hex");
  const jwtSecret = randomBytes(32).toString("base64url");

  // Two demo bots unless the operator brought their own BOTS_FILE (then NIM_BOT_ACCID must be in it).
  const botsFile = environment.BOTS_FILE || resolve(dataDirectory, "demo-bots.json");
  if (!environment.BOTS_FILE) writeFileSync(botsFile, `${JSON.stringify(DEMO_BOTS, null, 2)}\n`);

  const demoEnvironment = {
    ...environment,
    BOTS_FILE: botsFile,
    NIM_APP_KEY: appKey,
    NIM_APP_SECRET: appSecret,
    NIM_BOT_ACCID: DEMO_BOT_ACCID,
    DATABASE_URL: `sqlite:${resolve(dataDirectory, "im-bridge-demo.db")}`,
    IM_AUTH_JWT_SECRET: jwtSecret,
    PORT: String(port),
    HOST: host,
  };
  // Validated before anything listens, so a bad setting (or bots file) leaves no port open.
  const bots = loadBots(loadConfig(demoEnvironment));
  const clientBundle = await buildClientBundle();

  const emulator = await startNimEmulator({
    appKey,
    appSecret,
    host,
    port: options.emulatorPort ?? 0,
  });
  const emulatorPort = Number(new URL(emulator.url).port);
  // A wildcard address is where one listens, not where one connects.
  const emulatorUrl = `http://${connectableHost(host)}:${emulatorPort}`;
  emulator.storage.publicUrl = emulatorUrl;
  const config = loadConfig({
    ...demoEnvironment,
    NIM_API_BASE: `${emulatorUrl}/nimserver`,
    ...demoMediaSettings(environment, emulatorUrl),
  });
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  // The group room of the page. A real site calls team/create.action and team/add.action; here the
  // emulator's own team rules do it (the "console"). Bots without an account yet are left out.
  const existing = (accids: string[]) => accids.filter((accid) => emulator.state.findAccount(accid));
  const room = createDemoRoom({
    owner: bots.default.accid,
    bots: bots.accids(),
    name: DEMO_ROOM_NAME,
    api: {
      createTeam: async (input) =>
        createTeam(emulator.state, { ...input, members: existing(input.members), consentRequired: false }).tid,
      addMembers: async (input) => {
        addTeamMembers(emulator.state, { ...input, consentRequired: false });
      },
    },
  });

  // The browser reaches the emulator on the host name it used for the page when the emulator
  // listens everywhere (HOST=0.0.0.0 for a phone on the LAN), else where it listens.
  const emulatorHostFor = (pageHostname: string) => (isWildcard(host) ? hostOnly(pageHostname) : connectableHost(host));

  let bridge: Bridge | undefined;
  try {
    bridge = await createBridge(config, {
      logger,
      extraRoutes: [
        demoSiteRoutes({
          webDirectory: WEB_DIRECTORY,
          clientBundle,
          jwtSecret,
          jwtIssuer: config.auth.jwtIssuer,
          jwtAudience: config.auth.jwtAudience,
          botAccid: bots.default.accid,
          bots: bots.summaries(),
          room,
          generator: config.generator.kind,
          gatewayUrl: (request) => `ws://${emulatorHostFor(request.hostname)}:${emulatorPort}/gateway`,
          storageUrl: (request) => `http://${emulatorHostFor(request.hostname)}:${emulatorPort}`,
        }),
      ],
    });
    try {
      await bridge.start();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") throw new PortInUseError(port, host);
      throw error;
    }
  } catch (error) {
    await bridge?.close().catch(() => {});
    await emulator.close().catch(() => {});
    throw error;
  }

  const address = bridge.app.server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;
  const bridgeUrl = `http://${connectableHost(host)}:${boundPort}`;
  // Now NIM knows where to copy the users' messages to (the console's 抄送 URL).
  emulator.settings.callbackUrl = `${bridgeUrl}/im/callback`;

  const running = bridge;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${displayHost(host)}:${boundPort}/`,
    emulatorUrl,
    bridge: running,
    emulator,
    generator: config.generator.kind,
    close() {
      closing ??= (async () => {
        await running.close();
        await emulator.close();
      })();
      return closing;
    },
  };
}

/**
 * The page's pictures and files live in the emulator's NOS stand-in, on loopback and over plain
 * http: the bridge may fetch from there (allowed by name, which is what lets a loopback address
 * through) unless the operator set the media settings themselves.
 */
export function demoMediaSettings(
  environment: Record<string, string | undefined>,
  emulatorUrl: string,
): { MEDIA_ALLOWED_HOSTS: string; MEDIA_ALLOW_HTTP: string } {
  return {
    MEDIA_ALLOWED_HOSTS: environment.MEDIA_ALLOWED_HOSTS || new URL(emulatorUrl).host,
    MEDIA_ALLOW_HTTP: environment.MEDIA_ALLOW_HTTP || "true",
  };
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

function connectableHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "[::1]";
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** What to print: `localhost` reads better than a wildcard or the loopback address. */
function displayHost(host: string): string {
  return isWildcard(host) ? "localhost" : connectableHost(host);
}

/** Fastify's `hostname` has no port, but an IPv6 literal keeps its brackets; keep them. */
function hostOnly(hostname: string): string {
  return hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
}

async function main(): Promise<void> {
  const logger = createLogger({ level: process.env.LOG_LEVEL || "warn" });
  let stack: LocalStack;
  try {
    stack = await startLocalStack({ logger });
  } catch (error) {
    if (error instanceof ConfigurationError || error instanceof PortInUseError) {
      console.error(`im-bridge demo cannot start.\n${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  console.log(
    [
      "",
      `  im-bridge demo is running (local NIM emulator, ${stack.generator} generator). Open:`,
      "",
      `      ${stack.url}`,
      "",
      "  在浏览器中打开上面的地址，输入任意名字即可与机器人聊天；按 Ctrl-C 退出。",
      "",
      // Operator console: on only with ADMIN_TOKEN (src/admin); its token is never printed.
      ...(process.env.ADMIN_TOKEN
        ? [`  Operator console / 运营控制台: ${stack.url}admin (log in with ADMIN_TOKEN)`, ""]
        : []),
    ].join("\n"),
  );
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const forced = setTimeout(() => process.exit(0), 5_000);
    forced.unref();
    await stack.close().catch((error: unknown) => console.error(error));
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
}

function isMainModule(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainModule()) {
  main().catch((error: unknown) => {
    console.error("im-bridge demo failed to start:", error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
