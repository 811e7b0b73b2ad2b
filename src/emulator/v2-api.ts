/**
 * The emulator's v2 server API ("新版服务端 API", nim-protocol §5): for now only the server-side
 * stream message, `POST /im/v2/conversations/{conversation_id}/messages/actions/stream_message`.
 *
 * Same authentication as the classic API (AppKey, Nonce, CurTime in seconds, CheckSum), JSON bodies,
 * and the v2 envelope `{"code":200,"msg":"success","data":{…}}` (note `msg`, not `desc`), always
 * with HTTP 200 like the classic API. Queued and random faults apply with the path
 * {@link streamMessagePath}.
 *
 * Stream rules (nim-protocol §5.1, NIM's doc [S21]):
 * - the first chunk has `index` 0 and no `message_server_id`; the answer carries the new
 *   `message_server_id`; later chunks send it back with `index` 1, 2, … in order;
 * - at most `streamChunkTimeoutMs` (NIM: 30 s) between chunks, else the stream is terminated;
 * - all chunks together at most `streamTextLimit` (NIM: 5000) characters, else terminated at once;
 * - after `finish: 1` or termination every further chunk is rejected;
 * - on finish *or* termination NIM merges the chunks into one complete message: recorded here as a
 *   stored text message whose msgid is the `message_server_id` (delivered like any other message).
 *
 * UNCONFIRMED at NIM, chosen here: v2 error codes. Every refusal is code 414 with a distinct `msg`
 * (the v2 domain may use 6-digit codes; no source shows them, and the official SDK only checks
 * `code != 200`). An out-of-order chunk is refused without terminating the stream; a first chunk
 * already over the text limit is refused without creating one; a repeated first chunk (same
 * message_client_id) starts a second stream. Only P2P conversations (`a|1|b`). Non-final chunks
 * reach the receiver's gateway sessions as `stream` frames only (online-only, never queued).
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { abandon, answerTransportFault, authenticate, ClassicApiError, serialize } from "./classic-api.ts";
import { defaultDescription, type FaultAction, selectFaults, takeQueuedFault } from "./faults.ts";
import type { GatewayHub, GatewayStreamChunk } from "./gateway.ts";
import { pause } from "./pause.ts";
import type {
  EmulatorMessageOption,
  EmulatorRequestRecord,
  EmulatorStream,
  NimEmulatorState,
  StreamTerminationReason,
} from "./state.ts";

/** The path faults and request records use for the stream endpoint. */
export const streamMessagePath = "im/v2/conversations/{conversation_id}/messages/actions/stream_message";

/** The code of every v2 refusal (unconfirmed at NIM; see the module comment). */
const refusalCode = 414;
/** conversation_type 1 = P2P in the v2 API. */
const personConversationType = 1;

export interface V2ApiOptions {
  state: NimEmulatorState;
  hub: GatewayHub;
  closing: AbortSignal;
}

/** A JSON body kept with its raw text: a 64-bit message_server_id must be read from the digits. */
interface JsonBody {
  text: string;
  value: unknown;
}

type V2Envelope = { code: number; msg: string; data?: Record<string, unknown> };

/** A v2 refusal: answered with HTTP 200 and `{"code":…,"msg":…}`. */
class V2ApiError extends Error {
  constructor(
    readonly code: number,
    readonly description: string,
  ) {
    super(`${code} ${description}`);
  }
}

export async function v2Api(app: FastifyInstance, options: V2ApiOptions): Promise<void> {
  const { state, hub, closing } = options;

  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    try {
      done(null, { text: body as string, value: JSON.parse(body as string) } satisfies JsonBody);
    } catch {
      done(Object.assign(new Error("body is not valid JSON"), { statusCode: 400 }), undefined);
    }
  });
  app.setErrorHandler((error: { statusCode?: number; message?: string }, _request, reply) => {
    const isRequestError = typeof error.statusCode === "number" && error.statusCode < 500;
    const envelope = isRequestError
      ? { code: refusalCode, msg: error.message ?? "parameter error" }
      : { code: 500, msg: "server error" };
    void reply.code(200).type("application/json;charset=utf-8").send(serialize(envelope));
  });
  // Stream timers must not keep a closed emulator's process alive or fire into a closed app.
  app.addHook("onClose", async () => {
    for (const stream of state.streams.values()) clearTimeout(stream.timer);
  });

  app.post<{ Params: { conversationId: string } }>(
    "/conversations/:conversationId/messages/actions/stream_message",
    async (request, reply) => {
      const record: EmulatorRequestRecord = { path: streamMessagePath, receivedAt: state.now() };
      state.requests.push(record);
      if (state.settings.latencyMs > 0) await pause(state.settings.latencyMs, closing);

      const { before, randomAfter } = selectFaults(state, streamMessagePath);
      if (before) {
        record.fault = `${before.kind} before`;
        if (before.kind !== "delay") return applyFault(before, request, reply, record);
        await pause(before.ms, closing);
        if (connectionGone(request)) return abandon(request, reply);
      }

      let envelope: V2Envelope;
      try {
        authenticate(request, state);
        if (!state.frequencyControl.tryTake(streamMessagePath)) throw new V2ApiError(416, "frequency control");
        envelope = acceptChunk(request.params.conversationId, request.body as JsonBody | undefined);
      } catch (error) {
        if (error instanceof ClassicApiError) envelope = { code: error.code, msg: error.desc };
        else if (error instanceof V2ApiError) envelope = { code: error.code, msg: error.description };
        else throw error;
      }

      const after = takeQueuedFault(state, streamMessagePath, "after") ?? randomAfter;
      if (after) {
        record.fault = `${after.kind} after`;
        if (after.kind !== "delay") return applyFault(after, request, reply, record);
        await pause(after.ms, closing);
        if (connectionGone(request)) return abandon(request, reply);
      }
      return answer(reply, record, envelope);
    },
  );

  function connectionGone(request: FastifyRequest): boolean {
    return closing.aborted || request.raw.socket.destroyed;
  }

  /** Validates one chunk and applies it to its stream; throws V2ApiError for every refusal. */
  function acceptChunk(conversationId: string, body: JsonBody | undefined): V2Envelope {
    const { from, to } = parseConversationId(conversationId, state);
    const payload = body?.value;
    if (!isRecord(payload) || !isRecord(payload.message)) throw new V2ApiError(refusalCode, "message is required");
    const message = payload.message;
    const messageType = message.message_type ?? 0;
    if (messageType !== 0) throw new V2ApiError(refusalCode, "message_type of a stream message must be 0 (text)");
    const attachment = message.attachment;
    if (!isRecord(attachment)) throw new V2ApiError(refusalCode, "message.attachment is required");
    const { text, index } = attachment;
    const finish = attachment.finish ?? 0;
    if (typeof text !== "string") throw new V2ApiError(refusalCode, "attachment.text is required");
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0) {
      throw new V2ApiError(refusalCode, "attachment.index must be an integer from 0");
    }
    if (finish !== 0 && finish !== 1) throw new V2ApiError(refusalCode, "attachment.finish must be 0 or 1");
    const clientId = message.message_client_id;
    if (clientId !== undefined && clientId !== null && typeof clientId !== "string") {
      throw new V2ApiError(refusalCode, "message_client_id must be a string");
    }
    const messageServerId = readMessageServerId(message.message_server_id, body?.text ?? "");
    const now = state.now();

    let stream: EmulatorStream;
    if (messageServerId === undefined) {
      if (index !== 0) throw new V2ApiError(refusalCode, "message_server_id is required after the first chunk");
      if (text.length > state.settings.streamTextLimit) throw new V2ApiError(refusalCode, "stream message too long");
      stream = {
        messageServerId: state.allocateMessageId(),
        messageClientId: typeof clientId === "string" && clientId !== "" ? clientId : randomUUID(),
        conversationId,
        from,
        to,
        text: "",
        nextIndex: 0,
        status: "streaming",
        createdAt: now,
        lastChunkAt: now,
        chunks: [],
        option: mergedMessageOption(payload),
      };
      state.streams.set(stream.messageServerId, stream);
    } else {
      const existing = state.streams.get(messageServerId);
      if (!existing) throw new V2ApiError(refusalCode, "stream message not found");
      stream = existing;
      if (stream.from !== from || stream.to !== to) {
        throw new V2ApiError(refusalCode, "message_server_id belongs to another conversation");
      }
      // Checked here as well as by the timer, so a test with an injected clock sees the same rule.
      if (stream.status === "streaming" && now - stream.lastChunkAt > state.settings.streamChunkTimeoutMs) {
        end(stream, "terminated", "timeout");
      }
      if (stream.status !== "streaming") {
        const how = stream.status === "complete" ? "finished" : `terminated (${stream.terminationReason})`;
        throw new V2ApiError(refusalCode, `stream message already ${how}`);
      }
      if (index !== stream.nextIndex) {
        throw new V2ApiError(refusalCode, `chunk index out of order: expected ${stream.nextIndex}, got ${index}`);
      }
      if (stream.text.length + text.length > state.settings.streamTextLimit) {
        end(stream, "terminated", "too-long");
        throw new V2ApiError(refusalCode, "stream message too long: terminated");
      }
    }

    stream.text += text;
    stream.chunks.push({ index, text, finish, receivedAt: now });
    stream.nextIndex = index + 1;
    stream.lastChunkAt = now;
    if (finish === 1) {
      end(stream, "complete");
    } else {
      scheduleTimeout(stream);
      hub.sendTo(stream.to, { type: "stream", message: chunkView(stream, text, index) });
      state.recordStreamChange(stream);
    }
    return {
      code: 200,
      msg: "success",
      data: {
        message_server_id: BigInt(stream.messageServerId),
        message_client_id: stream.messageClientId,
        sender_id: stream.from,
        conversation_type: personConversationType,
        receiver_id: stream.to,
        create_time: stream.createdAt,
        message_type: 0,
        attachment: { text, index, finish },
      },
    };
  }

  function scheduleTimeout(stream: EmulatorStream): void {
    clearTimeout(stream.timer);
    stream.timer = setTimeout(() => {
      if (stream.status === "streaming" && state.streams.get(stream.messageServerId) === stream) {
        end(stream, "terminated", "timeout");
      }
    }, state.settings.streamChunkTimeoutMs);
    stream.timer.unref();
  }

  /** Finishes or terminates a stream and records the merged message, as NIM does in both cases. */
  function end(stream: EmulatorStream, status: "complete" | "terminated", reason?: StreamTerminationReason): void {
    clearTimeout(stream.timer);
    stream.timer = undefined;
    stream.status = status;
    if (reason !== undefined) stream.terminationReason = reason;
    state.recordMessage({
      msgid: stream.messageServerId,
      msgidClient: stream.messageClientId,
      source: "stream",
      fromClientType: "REST",
      fromDeviceId: "",
      from: stream.from,
      to: stream.to,
      ope: 0,
      type: 0,
      body: JSON.stringify({ msg: stream.text }),
      option: stream.option,
      timetag: stream.createdAt,
      fields: {},
      stream: reason === undefined ? { status } : { status, reason },
    });
    state.recordStreamChange(stream);
  }
}

function chunkView(stream: EmulatorStream, delta: string, index: number): GatewayStreamChunk {
  return {
    message_server_id: stream.messageServerId,
    message_client_id: stream.messageClientId,
    from: stream.from,
    to: stream.to,
    text: stream.text,
    delta,
    index,
    finish: 0,
    create_time: stream.createdAt,
  };
}

/**
 * `sender|1|receiver`. Fastify has already percent-decoded the parameter, so both a raw `|` (what
 * the Java SDK sends) and `%7C` arrive here as `|`.
 */
function parseConversationId(conversationId: string, state: NimEmulatorState): { from: string; to: string } {
  const parts = conversationId.split("|");
  if (parts.length !== 3 || !parts[0] || !parts[2]) throw new V2ApiError(refusalCode, "conversation_id illegal");
  if (parts[1] === "2" || parts[1] === "3") {
    throw new V2ApiError(refusalCode, "team conversations are not supported by the emulator");
  }
  if (parts[1] !== "1") throw new V2ApiError(refusalCode, "conversation_id illegal");
  const sender = state.findAccount(parts[0]);
  if (!sender) throw new V2ApiError(refusalCode, "sender not exists");
  const receiver = state.findAccount(parts[2]);
  if (!receiver) throw new V2ApiError(refusalCode, "receiver not exists");
  return { from: sender.accid, to: receiver.accid };
}

/**
 * message_server_id is a Java Long: as a JSON number above 2^53 `JSON.parse` would round it, so the
 * digits are taken from the raw text. A digit string is accepted too.
 */
function readMessageServerId(value: unknown, rawText: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string" && /^\d+$/.test(value)) return value;
  if (typeof value === "number") {
    const digits = /"message_server_id"\s*:\s*(\d+)/.exec(rawText)?.[1];
    if (digits !== undefined) return digits;
  }
  throw new V2ApiError(refusalCode, "message_server_id illegal");
}

/** The option of the merged message, from the request's message_config / route_config / push_config. */
function mergedMessageOption(payload: Record<string, unknown>): EmulatorMessageOption {
  const config = isRecord(payload.message_config) ? payload.message_config : {};
  const route = isRecord(payload.route_config) ? payload.route_config : {};
  const push = isRecord(payload.push_config) ? payload.push_config : {};
  const flag = (value: unknown) => value !== false;
  return {
    roam: flag(config.roaming_enabled),
    history: flag(config.history_enabled),
    sendersync: flag(config.mutil_sync_enabled),
    push: flag(push.push_enabled),
    route: flag(route.route_enabled),
    badge: flag(config.unread_enabled),
    needPushNick: flag(push.push_nick_enabled),
    // The merged message is what offline users and history see: always stored.
    persistent: true,
    sessionUpdate: flag(config.conversation_update_enabled),
  };
}

function answer(reply: FastifyReply, record: EmulatorRequestRecord, envelope: V2Envelope) {
  record.code = envelope.code;
  record.httpStatus = 200;
  return reply.code(200).type("application/json;charset=utf-8").send(serialize(envelope));
}

function applyFault(
  fault: Exclude<FaultAction, { kind: "delay" }>,
  request: FastifyRequest,
  reply: FastifyReply,
  record: EmulatorRequestRecord,
) {
  switch (fault.kind) {
    case "code":
      return answer(reply, record, { code: fault.code, msg: fault.desc ?? defaultDescription(fault.code) });
    default:
      return answerTransportFault(fault, request, reply, record);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
