/**
 * Reads and validates `BOTS_FILE` (contract: "Several bots"):
 *
 * ```json
 * {"bots": [{"accid": "advisor_bot", "name": "顾问", "system_prompt": "…", "generator": "openai",
 *            "openai_base_url": "…", "openai_api_key": "…", "openai_model": "…", "generator_http_url": "…",
 *            "reply_limit_per_minute": 20, "reply_limit_per_day": 500,
 *            "daily_token_budget": 200000}]}
 * ```
 *
 * Only `accid` is required; every other key falls back to the environment (`BOT_SYSTEM_PROMPT`,
 * `BOT_GENERATOR`, `OPENAI_*`, `GENERATOR_HTTP_URL`, `REPLY_LIMIT_PER_*`). Like src/config, every
 * problem of the file is reported at once, each naming the file, the entry (index and accid) and the
 * key, so an operator fixes the whole file in one go. Values are never echoed except accids and names
 * (an API key in the wrong field must not land in a log), and JSON syntax errors report a position,
 * not Node's snippet of the text around it.
 *
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { z } from "zod";
import { ConfigurationError, type GeneratorKind } from "../config/index.ts";
import type { BotDefinition, BotLimits } from "./types.ts";

/** The environment's settings each bot falls back to (src/config's `generator` and `limits`). */
export interface BotDefaults {
  generator: {
    /** BOT_GENERATOR as resolved by src/config (explicit, or openai when OPENAI_* is set, else demo). */
    kind: GeneratorKind;
    openaiBaseUrl: string | undefined;
    openaiApiKey: string | undefined;
    openaiModel: string;
    httpUrl: string | undefined;
    systemPrompt: string;
  };
  limits: BotLimits;
  /** NIM_BOT_ACCID: when set, the default bot, and it must be one of the file's bots. */
  defaultAccid: string | undefined;
}

export interface ParsedBots {
  bots: BotDefinition[];
  /** NIM_BOT_ACCID when set, else the first entry's accid (lower-cased). */
  defaultAccid: string;
}

/** Bigger than any sensible file; stops a mistaken path (a log, a dump) from being read whole. */
export const BOTS_FILE_MAX_BYTES = 1024 * 1024;
/**
 * Every bot is a NIM account ensured at start and listed in each `/im/register` answer; a hundred
 * is far beyond any site's assistants and keeps both cheap.
 */
export const BOTS_MAX = 100;
/** NIM's nickname limit (user/create.action `name`). */
export const BOT_NAME_MAX_LENGTH = 64;

const generatorKinds = ["openai", "http", "demo"] as const;
/** NIM stores accids lower-cased; the bridge accepts either case, as NIM_BOT_ACCID does. */
const ACCID = /^[a-zA-Z0-9_@.-]{1,32}$/;
/**
 * `u_` and `h_` are the prefixes of site users' accids (src/register/accid.ts): a bot named `u_bob`
 * would be the NIM account of the site user "bob", and /im/register would hand out its token.
 */
const SITE_USER_PREFIXES = ["u_", "h_"];
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

const optionalString = z.string().optional();
const optionalCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional();

const entrySchema = z.strictObject({
  accid: z.string(),
  name: optionalString,
  system_prompt: optionalString,
  // Checked by hand below, for a message that lists the known kinds.
  generator: optionalString,
  openai_base_url: optionalString,
  openai_api_key: optionalString,
  openai_model: optionalString,
  generator_http_url: optionalString,
  reply_limit_per_minute: optionalCount,
  reply_limit_per_day: optionalCount,
  // Operator console (src/usage/budget.ts): tokens this bot may use per day; 0 or absent: BOT_DAILY_TOKEN_BUDGET.
  daily_token_budget: optionalCount,
  // Pictures to this bot go to its model as image input (BOT_VISION for this bot only).
  vision: z.boolean().optional(),
});

const documentSchema = z.strictObject({ bots: z.array(z.unknown()) });

type Entry = z.infer<typeof entrySchema>;

/** Reads `path` (relative to `cwd`) and validates it; throws ConfigurationError naming every problem. */
export function readBotsFile(path: string, defaults: BotDefaults, cwd: string = process.cwd()): ParsedBots {
  const fullPath = resolve(cwd, path);
  const label = `BOTS_FILE ${path}`;
  let text: string;
  try {
    const stats = statSync(fullPath);
    // A device or pipe (BOTS_FILE=/dev/zero by mistake) would be read forever.
    if (!stats.isFile()) throw new ConfigurationError([`${label}: is not a regular file (resolved to ${fullPath})`]);
    const size = stats.size;
    if (size > BOTS_FILE_MAX_BYTES) {
      throw new ConfigurationError([`${label}: is ${size} bytes, more than the ${BOTS_FILE_MAX_BYTES} allowed`]);
    }
    text = readFileSync(fullPath, "utf8");
  } catch (error) {
    if (error instanceof ConfigurationError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : (code ?? "unreadable");
    throw new ConfigurationError([`${label}: cannot be read (${reason}; resolved to ${fullPath})`]);
  }
  return parseBotsFile(text, path, defaults);
}

/** Validates the text of a bots file; `source` names it in the problems. */
export function parseBotsFile(text: string, source: string, defaults: BotDefaults): ParsedBots {
  const label = `BOTS_FILE ${source}`;
  let document: unknown;
  try {
    // Editors on Windows like to start UTF-8 files with a byte-order mark; JSON.parse does not.
    document = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (error) {
    throw new ConfigurationError([`${label}: is not valid JSON${syntaxErrorPosition(error)}`]);
  }
  const parsedDocument = documentSchema.safeParse(document);
  if (!parsedDocument.success) {
    throw new ConfigurationError(
      parsedDocument.error.issues.map((issue) => `${label}: ${pathText(issue.path) || "file"}: ${issue.message}`),
    );
  }

  const problems: string[] = [];
  const entries = parsedDocument.data.bots;
  if (entries.length === 0) problems.push(`${label}: bots: must list at least one bot`);
  if (entries.length > BOTS_MAX) problems.push(`${label}: bots: at most ${BOTS_MAX} bots (found ${entries.length})`);

  const bots: BotDefinition[] = [];
  const seenAccids = new Map<string, number>();
  const seenNames = new Map<string, number>();
  entries.slice(0, BOTS_MAX).forEach((raw, index) => {
    const where = `${label}: bots[${index}]${describeEntry(raw)}`;
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        problems.push(`${where}: ${pathText(issue.path) || "entry"}: ${issue.message}`);
      return;
    }
    const entryProblems: string[] = [];
    const bot = resolveEntry(parsed.data, defaults, entryProblems);
    for (const problem of entryProblems) problems.push(`${where}: ${problem}`);
    if (!bot) return;

    const accidTwin = seenAccids.get(bot.accid);
    if (accidTwin !== undefined) {
      // One problem is enough: the same accid usually means the same (default) name as well.
      problems.push(`${where}: accid: the same as bots[${accidTwin}] (NIM accids are case-insensitive)`);
      return;
    }
    seenAccids.set(bot.accid, index);
    const nameKey = bot.name.toLowerCase();
    const nameTwin = seenNames.get(nameKey);
    if (nameTwin !== undefined) {
      problems.push(
        `${where}: name: the same as bots[${nameTwin}]'s, so "@${bot.name}" in a team could not tell them apart`,
      );
    } else {
      seenNames.set(nameKey, index);
    }
    if (entryProblems.length === 0) bots.push(bot);
  });

  const wantedDefault = defaults.defaultAccid?.toLowerCase();
  if (wantedDefault !== undefined && bots.length > 0 && !seenAccids.has(wantedDefault)) {
    problems.push(
      `${label}: NIM_BOT_ACCID ${JSON.stringify(wantedDefault)} is not one of the file's bots; add it or unset NIM_BOT_ACCID (the first bot is then the default)`,
    );
  }
  if (problems.length > 0) throw new ConfigurationError(problems);
  return { bots, defaultAccid: wantedDefault ?? bots[0]!.accid };
}

/** One entry with the environment's defaults applied; problems are pushed, undefined when unusable. */
function resolveEntry(entry: Entry, defaults: BotDefaults, problems: string[]): BotDefinition | undefined {
  if (!ACCID.test(entry.accid)) {
    problems.push("accid: must be 1-32 characters of a-z 0-9 _ @ . -");
    return undefined;
  }
  const accid = entry.accid.toLowerCase();
  if (SITE_USER_PREFIXES.some((prefix) => accid.startsWith(prefix))) {
    problems.push(
      `accid: must not start with ${SITE_USER_PREFIXES.join(" or ")}: those are the accids /im/register gives site users`,
    );
  }

  let name = accid;
  if (entry.name !== undefined) {
    name = entry.name.trim();
    if (name === "") problems.push("name: must not be empty (leave it out to use the accid)");
    else if (name.length > BOT_NAME_MAX_LENGTH) problems.push(`name: at most ${BOT_NAME_MAX_LENGTH} characters`);
    else if (CONTROL_CHARACTERS.test(name) || LONE_SURROGATE.test(name)) {
      problems.push("name: must be printable, well-formed text");
    } else if (/[@＠]/.test(name)) problems.push('name: must not contain "@" (users write "@" + the name)');
  }

  let systemPrompt = defaults.generator.systemPrompt;
  if (entry.system_prompt !== undefined) {
    if (entry.system_prompt.trim() === "")
      problems.push("system_prompt: must not be empty (leave it out for BOT_SYSTEM_PROMPT)");
    systemPrompt = entry.system_prompt;
  }

  const kind = generatorKindOf(entry, defaults, problems);
  const openaiBaseUrl = blankToUndefined(entry.openai_base_url) ?? defaults.generator.openaiBaseUrl;
  const openaiApiKey = blankToUndefined(entry.openai_api_key) ?? defaults.generator.openaiApiKey;
  const httpUrl = blankToUndefined(entry.generator_http_url) ?? defaults.generator.httpUrl;
  const openaiModel = blankToUndefined(entry.openai_model) ?? defaults.generator.openaiModel;
  if (entry.openai_base_url !== undefined && !isHttpUrl(entry.openai_base_url)) {
    problems.push("openai_base_url: must be an http(s) URL");
  }
  if (entry.generator_http_url !== undefined && !isHttpUrl(entry.generator_http_url)) {
    problems.push("generator_http_url: must be an http(s) URL");
  }
  if (kind === "openai" && openaiBaseUrl === undefined && openaiApiKey === undefined) {
    problems.push(
      "generator openai: needs openai_base_url or openai_api_key (in the entry, or OPENAI_BASE_URL / OPENAI_API_KEY)",
    );
  }
  if (kind === "http" && httpUrl === undefined) {
    problems.push("generator http: needs generator_http_url (in the entry, or GENERATOR_HTTP_URL)");
  }

  return {
    accid,
    name,
    systemPrompt,
    generator: { kind: kind ?? "demo", openaiBaseUrl, openaiApiKey, openaiModel, httpUrl },
    limits: {
      replyPerMinute: entry.reply_limit_per_minute ?? defaults.limits.replyPerMinute,
      replyPerDay: entry.reply_limit_per_day ?? defaults.limits.replyPerDay,
    },
    ...(entry.daily_token_budget ? { dailyTokenBudget: entry.daily_token_budget } : {}),
    ...(entry.vision !== undefined ? { vision: entry.vision } : {}),
  };
}

/**
 * The entry's `generator`; without one, `openai` when the entry brings its own OpenAI endpoint or
 * key (it plainly means to use it), else the environment's kind.
 */
function generatorKindOf(entry: Entry, defaults: BotDefaults, problems: string[]): GeneratorKind | undefined {
  if (entry.generator !== undefined) {
    const kind = generatorKinds.find((candidate) => candidate === entry.generator);
    if (!kind) problems.push(`generator: must be one of ${generatorKinds.join(", ")}`);
    return kind;
  }
  if (blankToUndefined(entry.openai_base_url) || blankToUndefined(entry.openai_api_key)) return "openai";
  return defaults.generator.kind;
}

/** ` (accid "x")` when the raw entry has a readable accid, for problems that name the entry. */
function describeEntry(raw: unknown): string {
  if (typeof raw !== "object" || raw === null || !("accid" in raw)) return "";
  const accid = (raw as { accid: unknown }).accid;
  if (typeof accid !== "string") return "";
  const shown = accid.length > 40 ? `${accid.slice(0, 40)}…` : accid;
  return ` (accid ${JSON.stringify(shown)})`;
}

function pathText(path: ReadonlyArray<PropertyKey>): string {
  return path
    .map((part) => (typeof part === "number" ? `[${part}]` : String(part)))
    .join(".")
    .replace(/\.\[/g, "[");
}

/** "at position 12 (line 2 column 5)" from Node's message, without the snippet of text it may quote. */
function syntaxErrorPosition(error: unknown): string {
  const message = error instanceof Error ? error.message : "";
  const position = /position (\d+)/.exec(message)?.[1];
  const line = /line (\d+) column (\d+)/.exec(message);
  if (line) return ` (line ${line[1]}, column ${line[2]})`;
  if (position) return ` (at character ${position})`;
  return message.includes("end of JSON") ? " (it ends too early)" : "";
}

function blankToUndefined(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value.trim())) return false;
  const protocol = new URL(value.trim()).protocol;
  return protocol === "http:" || protocol === "https:";
}
