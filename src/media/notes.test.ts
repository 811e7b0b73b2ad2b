import { describe, expect, it } from "vitest";
import type { MediaKind } from "./attachment.ts";
import { capabilitiesLine, formatBytes, type MediaNoteReason, mediaNote } from "./notes.ts";

const NONE = { vision: false, transcription: false };
const ALL = { vision: true, transcription: true };

const REASONS: MediaNoteReason[] = [
  "unsupported",
  "unsupported-file-type",
  "too-large",
  "refused",
  "wrong-type",
  "unavailable",
  "unreadable",
  "no-speech",
  "transcription-failed",
];
const KINDS: MediaKind[] = ["picture", "audio", "video", "file", "location"];

describe("mediaNote", () => {
  it("gives every kind and reason a Chinese line and an English line", () => {
    for (const kind of KINDS) {
      for (const reason of REASONS) {
        const note = mediaNote(kind, reason, NONE, { limitBytes: 5_000_000, extension: "docx" });
        const [chinese, english, ...rest] = note.split("\n");
        expect(rest, `${kind}/${reason}`).toEqual([]);
        expect(chinese, `${kind}/${reason}`).toMatch(/[\u4e00-\u9fff]/);
        expect(english, `${kind}/${reason}`).toMatch(/^[\x20-\x7e]+$/);
        expect(note.length, `${kind}/${reason}`).toBeLessThan(300);
      }
    }
  });

  it("says what the bot can read, following its settings", () => {
    expect(mediaNote("video", "unsupported", NONE)).toBe(
      "抱歉，我还看不了视频。我能读：文字、位置、txt/md/csv/json/pdf 文件。\n" +
        "Sorry, I can't watch videos yet. I can read: text, locations, txt/md/csv/json/pdf files.",
    );
    expect(mediaNote("video", "unsupported", ALL)).toContain("文字、图片、语音");
    expect(mediaNote("video", "unsupported", ALL)).toContain("text, pictures, voice messages");
  });

  it("names the limit and the file type where it has them", () => {
    const tooLarge = mediaNote("file", "too-large", NONE, { limitBytes: 5_000_000 });
    expect(tooLarge).toContain("上限 5 MB");
    expect(tooLarge).toContain("limit 5 MB");
    expect(mediaNote("file", "unsupported-file-type", NONE, { extension: "docx" })).toContain("can't read .docx files");
    expect(mediaNote("file", "unsupported-file-type", NONE)).toContain("can't read this kind of files");
  });

  it("gives different notes for different situations", () => {
    const notes = new Set(REASONS.map((reason) => mediaNote("picture", reason, NONE)));
    expect(notes.size).toBe(REASONS.length);
  });
});

describe("capabilitiesLine", () => {
  it("lists pictures and voice only when switched on", () => {
    expect(capabilitiesLine({ vision: true, transcription: false }).en).toBe(
      "I can read: text, pictures, locations, txt/md/csv/json/pdf files.",
    );
  });
});

describe("formatBytes", () => {
  it.each([
    [300, "300 B"],
    [1_500, "1.5 KB"],
    [20_000_000, "20 MB"],
    [4_250_000, "4.3 MB"],
  ])("formats %d as %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
