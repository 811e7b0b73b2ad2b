/**
 * The emulator's stand-in for NIM's object storage (NOS), where NIM's client SDK puts a picture or a
 * file before it sends the PICTURE / FILE message that carries the download URL in `attach`.
 *
 *   POST /nos/upload?name=<file name>   raw body, `content-type` as the browser knows it
 *     → 200 {"url","name","size","md5","contentType"}
 *     | 400 / 413 / 415 / 507 {"error":{"code","message"}}
 *   GET  /nos/<id>/<name>               the bytes
 *
 * The demo page uploads from another origin (the bridge's port), so the upload route answers CORS
 * preflights; downloads need none (an <img> and the bridge's fetcher both do a plain GET).
 *
 * Uploads are hostile input: the stored type is what the uploader claimed, so a download is served
 * under its own sandboxing CSP with `nosniff`, inline only for raster images and as an attachment
 * otherwise, so an uploaded HTML or SVG page never runs at the emulator's origin.
 */
import { createHash, randomBytes } from "node:crypto";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

export interface StoredObject {
  id: string;
  name: string;
  contentType: string;
  bytes: Buffer;
  md5: string;
}

export interface EmulatorStorageOptions {
  /** The largest upload, bytes. Default 10 MB. */
  maximumObjectBytes?: number;
  /** All uploads together, bytes: the emulator keeps them in memory. Default 100 MB. */
  maximumTotalBytes?: number;
}

/** The uploaded objects, in memory (the emulator forgets everything when it stops anyway). */
export class EmulatorStorage {
  readonly maximumObjectBytes: number;
  readonly maximumTotalBytes: number;
  /**
   * The base URL download links are built on, as the bridge reaches the emulator (e.g.
   * http://127.0.0.1:53211). Unset: the upload request's own protocol and Host.
   */
  publicUrl: string | undefined;
  private readonly objects = new Map<string, StoredObject>();
  private totalBytes = 0;

  constructor(options: EmulatorStorageOptions = {}) {
    this.maximumObjectBytes = options.maximumObjectBytes ?? 10_000_000;
    this.maximumTotalBytes = options.maximumTotalBytes ?? 100_000_000;
  }

  /** Stores the bytes; undefined when the storage is full. */
  put(input: { name: string; contentType: string; bytes: Buffer }): StoredObject | undefined {
    if (this.totalBytes + input.bytes.length > this.maximumTotalBytes) return undefined;
    const stored: StoredObject = {
      ...input,
      id: randomBytes(16).toString("hex"),
      md5: createHash("md5").update(input.bytes).digest("hex"),
    };
    this.objects.set(stored.id, stored);
    this.totalBytes += input.bytes.length;
    return stored;
  }

  get(id: string): StoredObject | undefined {
    return this.objects.get(id);
  }
}

/** Raster images a browser shows inline; anything else is downloaded as an attachment. */
const INLINE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
/** `type/subtype`, parameters dropped: a loose form of RFC 9110's media type. */
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;
const NAME_MAX_LENGTH = 255;
const UNSAFE_NAME = /[\u0000-\u001f\u007f-\u009f/\\]|[\uD800-\uDFFF]/u;
const OBJECT_ID = /^[0-9a-f]{32}$/;

export interface StorageRoutesOptions {
  storage: EmulatorStorage;
}

/** Registers `/nos/upload` and `/nos/<id>/<name>`; every body in this scope is taken as raw bytes. */
export async function storageRoutes(app: FastifyInstance, options: StorageRoutesOptions): Promise<void> {
  const { storage } = options;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: storage.maximumObjectBytes }, (_request, body, done) =>
    done(null, body),
  );
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const status = error.statusCode ?? 500;
    if (status === 413)
      return fail(reply, 413, "too_large", `uploads are limited to ${storage.maximumObjectBytes} bytes`);
    if (status === 415) return fail(reply, 415, "unsupported_media_type", "a content-type is required");
    if (status >= 400 && status < 500) return fail(reply, status, "bad_request", "the request could not be read");
    return fail(reply, 500, "internal", "the upload failed");
  });

  app.options("/nos/upload", (_request, reply) =>
    allowCrossOrigin(reply)
      .header("access-control-allow-methods", "POST")
      .header("access-control-allow-headers", "content-type")
      .header("access-control-max-age", "600")
      .code(204)
      .send(),
  );

  app.post("/nos/upload", (request, reply) => {
    allowCrossOrigin(reply);
    const name =
      typeof (request.query as { name?: unknown }).name === "string"
        ? (request.query as { name: string }).name.trim()
        : "";
    if (name === "" || name.length > NAME_MAX_LENGTH || UNSAFE_NAME.test(name) || name === "." || name === "..") {
      return fail(reply, 400, "bad_request", `name: 1–${NAME_MAX_LENGTH} printable characters, no slashes`);
    }
    const contentType = (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (!MEDIA_TYPE.test(contentType)) return fail(reply, 415, "unsupported_media_type", "content-type: type/subtype");
    const bytes = request.body;
    if (!Buffer.isBuffer(bytes) || bytes.length === 0) return fail(reply, 400, "bad_request", "the body is empty");
    const stored = storage.put({ name, contentType, bytes });
    if (!stored) return fail(reply, 507, "storage_full", "the emulator's storage is full; restart it");
    const base = storage.publicUrl ?? `${request.protocol}://${request.host}`;
    return reply.send({
      url: `${base}/nos/${stored.id}/${encodeURIComponent(stored.name)}`,
      name: stored.name,
      size: bytes.length,
      md5: stored.md5,
      contentType,
    });
  });

  app.get("/nos/:id/:name", (request: FastifyRequest<{ Params: { id: string; name: string } }>, reply) => {
    const stored = OBJECT_ID.test(request.params.id) ? storage.get(request.params.id) : undefined;
    // The name is part of the URL as NOS has it; a link with another name is a wrong link.
    if (!stored || stored.name !== request.params.name) return fail(reply, 404, "not_found", "no such object");
    const inline = INLINE_TYPES.has(stored.contentType);
    return reply
      .header("content-type", inline ? stored.contentType : "application/octet-stream")
      .header(
        "content-disposition",
        `${inline ? "inline" : "attachment"}; filename*=UTF-8''${encodeURIComponent(stored.name)}`,
      )
      .header("x-content-type-options", "nosniff")
      .header("content-security-policy", "default-src 'none'; sandbox")
      .header("cache-control", "private, max-age=3600")
      .send(stored.bytes);
  });
}

function allowCrossOrigin(reply: FastifyReply): FastifyReply {
  return reply.header("access-control-allow-origin", "*");
}

function fail(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type("application/json; charset=utf-8").send({ error: { code, message } });
}
