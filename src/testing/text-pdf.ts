/**
 * Writes small, valid PDF files for tests: one page per string, each line drawn with the standard
 * Helvetica font (so only Latin-1 text), a correct cross-reference table and trailer. Real enough for
 * pdf.js to open and extract, small enough to build in a test instead of shipping binaries.
 *
 * @example
 * const pdf = buildTextPdf(["Page one\nsecond line", "Page two"]);
 */
export function buildTextPdf(pages: readonly string[], options: { encryptedMarker?: boolean } = {}): Buffer {
  const objects: string[] = [];
  const pageCount = pages.length;
  // 1 catalog, 2 page tree, 3 font, then a page and its content stream per page.
  objects.push("<< /Type /Catalog /Pages 2 0 R >>");
  const kids = pages.map((_page, index) => `${4 + index * 2} 0 R`).join(" ");
  objects.push(`<< /Type /Pages /Kids [${kids}] /Count ${pageCount} >>`);
  objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
  for (const [index, text] of pages.entries()) {
    const contentNumber = 5 + index * 2;
    objects.push(
      `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents ${contentNumber} 0 R >>`,
    );
    const lines = text.split("\n").map((line, lineIndex) => {
      const escaped = line.replace(/[\\()]/g, (character) => `\\${character}`);
      return `BT /F1 12 Tf 72 ${720 - lineIndex * 16} Td (${escaped}) Tj ET`;
    });
    const stream = lines.join("\n");
    objects.push(`<< /Length ${Buffer.byteLength(stream, "latin1")} >>\nstream\n${stream}\nendstream`);
  }

  let output = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n";
  const offsets: number[] = [];
  for (const [index, body] of objects.entries()) {
    offsets.push(Buffer.byteLength(output, "latin1"));
    output += `${index + 1} 0 obj\n${body}\nendobj\n`;
  }
  const xrefOffset = Buffer.byteLength(output, "latin1");
  output += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) output += `${String(offset).padStart(10, "0")} 00000 n \n`;
  const encrypt = options.encryptedMarker ? " /Encrypt << /Filter /Standard /V 1 /R 2 /O <00> /U <00> /P -4 >>" : "";
  output += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R${encrypt} >>\nstartxref\n${xrefOffset}\n%%EOF\n`;
  return Buffer.from(output, "latin1");
}
