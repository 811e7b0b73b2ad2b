/**
 * `npm run nim:callback -- --from <accid> --text hi [--to <bot>] [--url …] [--msgid <id>] [--repeat N] [--print]`
 *
 * Plays NIM: builds the message-copy callback (消息抄送) NIM would POST when a user sends the bot a
 * P2P text, signs it with NIM_APP_SECRET exactly as NIM does, and POSTs it to the bridge — or, with
 * `--print`, prints ready-to-paste curl and PowerShell commands instead. Useful to check a deployed
 * `/im/callback` (secret, clock, reverse proxy) without a NIM console.
 *
 * The AppSecret is read from the environment and never printed; only the derived CheckSum is.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { buildTextMessageCopy } from "../callback/build.ts";
import { type CallbackSignatureHeaders, signCallback } from "../callback/sign.ts";
import { ConfigurationError, loadConfig } from "../config/index.ts";

const usage = `Send a signed NIM message-copy callback (a user's text to the bot) to im-bridge.

Usage:
  npm run nim:callback -- --from <accid> --text <text> [options]

Options:
  --from <accid>    sender accid (required)
  --text <text>     the message text (required)
  --to <accid>      receiver; default NIM_BOT_ACCID
  --url <url>       callback URL; default http://127.0.0.1:$PORT/im/callback (PORT default 8000)
  --msgid <digits>  msgidServer; default a fresh one (reuse one to test de-duplication)
  --nick <name>     fromNick; default the sender accid
  --repeat <n>      deliver the same message n times, re-signed each time (default 1)
  --print           print curl and PowerShell commands instead of sending
  --help            show this help

Environment: NIM_APP_SECRET (required), NIM_APP_KEY (sent as the AppKey header when set),
NIM_BOT_ACCID, PORT, CALLBACK_TIME_WINDOW_SECONDS.`;

class UsageError extends Error {}

interface Options {
  from: string;
  text: string;
  to: string | undefined;
  url: string | undefined;
  msgid: string | undefined;
  nick: string | undefined;
  repeat: number;
  print: boolean;
}

function readOptions(argv: string[]): Options | "help" {
  let values: ReturnType<typeof parseOptions>["values"];
  try {
    values = parseOptions(argv).values;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return "help";
  if (!values.from) throw new UsageError("--from <accid> is required");
  if (values.text === undefined) throw new UsageError("--text <text> is required");
  if (values.msgid !== undefined && !/^[0-9]+$/.test(values.msgid)) {
    throw new UsageError("--msgid must be digits only, like NIM's msgidServer");
  }
  const repeat = values.repeat === undefined ? 1 : Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 1000) {
    throw new UsageError("--repeat must be an integer from 1 to 1000");
  }
  if (values.url !== undefined && !URL.canParse(values.url)) throw new UsageError(`--url is not a URL: ${values.url}`);
  return {
    from: values.from,
    text: values.text,
    to: values.to,
    url: values.url,
    msgid: values.msgid,
    nick: values.nick,
    repeat,
    print: values.print ?? false,
  };
}

function parseOptions(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      from: { type: "string" },
      text: { type: "string" },
      to: { type: "string" },
      url: { type: "string" },
      msgid: { type: "string" },
      nick: { type: "string" },
      repeat: { type: "string" },
      print: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/**
 * JSON with every non-ASCII character as a \\u escape: the same data, but bytes that survive any
 * terminal, code page or shell, so the MD5 in a printed command still matches what is sent.
 */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function requestHeaders(signature: CallbackSignatureHeaders, appKey: string | undefined): Record<string, string> {
  return {
    "Content-Type": "application/json",
    ...(appKey ? { AppKey: appKey } : {}),
    CurTime: signature.CurTime,
    MD5: signature.MD5,
    CheckSum: signature.CheckSum,
  };
}

/** POSIX shell single quoting: everything literal, a quote becomes '\''. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** PowerShell single quoting: everything literal, a quote is doubled. */
function powerShellQuote(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

function curlCommand(url: string, headers: Record<string, string>, body: string): string {
  const lines = [`curl -sS -i -X POST ${shellQuote(url)}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`  -H ${shellQuote(`${name}: ${value}`)}`);
  // --data-binary sends the bytes untouched (-d would strip newlines and change the MD5).
  lines.push(`  --data-binary ${shellQuote(body)}`);
  return lines.join(" \\\n");
}

function powerShellCommand(url: string, headers: Record<string, string>, body: string): string {
  const { "Content-Type": contentType = "application/json", ...rest } = headers;
  const headerTable = Object.entries(rest)
    .map(([name, value]) => `${powerShellQuote(name)} = ${powerShellQuote(value)}`)
    .join("; ");
  // Bytes, not a string: Windows PowerShell 5.1 would otherwise re-encode the body.
  return (
    `Invoke-RestMethod -Method Post -Uri ${powerShellQuote(url)} -ContentType ${powerShellQuote(contentType)} ` +
    `-Headers @{ ${headerTable} } -Body ([System.Text.Encoding]::UTF8.GetBytes(${powerShellQuote(body)}))`
  );
}

async function main(): Promise<number> {
  let options: Options | "help";
  try {
    options = readOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`nim:callback: ${error.message}\n\n${usage}`);
    return 2;
  }
  if (options === "help") {
    console.log(usage);
    return 0;
  }

  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigurationError)) throw error;
    console.error(`nim:callback: ${error.message}`);
    return 1;
  }
  const appSecret = config.nim.appSecret;
  if (!appSecret) {
    console.error(
      "nim:callback: NIM_APP_SECRET is not set. Callbacks are signed with the AppSecret, so set it to the " +
        "same value the bridge uses (the value is read from the environment and never printed).",
    );
    return 1;
  }
  const to = options.to ?? config.nim.botAccid;
  if (!to) {
    console.error("nim:callback: no receiver: pass --to <accid> or set NIM_BOT_ACCID.");
    return 2;
  }
  const url = options.url ?? `http://127.0.0.1:${config.http.port}/im/callback`;

  // One message; with --repeat the same body is delivered again, as a NIM redelivery would be.
  const copy = buildTextMessageCopy({
    from: options.from,
    to,
    text: options.text,
    fromNick: options.nick,
    msgidServer: options.msgid,
  });

  if (options.print) {
    const body = asciiJson(copy);
    const headers = requestHeaders(signCallback({ appSecret, body, curTime: Date.now() }), config.nim.appKey);
    const windowSeconds = config.callback.timeWindowSeconds;
    console.log(`# A signed NIM callback: msgidServer ${copy["msgidServer"]}, ${options.from} -> ${to}.`);
    console.log(`# CurTime is now: the bridge accepts it for ${windowSeconds} s (CALLBACK_TIME_WINDOW_SECONDS).`);
    console.log("\n# bash / zsh / Git Bash (on Windows PowerShell, call curl.exe, not the curl alias):");
    console.log(curlCommand(url, headers, body));
    console.log("\n# PowerShell:");
    console.log(powerShellCommand(url, headers, body));
    return 0;
  }

  // Sent as NIM sends it: raw UTF-8, not \\u escapes.
  const body = JSON.stringify(copy);
  let failed = false;
  for (let attempt = 1; attempt <= options.repeat; attempt += 1) {
    const headers = requestHeaders(signCallback({ appSecret, body, curTime: Date.now() }), config.nim.appKey);
    const label = options.repeat > 1 ? `[${attempt}/${options.repeat}] ` : "";
    try {
      const response = await fetch(url, {
        method: "POST",
        headers,
        body,
        // NIM gives up after 5 s; a little more here shows a slow bridge instead of hiding it.
        signal: AbortSignal.timeout(10_000),
      });
      const responseText = await response.text();
      console.log(`${label}POST ${url} msgidServer=${copy["msgidServer"]} -> HTTP ${response.status}`);
      if (responseText) console.log(responseText);
      if (!response.ok) failed = true;
    } catch (error) {
      const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
      const message = error instanceof Error ? error.message : String(error);
      console.error(`${label}POST ${url} failed: ${message}${cause}`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error("nim:callback failed:", error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
