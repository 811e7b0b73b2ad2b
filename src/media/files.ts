/**
 * Files and locations as text for the model.
 *
 * Readable files: plain text (`txt`, `text`, `log`), Markdown (`md`, `markdown`), CSV/TSV, JSON and
 * PDF, up to FILE_MAX_BYTES. Text files are decoded as UTF-8, or as GB18030 when they are not
 * valid UTF-8 (Excel and Notepad on Chinese Windows still save CSV that way). PDFs are read with
 * Mozilla's pdf.js (`pdfjs-dist`, legacy build for Node 20), page by page, at most FILE_PDF_MAX_PAGES
 * pages; a scanned PDF has no text layer and gets the "unreadable" note (no OCR here).
 *
 * The model receives a bounded excerpt (FILE_EXCERPT_CHARACTERS) between markers that name the file,
 * so it knows where the file starts and ends and whether it was cut:
 *
 *     [文件 / file: report.pdf, 12 pages]
 *     …text…
 *     [文件结束，已截断 / end of file, cut at 6000 characters]
 *
 * The excerpt is what the user said in this turn: it goes to moderation and history like any text.
 */
import { Worker } from "node:worker_threads";
import type { MediaAttachment } from "./attachment.ts";

export interface FileSettings {
  /** FILE_MAX_BYTES: largest file fetched and read. */
  maxBytes: number;
  /** FILE_EXCERPT_CHARACTERS: longest excerpt given to the model. */
  excerptCharacters: number;
  /** FILE_PDF_MAX_PAGES: pages of a PDF read at most. */
  pdfMaxPages: number;
  /** FILE_PARSE_TIMEOUT_MS: a PDF still being read after this is given up (its thread stopped). */
  parseTimeoutMs: number;
}

export type ReadableFileKind = "text" | "pdf";

const TEXT_EXTENSIONS = new Set(["txt", "text", "log", "md", "markdown", "csv", "tsv", "json"]);

/** MIME types the fetcher accepts for a file of this kind (text has no signature; see ./fetch.ts). */
export function fileTypeRule(kind: ReadableFileKind): { mimeTypes: string[]; text?: boolean } {
  return kind === "pdf" ? { mimeTypes: ["application/pdf"] } : { mimeTypes: [], text: true };
}

/**
 * Which reader a file needs, from its extension (the attachment's `ext`, else its name's), or
 * undefined for a type the bot does not read. The bytes are checked against it when fetched.
 */
export function readableFileKind(
  attachment: Pick<MediaAttachment, "extension" | "name">,
): ReadableFileKind | undefined {
  const extension = attachment.extension ?? extensionOf(attachment.name);
  if (extension === undefined) return undefined;
  if (extension === "pdf") return "pdf";
  return TEXT_EXTENSIONS.has(extension) ? "text" : undefined;
}

/** The extension of a file name, lower case, without the dot. */
export function extensionOf(name: string | undefined): string | undefined {
  const match = name === undefined ? null : /\.([A-Za-z0-9]{1,10})$/.exec(name);
  return match?.[1]?.toLowerCase();
}

export interface ExtractedText {
  text: string;
  /** PDF only: pages in the document. */
  pages?: number;
}

/**
 * Text of a text file: BOM removed, UTF-8 or else GB18030. Undefined when it is neither (or holds
 * control characters a text file would not), so the user gets the "unreadable" note.
 */
export function decodeTextFile(bytes: Buffer): string | undefined {
  let body = bytes;
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) body = body.subarray(3);
  for (const encoding of ["utf-8", "gb18030"]) {
    try {
      const text = new TextDecoder(encoding, { fatal: true }).decode(body);
      // Binary that happens to decode still has C0 controls other than tab, newline, return, form feed.
      if (/[\u0000-\u0008\u000b\u000e-\u001f]/.test(text)) return undefined;
      return text.replace(/\r\n?/g, "\n");
    } catch {
      // Not this encoding: try the next one.
    }
  }
  return undefined;
}

export interface PdfLimits {
  maxPages: number;
  maxCharacters: number;
  /** FILE_PARSE_TIMEOUT_MS: the reading thread is stopped after this (default 20 s). */
  timeoutMs?: number;
  /** Heap of the reading thread, in megabytes. */
  maxHeapMegabytes?: number;
}

/**
 * Text of a PDF, read in a worker thread so that a hostile or merely huge document cannot block the
 * reply worker's event loop or exhaust its heap: the thread has its own heap limit and is stopped at
 * the deadline. Undefined for an encrypted, broken, text-less (scanned) or too slow PDF.
 */
export async function extractPdfText(bytes: Buffer, limits: PdfLimits): Promise<ExtractedText | undefined> {
  const worker = new Worker(new URL("./pdf-worker.mjs", import.meta.url), {
    workerData: { bytes: new Uint8Array(bytes), maxPages: limits.maxPages, maxCharacters: limits.maxCharacters },
    resourceLimits: { maxOldGenerationSizeMb: limits.maxHeapMegabytes ?? 256 },
    stdout: true,
    stderr: true,
  });
  // pdf.js warns about odd documents on the console; the thread's output is not ours to print.
  worker.stdout.resume();
  worker.stderr.resume();
  return new Promise<ExtractedText | undefined>((resolve) => {
    const finish = (result: ExtractedText | undefined) => {
      clearTimeout(timer);
      void worker.terminate();
      resolve(result);
    };
    const timer = setTimeout(() => finish(undefined), limits.timeoutMs ?? 20_000);
    worker.once("message", (result: ExtractedText | null) => finish(result ?? undefined));
    worker.once("error", () => finish(undefined));
    worker.once("exit", () => finish(undefined));
  });
}

/**
 * The excerpt the model receives for a file: header with name (and pages), at most
 * `excerptCharacters` characters of text, and an end marker saying whether it was cut.
 */
export function fileExcerpt(name: string, extracted: ExtractedText, excerptCharacters: number): string {
  const characters = [...extracted.text.trim()];
  const cut = characters.length > excerptCharacters;
  const body = cut ? characters.slice(0, excerptCharacters).join("") : characters.join("");
  const pages = extracted.pages === undefined ? "" : `, ${extracted.pages} ${extracted.pages === 1 ? "page" : "pages"}`;
  const end = cut
    ? `[文件结束，已截断 / end of file, cut at ${excerptCharacters} characters]`
    : "[文件结束 / end of file]";
  return `[文件 / file: ${name}${pages}]\n${body}\n${end}`;
}

/**
 * A LOCATION as text: `[位置 / location] 北京市朝阳区… (latitude 39.99, longitude 116.48)`.
 * Coordinates are given as numbers NIM sent; a missing part is left out.
 */
export function locationText(attachment: Pick<MediaAttachment, "title" | "latitude" | "longitude">): string {
  const parts = ["[位置 / location]"];
  if (attachment.title !== undefined) parts.push(attachment.title);
  if (attachment.latitude !== undefined && attachment.longitude !== undefined) {
    parts.push(`(latitude ${attachment.latitude}, longitude ${attachment.longitude})`);
  }
  return parts.join(" ");
}
