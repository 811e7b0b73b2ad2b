/**
 * Pictures for a vision model (BOT_VISION=true): OpenAI Chat Completions content parts.
 *
 * The model gets `[{type:"text", text:<placeholder>}, {type:"image_url", image_url:{url, detail}}]`
 * as the user's turn. `url` is a `data:` URL of bytes the bridge fetched and checked itself, or, with
 * MEDIA_VISION_PASS_URL=true, the NOS URL (after the host checks, without fetching it) for a provider
 * that downloads pictures itself. History keeps only the placeholder: bytes never reach the database.
 *
 * Size: OpenAI scales every picture to fit 2048×2048 anyway and other providers cap a data URL at a
 * few megabytes, so a picture whose longest side exceeds MEDIA_VISION_MAX_SIDE, whose bytes exceed
 * MEDIA_VISION_MAX_BYTES, that is animated, or whose format the API does not take (AVIF, TIFF) is
 * re-encoded with `sharp` (libvips, shipped as a prebuilt registry package, no download step) as a
 * JPEG that fits. Only when even a small JPEG does not fit, or the
 * image cannot be decoded, is it refused and the user gets a note.
 *
 * `sharp` is imported on the first picture, not at start: it and libvips cost about 30 MB of
 * resident memory, which a bridge that never sees a picture should not pay.
 */
import type { ChatCompletionContentPart } from "openai/resources/chat/completions";
import type { Metadata, OutputInfo } from "sharp";

/** Formats sent to the model unchanged when they fit (the set OpenAI's vision input accepts). */
export const VISION_PASS_THROUGH_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"] as const;

/** Everything the fetcher may accept for a picture: the above plus what sharp can turn into JPEG. */
export const VISION_INPUT_TYPES: readonly string[] = [...VISION_PASS_THROUGH_TYPES, "image/avif", "image/tiff"];

export interface VisionSettings {
  /** MEDIA_VISION_PASS_URL: give the model the (checked) URL instead of the bytes. */
  passUrl: boolean;
  /** MEDIA_VISION_MAX_BYTES: largest picture sent as a data URL (decoded bytes). */
  maxImageBytes: number;
  /** MEDIA_VISION_MAX_SIDE: longest side in pixels; larger pictures are scaled down. */
  maxSide: number;
  /** MEDIA_VISION_DETAIL: OpenAI's `detail` (auto, low, high). */
  detail: "auto" | "low" | "high";
  /** Decoding guard against "decompression bombs" (a tiny file that expands to gigapixels). */
  maxInputPixels?: number;
}

/** The text that stands for a picture in history, moderation and next to the image part. */
export const PICTURE_PLACEHOLDER = "[图片 / picture]";

export type PreparedImage =
  | { kind: "image"; mimeType: string; bytes: Buffer; width: number; height: number; reencoded: boolean }
  | { kind: "refused"; reason: "too-large" | "unreadable" };

const DEFAULT_MAX_INPUT_PIXELS = 50_000_000;
const SMALLEST_SIDE = 512;

/**
 * Makes fetched picture bytes fit the model: unchanged when they already do, otherwise one JPEG
 * re-encode at the largest side (halving down to 512 px) that fits `maxImageBytes`.
 *
 * @example
 * const prepared = await prepareImage(fetched.bytes, fetched.mimeType, settings);
 * if (prepared.kind === "image") parts = imageContentParts(imageDataUrl(prepared), settings);
 */
export async function prepareImage(bytes: Buffer, mimeType: string, settings: VisionSettings): Promise<PreparedImage> {
  const limitInputPixels = settings.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  // Outside the try below: a sharp that cannot be loaded is a broken install, not an unreadable picture.
  const { default: sharp } = await import("sharp");
  let metadata: Metadata;
  try {
    metadata = await sharp(bytes, { limitInputPixels, failOn: "error" }).metadata();
  } catch (error) {
    return { kind: "refused", reason: isPixelLimit(error) ? "too-large" : "unreadable" };
  }
  const width = metadata.autoOrient?.width ?? metadata.width ?? 0;
  const height = metadata.autoOrient?.height ?? metadata.height ?? 0;
  if (width === 0 || height === 0) return { kind: "refused", reason: "unreadable" };
  if (width * height > limitInputPixels) return { kind: "refused", reason: "too-large" };

  const passThrough = (VISION_PASS_THROUGH_TYPES as readonly string[]).includes(mimeType);
  const animated = (metadata.pages ?? 1) > 1;
  // A rotated JPEG is passed on as is: providers honour EXIF orientation like browsers do.
  if (
    passThrough &&
    !animated &&
    bytes.length <= settings.maxImageBytes &&
    Math.max(width, height) <= settings.maxSide
  ) {
    return { kind: "image", mimeType, bytes, width, height, reencoded: false };
  }

  for (let side = Math.min(settings.maxSide, Math.max(width, height)); ; side = Math.floor(side / 2)) {
    let output: { data: Buffer; info: OutputInfo };
    try {
      output = await sharp(bytes, { limitInputPixels, failOn: "error" })
        // Bakes EXIF orientation into the pixels, since the re-encode drops the EXIF block.
        .rotate()
        .resize({ width: side, height: side, fit: "inside", withoutEnlargement: true })
        // JPEG has no transparency: put transparent pixels on white, as chat apps display them.
        .flatten({ background: "#ffffff" })
        .jpeg({ quality: 85 })
        .toBuffer({ resolveWithObject: true });
    } catch (error) {
      return { kind: "refused", reason: isPixelLimit(error) ? "too-large" : "unreadable" };
    }
    if (output.data.length <= settings.maxImageBytes) {
      return {
        kind: "image",
        mimeType: "image/jpeg",
        bytes: output.data,
        width: output.info.width,
        height: output.info.height,
        reencoded: true,
      };
    }
    if (side <= SMALLEST_SIDE) return { kind: "refused", reason: "too-large" };
  }
}

/** `data:image/png;base64,…` for prepared bytes. */
export function imageDataUrl(image: { mimeType: string; bytes: Buffer }): string {
  return `data:${image.mimeType};base64,${image.bytes.toString("base64")}`;
}

/**
 * The user turn for the model: the placeholder text (so the model knows a picture was sent even if
 * it ignores images) and the image part.
 */
export function imageContentParts(
  url: string,
  settings: Pick<VisionSettings, "detail">,
  text: string = PICTURE_PLACEHOLDER,
): ChatCompletionContentPart[] {
  return [
    { type: "text", text },
    { type: "image_url", image_url: { url, detail: settings.detail } },
  ];
}

function isPixelLimit(error: unknown): boolean {
  return error instanceof Error && /pixel limit/i.test(error.message);
}
