/**
 * Conformance with the real Web SDK v10 (`nim-web-sdk-ng@10.9.77-alpha.4`, a devDependency): every
 * field the adapters read is asserted on the SDK's own types, so an SDK upgrade that renames or
 * retypes one fails `tsc` (run by CI over this file) and these tests. The fixtures are typed as the
 * SDK's `V2NIMMessage` with `satisfies`, then fed through the real adapters at run time.
 */
import type { NIMInitializeOptions } from "nim-web-sdk-ng/dist/v2/NIM_BROWSER_SDK/NIMInterface.js";
import type {
  V2NIMMessage,
  V2NIMMessageCustomAttachment,
  V2NIMMessageListener,
  V2NIMMessageStreamConfig,
} from "nim-web-sdk-ng/dist/v2/NIM_BROWSER_SDK/V2NIMMessageService.js";
import { describe, expect, expectTypeOf, it } from "vitest";
import { fromNimV10Message } from "./adapters.ts";
import { NativeStreamAssembler, NIM_STREAM_STATUS } from "./native-stream-assembler.ts";
import { connectNimV10, type NimV10Like } from "./wiring.ts";

/** The SDK's `V2NIM` class (a CommonJS default export, hence `.default`). */
type Instance = InstanceType<typeof import("nim-web-sdk-ng").default>;

describe("nim-web-sdk-ng 10.9.77-alpha.4 types", () => {
  it("has every V2NIMMessage field the adapters read, with the type they expect", () => {
    expectTypeOf<V2NIMMessage["messageType"]>().toExtend<number>();
    expectTypeOf<V2NIMMessage["senderId"]>().toEqualTypeOf<string>();
    expectTypeOf<V2NIMMessage["messageClientId"]>().toEqualTypeOf<string>();
    expectTypeOf<V2NIMMessage["messageServerId"]>().toEqualTypeOf<string>();
    expectTypeOf<V2NIMMessage["text"]>().toEqualTypeOf<string | undefined>();
    expectTypeOf<V2NIMMessage["serverExtension"]>().toEqualTypeOf<string | undefined>();
    expectTypeOf<V2NIMMessage["createTime"]>().toEqualTypeOf<number>();
    expectTypeOf<V2NIMMessage["conversationId"]>().toEqualTypeOf<string>();
    expectTypeOf<V2NIMMessageCustomAttachment["raw"]>().toEqualTypeOf<string>();
    expectTypeOf<V2NIMMessage["streamConfig"]>().toEqualTypeOf<V2NIMMessageStreamConfig | undefined>();
    expectTypeOf<V2NIMMessageStreamConfig["status"]>().toExtend<number>();
    expectTypeOf<NonNullable<V2NIMMessageStreamConfig["rags"]>[number]["url"]>().toEqualTypeOf<string | undefined>();
  });

  it("fires replies through onReceiveMessages and onReceiveMessagesModified, with V2NIMMessage arrays", () => {
    expectTypeOf<V2NIMMessageListener["onReceiveMessages"]>().toEqualTypeOf<[messages: V2NIMMessage[]]>();
    expectTypeOf<V2NIMMessageListener["onReceiveMessagesModified"]>().toEqualTypeOf<[messages: V2NIMMessage[]]>();
  });

  it("exposes apiVersion on the init options and the instance, as connectNimV10 checks it", () => {
    expectTypeOf<NIMInitializeOptions["apiVersion"]>().toEqualTypeOf<string | undefined>();
    expectTypeOf<Instance["options"]>().toEqualTypeOf<NIMInitializeOptions>();
    expectTypeOf<Instance>().toExtend<NimV10Like>();
  });

  it("numbers V2NIMMessageStreamStatus as NIM_STREAM_STATUS does", () => {
    // A const enum: compare through the literal types the declaration gives each member.
    const complete = 4 satisfies V2NIMMessageStreamConfig["status"];
    expect(NIM_STREAM_STATUS.complete).toBe(complete);
    const exception = 5 satisfies V2NIMMessageStreamConfig["status"];
    expect(NIM_STREAM_STATUS.exception).toBe(exception);
  });
});

const base = {
  messageClientId: "c-1",
  messageServerId: "9007199254740993",
  createTime: 1_700_000_000_000,
  senderId: "advisor_bot",
  receiverId: "alice",
  conversationType: 1,
  conversationId: "advisor_bot|1|alice",
  isSelf: false,
  sendingState: 1,
  messageStatus: { errorCode: 200 },
} as const;

describe("the adapters on messages typed as the SDK's V2NIMMessage", () => {
  it("reads a custom reply from attachment.raw", () => {
    const body = { kind: "bot_stream", stream_id: "s1", reply_to: "1", seq: 0, delta: "Hi", done: false };
    const message = {
      ...base,
      messageType: 100,
      attachment: { raw: JSON.stringify(body) },
    } satisfies V2NIMMessage;
    expect(fromNimV10Message(message, { botAccounts: ["advisor_bot"] })).toEqual(body);
  });

  it("reads a native stream message from text, streamConfig and serverExtension", () => {
    const extension = JSON.stringify({
      kind: "bot_stream",
      mode: "native",
      stream_id: "s1",
      reply_to: "1",
      part: 1,
      status: "ok",
      done: true,
      parts: 1,
    });
    const message = {
      ...base,
      messageType: 0,
      text: "Hello",
      serverExtension: extension,
      streamConfig: { status: 4 satisfies V2NIMMessageStreamConfig["status"] },
    } satisfies V2NIMMessage;
    const replies = new NativeStreamAssembler({ botAccounts: ["advisor_bot"] });
    expect(replies.accept(message)).toMatchObject({ streamId: "s1", text: "Hello", status: "ok", done: true });
  });

  it("refuses an instance made without apiVersion v2", () => {
    const service = { on: () => undefined, off: () => undefined };
    expect(() => connectNimV10({ options: {}, V2NIMMessageService: service }, {})).toThrow(/apiVersion: "v2"/);
  });
});
