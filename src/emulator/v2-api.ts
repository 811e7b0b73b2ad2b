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
 * Codes (nim-protocol §10.1 #6; six-digit v2 domain codes are LIKELY, from the client SDK's table):
 * 414 parameter errors (bad body, out-of-order index, missing message_server_id), 416 frequency
 * control, 102404 sender or receiver account not exist, 108404 team not exist, 109404 sender not a
 * team member, 189319 stream already finished ("generated"), 189320 stream terminated ("aborted":
 * gap or length), 403 stream messages not enabled for the app (`streamMessagesEnabled: false`;
 * NIM's exact code for that is UNCONFIRMED). An out-of-order chunk is refused without terminating
 * the stream; a first chunk already over the text limit is refused without creating one; a repeated
 * first chunk (same message_client_id) starts a second stream (whether NIM de-duplicates client
 * ids here is UNCONFIRMED; this is the pessimistic reading).
 *
 * Scope: P2P (`a|1|b`) and advanced teams (`a|2|tid`, see `state.addTeam`). Non-final chunks reach
 * gateway sessions as `stream` frames only (online-only, never queued): in P2P the receiver's, in a
 * team only the sender's own sessions unless `teamStreamFramesToAllMembers` (as NIM ships it); the
 * merged message goes to every member. `extension`, `rag_info_list` and `thread_config` are kept:
 * the newest extension and citation list a chunk carried become the merged message's `ext` and
 * `stream.ragInfoList` (whether NIM takes them from later chunks is UNCONFIRMED).
 *
 * Time: the gap rule reads `state.now()` on every chunk, so a test with an injected clock sees it;
 * {@link terminateIdleStreams} applies it to every open stream at once (the timer does the same in
 * real time).
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { abandon, answerTransportFault, authenticate, ClassicApiError, serialize } from "./classic-api.ts";
import { defaultDescription, type FaultAction, selectFaults, takeQueuedFault } from "./faults.ts";
import type { GatewayHub, GatewayStreamChunk } from "./gateway.ts";
import { pause } from "./pause.ts";
import type {
  EmulatorMessage,
  EmulatorMessageOption,
  EmulatorRequestRecord,
  EmulatorStream,
  NimEmulatorState,
  StreamTerminationReason,
} from "./state.ts";

/** The path faults and request records use for the stream endpoint. */
export const streamMessagePath = "im/v2/conversations/{conversation_id}/messages/actions/stream_message";

/** v2 answer codes (see the module comment for what is confirmed). */
export const V2_CODES = {
  parameterError: 414,
  frequencyControl: 416,
  notEnabled: 403,
  accountNotExist: 102404,
  teamNotExist: 108404,
  teamMemberNotExist: 109404,
  streamFinished: 189319,
  streamTerminated: 189320,
} as const;
const refusalCode = V2_CODES.parameterError;

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
        if (!state.settings.streamMessagesEnabled) {
          throw new V2ApiError(V2_CODES.notEnabled, "stream message not enabled");
        }
        if (!state.frequencyControl.tryTake(streamMessagePath)) {
          throw new V2ApiError(V2_CODES.frequencyControl, "frequency control");
        }
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
    const { from, to, ope } = parseConversationId(conversationId, state);
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
        ope,
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
      const threadConfig = isRecord(payload.thread_config) ? payload.thread_config : undefined;
      if (isRecord(threadConfig?.thread_reply)) stream.threadReply = threadConfig.thread_reply;
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
        endStream(state, stream, "terminated", "timeout");
      }
      if (stream.status === "complete")
        throw new V2ApiError(V2_CODES.streamFinished, "stream message already finished");
      if (stream.status !== "streaming") {
        throw new V2ApiError(
          V2_CODES.streamTerminated,
          `stream message already terminated (${stream.terminationReason})`,
        );
      }
      if (index !== stream.nextIndex) {
        throw new V2ApiError(refusalCode, `chunk index out of order: expected ${stream.nextIndex}, got ${index}`);
      }
      if (stream.text.length + text.length > state.settings.streamTextLimit) {
        endStream(state, stream, "terminated", "too-long");
        throw new V2ApiError(V2_CODES.streamTerminated, "stream message too long: terminated");
      }
    }

    if (typeof payload.extension === "string") stream.extension = payload.extension;
    if (Array.isArray(payload.rag_info_list)) stream.ragInfoList = payload.rag_info_list;
    stream.text += text;
    stream.chunks.push({ index, text, finish, receivedAt: now });
    stream.nextIndex = index + 1;
    stream.lastChunkAt = now;
    if (finish === 1) {
      endStream(state, stream, "complete");
    } else {
      scheduleTimeout(stream);
      const frame = { type: "stream", message: chunkView(stream, text, index) } as const;
      for (const accid of streamFrameReceivers(stream)) hub.sendTo(accid, frame);
      state.recordStreamChange(stream);
    }
    return {
      code: 200,
      msg: "success",
      data: {
        message_server_id: BigInt(stream.messageServerId),
        message_client_id: stream.messageClientId,
        sender_id: stream.from,
        conversation_type: ope === 1 ? 2 : 1,
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
        endStream(state, stream, "terminated", "timeout");
      }
    }, state.settings.streamChunkTimeoutMs);
    stream.timer.unref();
  }

  /** P2P: the receiver. Team: the sender's own sessions, or every member when NIM support enabled it. */
  function streamFrameReceivers(stream: EmulatorStream): string[] {
    if (stream.ope === 0) return [stream.to];
    if (!state.settings.teamStreamFramesToAllMembers) return [stream.from];
    return [...(state.teams.get(stream.to)?.members ?? [])];
  }
}

/**
 * Terminates every open stream whose last chunk is older than the chunk gap by `state.now()`, as
 * NIM's timer would; returns how many. For tests that drive an injected clock.
 */
export function terminateIdleStreams(state: NimEmulatorState): number {
  let terminated = 0;
  for (const stream of state.streams.values()) {
    if (stream.status === "streaming" && state.now() - stream.lastChunkAt > state.settings.streamChunkTimeoutMs) {
      endStream(state, stream, "terminated", "timeout");
      terminated += 1;
    }
  }
  return terminated;
}

/** Finishes or terminates a stream and records the merged message, as NIM does in both cases. */
function endStream(
  state: NimEmulatorState,
  stream: EmulatorStream,
  status: "complete" | "terminated",
  reason?: StreamTerminationReason,
): void {
  clearTimeout(stream.timer);
  stream.timer = undefined;
  stream.status = status;
  if (reason !== undefined) stream.terminationReason = reason;
  const outcome: NonNullable<EmulatorMessage["stream"]> = reason === undefined ? { status } : { status, reason };
  if (stream.ragInfoList !== undefined) outcome.ragInfoList = stream.ragInfoList;
  state.recordMessage({
    msgid: stream.messageServerId,
    msgidClient: stream.messageClientId,
    source: "stream",
    fromClientType: "REST",
    fromDeviceId: "",
    from: stream.from,
    to: stream.to,
    ope: stream.ope,
    type: 0,
    body: JSON.stringify({ msg: stream.text }),
    option: stream.option,
    ...(stream.extension !== undefined ? { ext: stream.extension } : {}),
    timetag: stream.createdAt,
    fields: {},
    stream: outcome,
  });
  state.recordStreamChange(stream);
}

function chunkView(stream: EmulatorStream, delta: string, index: number): GatewayStreamChunk {
  const view: GatewayStreamChunk = {
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
  if (stream.ope === 1) view.scope = "team";
  if (stream.extension !== undefined) view.extension = stream.extension;
  if (stream.ragInfoList !== undefined) view.rag_info_list = stream.ragInfoList;
  return view;
}

/**
 * `sender|1|receiver` or `sender|2|tid`. Fastify has already percent-decoded the parameter, so both
 * a raw `|` (what the Java SDK sends) and `%7C` arrive here as `|`. Super teams (`|3|`) are not
 * modelled.
 */
function parseConversationId(
  conversationId: string,
  state: NimEmulatorState,
): { from: string; to: string; ope: 0 | 1 } {
  const parts = conversationId.split("|");
  if (parts.length !== 3 || !parts[0] || !parts[2]) throw new V2ApiError(refusalCode, "conversation_id illegal");
  if (parts[1] !== "1" && parts[1] !== "2") throw new V2ApiError(refusalCode, "conversation_id illegal");
  const sender = state.findAccount(parts[0]);
  if (!sender) throw new V2ApiError(V2_CODES.accountNotExist, "sender not exists");
  if (parts[1] === "2") {
    const team = state.teams.get(parts[2]);
    if (!team) throw new V2ApiError(V2_CODES.teamNotExist, "team not exists");
    if (!team.members.includes(sender.accid)) throw new V2ApiError(V2_CODES.teamMemberNotExist, "sender not in team");
    return { from: sender.accid, to: team.tid, ope: 1 };
  }
  const receiver = state.findAccount(parts[2]);
  if (!receiver) throw new V2ApiError(V2_CODES.accountNotExist, "receiver not exists");
  return { from: sender.accid, to: receiver.accid, ope: 0 };
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
