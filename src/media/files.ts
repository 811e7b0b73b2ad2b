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
import { createRequire } from "node:module";
import type { MediaAttachment } from "./attachment.ts";

export interface FileSettings {
  /** FILE_MAX_BYTES: largest file fetched and read. */
  maxBytes: number;
  /** FILE_EXCERPT_CHARACTERS: longest excerpt given to the model. */
  excerptCharacters: number;
  /** FILE_PDF_MAX_PAGES: pages of a PDF read at most. */
  pdfMaxPages: number;
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

const require = createRequire(import.meta.url);
// pdf.js reads its CMaps (needed for CJK fonts without a ToUnicode map) and standard fonts from disk.
const PDFJS_DIRECTORY = require.resolve("pdfjs-dist/package.json").replace(/package\.json$/, "");

/**
 * Text of a PDF, pages joined by blank lines, reading no more pages than needed for `maxCharacters`
 * and at most `maxPages`. Undefined for an encrypted, broken or text-less (scanned) PDF.
 */
export async function extractPdfText(
  bytes: Buffer,
  limits: { maxPages: number; maxCharacters: number },
): Promise<ExtractedText | undefined> {
  const pdfjs = await import("pdfjs-dist/legacy/build/pdf.mjs");
  const task = pdfjs.getDocument({
    data: new Uint8Array(bytes),
    cMapUrl: `${PDFJS_DIRECTORY}cmaps/`,
    cMapPacked: true,
    standardFontDataUrl: `${PDFJS_DIRECTORY}standard_fonts/`,
    // Never evaluate code from the document, never fetch anything, never touch the system's fonts.
    isEvalSupported: false,
    disableFontFace: true,
    useSystemFonts: false,
    disableAutoFetch: true,
    verbosity: 0,
  });
  try {
    const document = await task.promise;
    const pageTexts: string[] = [];
    let length = 0;
    for (let number = 1; number <= Math.min(document.numPages, limits.maxPages); number += 1) {
      const page = await document.getPage(number);
      const content = await page.getTextContent();
      let pageText = "";
      for (const item of content.items) {
        if ("str" in item) pageText += item.str + (item.hasEOL ? "\n" : "");
      }
      page.cleanup();
      pageText = pageText.replace(/[ \t]+\n/g, "\n").trim();
      if (pageText !== "") pageTexts.push(pageText);
      length += pageText.length;
      if (length > limits.maxCharacters) break;
    }
    const text = pageTexts.join("\n\n");
    if (text.trim() === "") return undefined;
    return { text, pages: document.numPages };
  } catch {
    // Encrypted (PasswordException), malformed (InvalidPDFException) or unsupported: unreadable.
    return undefined;
  } finally {
    await task.destroy();
  }
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
