import { fileTypeFromBuffer } from "file-type";
import { describe, expect, it } from "vitest";
import { buildAdtsStream } from "../testing/adts.ts";
import { AudioConversionError, remuxAacToM4a } from "./convert.ts";

describe("remuxAacToM4a", () => {
  it("puts NIM's ADTS AAC into an MP4 container without touching the audio", async () => {
    const payload = Buffer.from([0x00, 0xc8, 0x00, 0x80, 0x23, 0x80]);
    const aac = buildAdtsStream({ frames: 40, payload });
    expect(await fileTypeFromBuffer(aac)).toEqual({ ext: "aac", mime: "audio/aac" });
    const m4a = await remuxAacToM4a({ bytes: aac, extension: "aac", mimeType: "audio/aac" });
    expect(m4a.extension).toBe("m4a");
    expect(m4a.mimeType).toBe("audio/mp4");
    expect((await fileTypeFromBuffer(m4a.bytes))?.ext).toBe("mp4");
    // The 40 frames' payloads are carried over byte for byte (remuxed, not re-encoded).
    expect(m4a.bytes.includes(Buffer.concat(Array.from({ length: 40 }, () => payload)))).toBe(true);
  });

  it("leaves other audio as it is", async () => {
    const mp3 = { bytes: Buffer.from("ID3"), extension: "mp3", mimeType: "audio/mpeg" };
    expect(await remuxAacToM4a(mp3)).toBe(mp3);
  });

  it("reports bytes it cannot remux", async () => {
    await expect(
      remuxAacToM4a({ bytes: Buffer.from([0xff, 0xf1, 0, 0, 0, 0, 0]), extension: "aac", mimeType: "audio/aac" }),
    ).rejects.toBeInstanceOf(AudioConversionError);
  });
});
