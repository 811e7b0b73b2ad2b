/**
 * `npm run emulator`: the local NIM emulator on its own, for running the bridge (`npm run serve`) or
 * a front end against a fake NIM by hand. Configured by environment variables:
 *
 * | variable                | meaning                                             | default           |
 * | ----------------------- | --------------------------------------------------- | ----------------- |
 * | `NIM_APP_KEY`           | the AppKey requests must carry                      | `demo-app-key`    |
 * | `NIM_APP_SECRET`        | the AppSecret requests and callbacks are signed with | `demo-app-secret` |
 * | `EMULATOR_PORT`         | port                                                | `8100`            |
 * | `EMULATOR_HOST`         | interface                                           | `127.0.0.1`       |
 * | `EMULATOR_CALLBACK_URL` | where message copies (消息抄送) are POSTed           | unset: no copies  |
 *
 * Prints the URLs to point the bridge at (NIM_API_BASE, NIM_OPEN_API_BASE) and the gateway's
 * WebSocket URL, then runs until SIGINT or SIGTERM. The AppSecret is never printed.
 *
 * @module
 */
import { startNimEmulator } from "../emulator/index.ts";

class SettingError extends Error {}

interface EmulatorCliSettings {
  appKey: string;
  appSecret: string;
  port: number;
  host: string;
  callbackUrl: string | undefined;
}

function readSettings(environment: NodeJS.ProcessEnv): EmulatorCliSettings {
  const text = (name: string) => {
    const value = environment[name]?.trim();
    return value ? value : undefined;
  };
  const portText = text("EMULATOR_PORT") ?? "8100";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65_535) {
    throw new SettingError(`EMULATOR_PORT must be a port number from 0 to 65535, got "${portText}"`);
  }
  const callbackUrl = text("EMULATOR_CALLBACK_URL");
  if (callbackUrl !== undefined && !URL.canParse(callbackUrl)) {
    throw new SettingError(`EMULATOR_CALLBACK_URL is not a URL: "${callbackUrl}"`);
  }
  return {
    appKey: text("NIM_APP_KEY") ?? "demo-app-key",
    appSecret: text("NIM_APP_SECRET") ?? "demo-app-secret",
    port,
    host: text("EMULATOR_HOST") ?? "127.0.0.1",
    callbackUrl,
  };
}

/** A listening wildcard address is not where a client connects; show the loopback address instead. */
function connectableHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}

async function main(): Promise<void> {
  let settings: EmulatorCliSettings;
  try {
    settings = readSettings(process.env);
  } catch (error) {
    if (error instanceof SettingError) {
      console.error(`NIM emulator cannot start: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const emulator = await startNimEmulator({
    appKey: settings.appKey,
    appSecret: settings.appSecret,
    port: settings.port,
    host: settings.host,
    callbackUrl: settings.callbackUrl,
  });
  const port = new URL(emulator.url).port;
  const base = `http://${connectableHost(settings.host)}:${port}`;
  console.log(
    [
      `NIM emulator listening on ${settings.host}:${port} (AppKey ${settings.appKey}).`,
      `  classic API (NIM_API_BASE)       ${base}/nimserver`,
      `  v2 API (NIM_OPEN_API_BASE)       ${base}   (stream messages: POST /im/v2/conversations/{id}/messages/actions/stream_message)`,
      `  client gateway (WebSocket)       ws://${connectableHost(settings.host)}:${port}/gateway`,
      `  message copies (消息抄送) go to  ${settings.callbackUrl ?? "nowhere: set EMULATOR_CALLBACK_URL"}`,
      "Stop with Ctrl+C.",
    ].join("\n"),
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`NIM emulator: ${signal}, shutting down.`);
    const forced = setTimeout(() => process.exit(0), 5_000);
    forced.unref();
    await emulator.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

main().catch((error: unknown) => {
  console.error("NIM emulator failed to start:", error instanceof Error ? error.message : error);
  process.exit(1);
});
