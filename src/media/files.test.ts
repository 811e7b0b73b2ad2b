import { describe, expect, it } from "vitest";
import { buildTextPdf } from "../testing/text-pdf.ts";
import { decodeTextFile, extensionOf, extractPdfText, fileExcerpt, locationText, readableFileKind } from "./files.ts";

describe("readableFileKind", () => {
  it.each([
    [{ extension: "pdf" }, "pdf"],
    [{ extension: "md" }, "text"],
    [{ extension: "csv" }, "text"],
    [{ extension: "json" }, "text"],
    [{ name: "说明.TXT" }, "text"],
    [{ name: "data.tsv" }, "text"],
    [{ extension: "docx" }, undefined],
    [{ extension: "exe", name: "fake.pdf" }, undefined], // the declared ext wins over the name
    [{ name: "no-extension" }, undefined],
    [{}, undefined],
  ])("%j is %s", (attachment, kind) => {
    expect(readableFileKind(attachment)).toBe(kind);
  });

  it("reads extensions from names", () => {
    expect(extensionOf("archive.tar.GZ")).toBe("gz");
    expect(extensionOf(".hidden")).toBe("hidden");
    expect(extensionOf("a.")).toBeUndefined();
  });
});

describe("decodeTextFile", () => {
  it("decodes UTF-8 with or without a BOM and normalises line ends", () => {
    expect(decodeTextFile(Buffer.from("\ufeff名字,分数\r\n张三,90\r\n", "utf8"))).toBe("名字,分数\n张三,90\n");
  });

  it("falls back to GB18030 for Chinese Windows text", () => {
    // "你好" in GBK / GB18030.
    expect(decodeTextFile(Buffer.from([0xc4, 0xe3, 0xba, 0xc3, 0x0a]))).toBe("你好\n");
  });

  it("refuses binary that is not text", () => {
    expect(decodeTextFile(Buffer.from([0x01, 0x02, 0x03, 0x41]))).toBeUndefined();
    expect(decodeTextFile(Buffer.from([0xff, 0xfe, 0xfd, 0x80, 0x81]))).toBeUndefined();
  });
});

describe("extractPdfText", () => {
  it("reads the text of every page", async () => {
    const pdf = buildTextPdf(["Quarterly report\nRevenue grew 12%", "Second page (appendix)"]);
    const extracted = await extractPdfText(pdf, { maxPages: 10, maxCharacters: 10_000, timeoutMs: 60_000 });
    expect(extracted?.pages).toBe(2);
    expect(extracted?.text).toContain("Quarterly report");
    expect(extracted?.text).toContain("Revenue grew 12%");
    expect(extracted?.text).toContain("Second page (appendix)");
  });

  it("stops at the page limit", async () => {
    const pdf = buildTextPdf(["one", "two", "three", "four"]);
    const extracted = await extractPdfText(pdf, { maxPages: 2, maxCharacters: 10_000, timeoutMs: 60_000 });
    expect(extracted?.pages).toBe(4);
    expect(extracted?.text).toContain("two");
    expect(extracted?.text).not.toContain("three");
  });

  it("stops reading pages once it has enough characters", async () => {
    const pdf = buildTextPdf(["a".repeat(50), "b".repeat(50), "c".repeat(50)]);
    const extracted = await extractPdfText(pdf, { maxPages: 10, maxCharacters: 60, timeoutMs: 60_000 });
    expect(extracted?.text).toContain("b");
    expect(extracted?.text).not.toContain("c");
  });

  it("gives up when reading takes longer than the deadline", async () => {
    const pdf = buildTextPdf(["fine, but the deadline is shorter than starting a thread"]);
    expect(await extractPdfText(pdf, { maxPages: 5, maxCharacters: 100, timeoutMs: 1 })).toBeUndefined();
  });

  it("gives up on broken, empty and encrypted PDFs", async () => {
    expect(
      await extractPdfText(Buffer.from("%PDF-1.4\nnot really a pdf"), {
        maxPages: 5,
        maxCharacters: 100,
        timeoutMs: 60_000,
      }),
    ).toBe(undefined);
    expect(
      await extractPdfText(buildTextPdf([""]), { maxPages: 5, maxCharacters: 100, timeoutMs: 60_000 }),
    ).toBeUndefined();
    const encrypted = buildTextPdf(["secret"], { encryptedMarker: true });
    expect(await extractPdfText(encrypted, { maxPages: 5, maxCharacters: 100, timeoutMs: 60_000 })).toBeUndefined();
  });
});

describe("fileExcerpt", () => {
  it("names the file and marks the end", () => {
    expect(fileExcerpt("notes.md", { text: "# Title\nbody" }, 100)).toBe(
      "[文件 / file: notes.md]\n# Title\nbody\n[文件结束 / end of file]",
    );
  });

  it("cuts long text at whole characters and says so", () => {
    const excerpt = fileExcerpt("报告.pdf", { text: "汉".repeat(20), pages: 3 }, 5);
    expect(excerpt).toBe(
      "[文件 / file: 报告.pdf, 3 pages]\n汉汉汉汉汉\n[文件结束，已截断 / end of file, cut at 5 characters]",
    );
  });
});

describe("locationText", () => {
  it("gives the title and the coordinates", () => {
    expect(locationText({ title: "北京市朝阳区望京", latitude: 39.99, longitude: 116.48 })).toBe(
      "[位置 / location] 北京市朝阳区望京 (latitude 39.99, longitude 116.48)",
    );
    expect(locationText({ latitude: 1, longitude: 2 })).toBe("[位置 / location] (latitude 1, longitude 2)");
    expect(locationText({ title: "somewhere" })).toBe("[位置 / location] somewhere");
  });
});
