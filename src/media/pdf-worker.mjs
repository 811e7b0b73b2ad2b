/**
 * Worker-thread body of `extractPdfText` (./files.ts). Plain JavaScript on purpose: a worker thread
 * on Node 20 does not inherit the tsx loader, and this file must start the same way under tsx, under
 * vitest and in any other runner. It reads the PDF in `workerData` with pdf.js and posts back
 * `{ text, pages }`, or null for an encrypted, broken or text-less document.
 */
import { createRequire } from "node:module";
import { parentPort, workerData } from "node:worker_threads";
import { getDocument } from "pdfjs-dist/legacy/build/pdf.mjs";

const require = createRequire(import.meta.url);
// pdf.js reads its CMaps (needed for CJK fonts without a ToUnicode map) and standard fonts from disk.
const pdfjsDirectory = require.resolve("pdfjs-dist/package.json").replace(/package\.json$/, "");

/** @type {{ bytes: Uint8Array, maxPages: number, maxCharacters: number }} */
const { bytes, maxPages, maxCharacters } = workerData;

async function extract() {
  const task = getDocument({
    data: bytes,
    cMapUrl: `${pdfjsDirectory}cmaps/`,
    cMapPacked: true,
    standardFontDataUrl: `${pdfjsDirectory}standard_fonts/`,
    // Never evaluate code from the document, never fetch anything, never touch the system's fonts.
    isEvalSupported: false,
    disableFontFace: true,
    useSystemFonts: false,
    disableAutoFetch: true,
    verbosity: 0,
  });
  try {
    const document = await task.promise;
    const pageTexts = [];
    let length = 0;
    // No more pages than needed for the excerpt, and at most maxPages.
    for (let number = 1; number <= Math.min(document.numPages, maxPages); number += 1) {
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
      if (length > maxCharacters) break;
    }
    const text = pageTexts.join("\n\n");
    return text.trim() === "" ? null : { text, pages: document.numPages };
  } catch {
    // Encrypted (PasswordException), malformed (InvalidPDFException) or unsupported: unreadable.
    return null;
  } finally {
    await task.destroy();
  }
}

parentPort?.postMessage(await extract());
