import { describe, expect, it } from "vitest";
import { mediaKindOf, readMediaAttachment } from "./attachment.ts";

describe("readMediaAttachment", () => {
  it("reads NIM's PICTURE attach given as a JSON string", () => {
    const attach = JSON.stringify({
      md5: "56ce042a7962f0761f4ec73e773c005e",
      h: 4032,
      w: 3024,
      size: 1161084,
      name: "IMG_0001.jpg",
      url: "https://nim-nosdn.netease.im/NDA5MzEwOA==/bmltYV8x",
      ext: "jpg",
    });
    expect(readMediaAttachment("PICTURE", attach)).toEqual({
      kind: "picture",
      url: "https://nim-nosdn.netease.im/NDA5MzEwOA==/bmltYV8x",
      name: "IMG_0001.jpg",
      extension: "jpg",
      size: 1161084,
      width: 3024,
      height: 4032,
      md5: "56ce042a7962f0761f4ec73e773c005e",
    });
  });

  it("reads an object attach with numbers as strings (as NIM's own doc examples show them)", () => {
    const attachment = readMediaAttachment("AUDIO", {
      size: "91680",
      ext: "aac",
      dur: "5230",
      url: "https://nim.nosdn.127.net/voice",
      md5: "abc",
    });
    expect(attachment).toEqual({
      kind: "audio",
      url: "https://nim.nosdn.127.net/voice",
      extension: "aac",
      size: 91680,
      durationMs: 5230,
      md5: "abc",
    });
  });

  it("reads VIDEO and FILE", () => {
    expect(readMediaAttachment("VIDEO", { url: "https://x", ext: "MP4", dur: 5238, w: 360, h: 640 })).toMatchObject({
      kind: "video",
      extension: "mp4",
      durationMs: 5238,
    });
    expect(readMediaAttachment("FILE", '{"ext":".PDF","name":"报告.pdf","size":1024,"url":"https://y"}')).toEqual({
      kind: "file",
      url: "https://y",
      name: "报告.pdf",
      extension: "pdf",
      size: 1024,
    });
  });

  it("reads LOCATION and drops impossible coordinates", () => {
    expect(readMediaAttachment("LOCATION", '{"title":"北京市朝阳区","lng":"116.48","lat":39.99}')).toEqual({
      kind: "location",
      title: "北京市朝阳区",
      latitude: 39.99,
      longitude: 116.48,
    });
    expect(readMediaAttachment("LOCATION", { title: "x", lat: 91, lng: "" })).toEqual({ kind: "location", title: "x" });
  });

  it("cleans hostile names and ignores nonsense values", () => {
    const attachment = readMediaAttachment("FILE", {
      name: `evil\u202Efdp.exe\n\u0000${"a".repeat(500)}`,
      ext: "p d f",
      size: -5,
      w: "wide",
      url: 42,
    });
    expect(attachment?.name).not.toMatch(/[\u0000-\u001f\u202e]/);
    expect([...(attachment?.name ?? "")].length).toBe(200);
    expect(attachment?.extension).toBeUndefined();
    expect(attachment?.size).toBeUndefined();
    expect(attachment?.width).toBeUndefined();
    expect(attachment?.url).toBeUndefined();
  });

  it("keeps a URL exactly or drops it", () => {
    expect(readMediaAttachment("PICTURE", { url: "https://nim.nosdn.127.net/a b" })?.url).toBeUndefined();
    expect(readMediaAttachment("PICTURE", { url: "https://nim.nosdn.127.net/a\n@evil" })?.url).toBeUndefined();
    expect(
      readMediaAttachment("PICTURE", { url: `https://nim.nosdn.127.net/${"a".repeat(5000)}` })?.url,
    ).toBeUndefined();
    expect(readMediaAttachment("PICTURE", { url: "https://nim.nosdn.127.net/a?x=1" })?.url).toBe(
      "https://nim.nosdn.127.net/a?x=1",
    );
  });

  it("still gives the kind when attach is unreadable, so the user gets that kind's note", () => {
    expect(readMediaAttachment("PICTURE", "{not json")).toEqual({ kind: "picture" });
    expect(readMediaAttachment("AUDIO", null)).toEqual({ kind: "audio" });
    expect(readMediaAttachment("VIDEO", "[1,2]")).toEqual({ kind: "video" });
  });

  it("is undefined for message types that are not media", () => {
    expect(readMediaAttachment("TEXT", "{}")).toBeUndefined();
    expect(readMediaAttachment("CUSTOM", "{}")).toBeUndefined();
    expect(mediaKindOf("picture")).toBe("picture");
    expect(mediaKindOf("TIPS")).toBeUndefined();
  });
});
