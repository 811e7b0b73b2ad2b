/**
 * `npm run serve`: the production server, configured only by environment variables.
 * Refuses to start without NIM_APP_KEY, NIM_APP_SECRET and NIM_BOT_ACCID, naming every
 * missing or invalid setting at once.
 */
import { parseArgs } from "node:util";
import { ConfigurationError, loadConfig } from "../config/index.ts";
import { createBridge } from "../server.ts";

async function main(): Promise<void> {
  // `serve --role http|worker` overrides SERVE_ROLE for this process.
  const { values } = parseArgs({ options: { role: { type: "string" } }, strict: true });
  const environment = values.role ? { ...process.env, SERVE_ROLE: values.role } : process.env;
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(environment, { require: ["NIM_APP_KEY", "NIM_APP_SECRET", "NIM_BOT_ACCID"] });
  } catch (error) {
    if (error instanceof ConfigurationError) {
      console.error(`im-bridge cannot start.\n${error.message}\nSee the configuration table in README.md.`);
      process.exit(1);
    }
    throw error;
  }
  const bridge = await createBridge(config);
  const url = await bridge.start();
  bridge.app.log.info(
    { url, role: config.role, generator: config.generator.kind, database: config.databaseUrl.split(":")[0] },
    "im-bridge is serving",
  );
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    bridge.app.log.info({ signal }, "shutting down");
    // Intake stops, running replies hand their leases back, connections close. Whatever still
    // hangs after 9 s is cut off: the contract promises an exit within 10 s, and a forced exit
    // says so with a non-zero code.
    const forced = setTimeout(() => {
      bridge.app.log.error("shutdown did not finish in time: forced exit");
      process.exit(1);
    }, 9_000);
    forced.unref();
    try {
      await bridge.close();
    } catch (error) {
      bridge.app.log.error({ err: error }, "shutdown failed");
      process.exit(1);
    }
    process.exit(0);
  };
  process.on("SIGTERM", () => {
    stop("SIGTERM").catch(() => process.exit(1));
  });
  process.on("SIGINT", () => {
    stop("SIGINT").catch(() => process.exit(1));
  });
}

main().catch((error: unknown) => {
  console.error("im-bridge failed to start:", error instanceof Error ? error.message : error);
  process.exit(1);
});
