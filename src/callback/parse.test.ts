import { describe, expect, it } from "vitest";
import type { CallbackEvent, MessageEvent } from "./events.ts";
import { isUserToBotText, parseCallbackEvent, topLevelNumberLiterals } from "./parse.ts";

const bot = "advisor_bot";

function parse(body: string | Buffer): CallbackEvent {
  return parseCallbackEvent(typeof body === "string" ? Buffer.from(body, "utf8") : body);
}

function parseObject(body: Record<string, unknown>): CallbackEvent {
  return parse(JSON.stringify(body));
}

function expectMessage(event: CallbackEvent): MessageEvent {
  if (event.kind !== "message") throw new Error(`expected a message, got ${JSON.stringify(event)}`);
  return event;
}

/** A P2P TEXT copy as NIM sends it (§4.4): every value a JSON string. */
const textFromUser = {
  eventType: "1",
  convType: "PERSON",
  to: bot,
  fromAccount: "user_42",
  fromClientType: "WEB",
  fromDeviceId: "c2b1f3a0e9d84b7c",
  fromNick: "小明",
  msgTimestamp: "1441977355557",
  msgType: "TEXT",
  body: "你好，机器人",
  msgidClient: "6c1b2c4f-3b0a-4f7e-9d57-1c2a1e0b9f11",
  msgidServer: "3456789",
  resendFlag: "0",
};

/** The CUSTOM example of §4.4 (server API sendMsg type=100): payload in attach, body "". */
const customFromServer =
  '{"attach":"{\\"myKey1\\":\\"myValue1\\",\\"myKey2\\":2}","body":"","convType":"PERSON","eventType":"1",' +
  '"fromAccount":"zhangsan","fromClientType":"REST","fromDeviceId":"","fromNick":"zhangsan",' +
  '"msgTimestamp":"1456898248757","msgType":"CUSTOM","msgidClient":"1f92d4a0c3e5","msgidServer":"8364702",' +
  '"resendFlag":"0","to":"lisi"}';

describe("parseCallbackEvent: conversation messages", () => {
  it("parses a P2P TEXT message with NIM's all-string fields", () => {
    const event = parseObject(textFromUser);
    expect(event).toEqual({
      kind: "message",
      conversation: "person",
      messageType: "text",
      rawMessageType: "TEXT",
      fromAccount: "user_42",
      to: bot,
      text: "你好，机器人",
      msgidServer: "3456789",
      msgidClient: "6c1b2c4f-3b0a-4f7e-9d57-1c2a1e0b9f11",
      msgTimestamp: 1441977355557,
      fromClientType: "WEB",
      fromDeviceId: "c2b1f3a0e9d84b7c",
      fromNick: "小明",
      resend: false,
      antispam: false,
      blacklisted: false,
      raw: textFromUser,
    });
    expect(isUserToBotText(event, bot)).toBe(true);
  });

  it("parses the same message with numbers and booleans instead of strings", () => {
    const event = expectMessage(
      parseObject({
        ...textFromUser,
        eventType: 1,
        msgTimestamp: 1441977355557,
        msgidServer: 3456789,
        resendFlag: 1,
        antispam: false,
        blacklist: true,
        fromClientType: 16,
      }),
    );
    expect(event).toMatchObject({
      msgidServer: "3456789",
      msgTimestamp: 1441977355557,
      resend: true,
      antispam: false,
      blacklisted: true,
      fromClientType: "WEB",
    });
  });

  it("parses a CUSTOM message: the payload is attach, body is empty", () => {
    const event = expectMessage(parse(customFromServer));
    expect(event).toMatchObject({
      kind: "message",
      conversation: "person",
      messageType: "custom",
      rawMessageType: "CUSTOM",
      fromAccount: "zhangsan",
      to: "lisi",
      attach: '{"myKey1":"myValue1","myKey2":2}',
      msgidServer: "8364702",
      msgidClient: "1f92d4a0c3e5",
      msgTimestamp: 1456898248757,
      fromClientType: "REST",
    });
    expect(event.text).toBeUndefined();
    expect(event.body).toBeUndefined();
    expect(event.fromDeviceId).toBeUndefined(); // "" for REST senders
    expect(JSON.parse(event.attach ?? "")).toEqual({ myKey1: "myValue1", myKey2: 2 });
    expect(isUserToBotText(event, "lisi")).toBe(false);
  });

  it("parses a TEAM text message with its member list", () => {
    const event = expectMessage(
      parseObject({
        ...textFromUser,
        convType: "TEAM",
        to: "1234567",
        body: "大家好",
        tMembers: "[123, 456, user_42]",
      }),
    );
    expect(event).toMatchObject({
      conversation: "team",
      messageType: "text",
      to: "1234567",
      text: "大家好",
      teamMembers: ["123", "456", "user_42"],
    });
    expect(isUserToBotText(event, bot)).toBe(false);
  });

  it("reads a quoted or empty tMembers list and ignores a malformed one", () => {
    const quoted = parseObject({ ...textFromUser, convType: "TEAM", tMembers: '["a", "b"]' });
    expect(expectMessage(quoted).teamMembers).toEqual(["a", "b"]);
    const empty = parseObject({ ...textFromUser, convType: "TEAM", tMembers: "[]" });
    expect(expectMessage(empty).teamMembers).toEqual([]);
    const malformed = parseObject({ ...textFromUser, convType: "TEAM", tMembers: "123,456" });
    expect(expectMessage(malformed).teamMembers).toBeUndefined();
  });

  it("parses a SUPER_TEAM message", () => {
    const event = parseObject({ ...textFromUser, convType: "SUPER_TEAM", to: "99887766" });
    expect(event).toMatchObject({ kind: "message", conversation: "super-team", to: "99887766" });
  });

  it.each([
    ["PICTURE", "picture"],
    ["AUDIO", "audio"],
    ["VIDEO", "video"],
    ["LOCATION", "location"],
    ["NOTIFICATION", "notification"],
    ["FILE", "file"],
    ["TIPS", "tips"],
    ["NRTC_NETCALL", "netcall"],
    ["ROBOT", "other"],
  ])("maps msgType %s to %s", (msgType, messageType) => {
    const attach = '{"url":"https://nim.example/1.png","w":10,"h":10}';
    const event = expectMessage(parseObject({ ...textFromUser, msgType, body: "", attach }));
    expect(event.messageType).toBe(messageType);
    expect(event.rawMessageType).toBe(msgType);
    expect(event.attach).toBe(attach);
    expect(event.text).toBeUndefined();
    expect(isUserToBotText(event, bot)).toBe(false);
  });

  it("reads resendFlag '1' as a client resend", () => {
    expect(expectMessage(parseObject({ ...textFromUser, resendFlag: "1" })).resend).toBe(true);
  });

  it("reads antispam 'true', blacklist 'true', ext and yidunRes", () => {
    const event = expectMessage(
      parseObject({ ...textFromUser, antispam: "true", blacklist: "TRUE", ext: '{"k":"v"}', yidunRes: "{}" }),
    );
    expect(event).toMatchObject({ antispam: true, blacklisted: true, ext: '{"k":"v"}' });
    expect(event.raw["yidunRes"]).toBe("{}");
  });

  it("reads antispam 'false' and empty flags as false", () => {
    const event = expectMessage(parseObject({ ...textFromUser, antispam: "false", blacklist: "", resendFlag: null }));
    expect(event).toMatchObject({ antispam: false, blacklisted: false, resend: false });
  });

  it("refuses to guess an odd flag value", () => {
    const event = parseObject({ ...textFromUser, antispam: "maybe" });
    expect(event).toMatchObject({ kind: "unknown", eventType: "1", reason: "antispam is not a boolean flag" });
  });

  it("keeps aiParams, an object in NIM's copy", () => {
    const aiParams = { direction: 1, account: "nim_ai_bot", content: { msg: "hi", type: 0 }, config: {} };
    const event = expectMessage(parseObject({ ...textFromUser, aiParams }));
    expect(event.aiParams).toEqual(aiParams);
    expect(isUserToBotText(event, bot)).toBe(true);
  });

  it("accepts aiParams given as a JSON string, and drops a non-object one", () => {
    const asString = expectMessage(parseObject({ ...textFromUser, aiParams: '{"direction":2}' }));
    expect(asString.aiParams).toEqual({ direction: 2 });
    const asNumber = expectMessage(parseObject({ ...textFromUser, aiParams: 5 }));
    expect(asNumber.aiParams).toBeUndefined();
  });

  it("keeps an empty TEXT body as empty text (the route decides)", () => {
    expect(expectMessage(parseObject({ ...textFromUser, body: "" })).text).toBe("");
  });

  it("drops descriptive fields of an odd type instead of dropping the message", () => {
    const event = expectMessage(parseObject({ ...textFromUser, fromNick: { name: "x" }, fromDeviceId: ["d"] }));
    expect(event.fromNick).toBeUndefined();
    expect(event.fromDeviceId).toBeUndefined();
    expect(event.text).toBe("你好，机器人");
  });

  it("accepts lower-case convType and msgType", () => {
    const event = parseObject({ ...textFromUser, convType: "person", msgType: "text" });
    expect(event).toMatchObject({ kind: "message", conversation: "person", messageType: "text" });
  });
});

describe("parseCallbackEvent: 64-bit ids", () => {
  it("keeps every digit of a msgidServer sent as a number above 2^53", () => {
    const body = JSON.stringify({ ...textFromUser, msgidServer: "MARK" }).replace('"MARK"', "12345678901234567891");
    const event = expectMessage(parse(body));
    expect(event.msgidServer).toBe("12345678901234567891");
    // JSON.parse alone would have rounded it to a different id.
    expect(String(JSON.parse(body).msgidServer)).not.toBe("12345678901234567891");
  });

  it("keeps every digit of a large msgidClient and a large numeric team id", () => {
    const body = JSON.stringify({ ...textFromUser, convType: "TEAM", msgidClient: "A", to: "B" })
      .replace('"A"', "9007199254740993")
      .replace('"B"', "18014398509481985");
    const event = expectMessage(parse(body));
    expect(event.msgidClient).toBe("9007199254740993");
    expect(event.to).toBe("18014398509481985");
  });

  it("keeps a large msgidServer string as is", () => {
    const event = expectMessage(parseObject({ ...textFromUser, msgidServer: "98765432109876543210" }));
    expect(event.msgidServer).toBe("98765432109876543210");
  });

  it("is not fooled by a msgidServer-like text inside a string value", () => {
    const body =
      '{"eventType":"1","convType":"PERSON","to":"advisor_bot","fromAccount":"u","msgType":"TEXT",' +
      '"body":"{\\"msgidServer\\":11111111111111111111}","msgTimestamp":"1441977355557",' +
      '"msgidServer":22222222222222222222}';
    const event = expectMessage(parse(body));
    expect(event.msgidServer).toBe("22222222222222222222");
    expect(event.text).toBe('{"msgidServer":11111111111111111111}');
  });

  it("ignores a nested msgidServer when reading the top-level one", () => {
    const body =
      '{"aiParams":{"msgidServer":33333333333333333333,"list":[1,2,{"msgidServer":4}]},' +
      '"eventType":1,"convType":"PERSON","to":"advisor_bot","fromAccount":"u","msgType":"TEXT","body":"hi",' +
      '"msgTimestamp":1441977355557,"msgidServer":44444444444444444444}';
    expect(expectMessage(parse(body)).msgidServer).toBe("44444444444444444444");
  });

  it("uses the last of duplicate keys, as JSON.parse does", () => {
    const body = JSON.stringify(textFromUser).replace('"msgidServer":"3456789"', '"msgidServer":1,"msgidServer":2');
    expect(expectMessage(parse(body)).msgidServer).toBe("2");
  });

  it.each([
    ["negative", -5],
    ["fractional", 1.5],
    ["exponent", 1e21],
  ])("rejects a %s msgidServer", (_label, msgidServer) => {
    const event = parseObject({ ...textFromUser, msgidServer });
    expect(event).toMatchObject({ kind: "unknown", reason: "msgidServer is not a string of digits" });
  });

  it("rejects a msgidServer string that is not digits", () => {
    expect(parseObject({ ...textFromUser, msgidServer: "12a" })).toMatchObject({ kind: "unknown" });
  });

  it("scans number literals only at the top level of the object", () => {
    const literals = topLevelNumberLiterals(
      '{ "a" : -1.5e3 , "b":"x,\\"c\\":9", "d":[1,{"e":2}], "f":{"g":3}, "h":true, "i":null, "j":10 }',
    );
    expect(Object.fromEntries(literals)).toEqual({ a: "-1.5e3", j: "10" });
  });

  it("decodes escaped keys in the scanner", () => {
    const literals = topLevelNumberLiterals('{"msgid\\u0053erver":12345678901234567891}');
    expect(literals.get("msgidServer")).toBe("12345678901234567891");
  });
});

describe("parseCallbackEvent: media attachments", () => {
  const media = (msgType: string, attach: unknown, body = "") =>
    expectMessage(parseObject({ ...textFromUser, msgType, body, attach }));

  it("reads a PICTURE attach given as an object with numbers as strings (NIM's own example)", () => {
    const attach = {
      md5: "9894907e4ad9de4678091277509361f7",
      h: "1080",
      w: 1920,
      size: "91680",
      name: "photo.jpg",
      url: "https://nim.nosdn.127.net/photo.jpg",
      ext: "jpg",
    };
    const event = media("PICTURE", attach);
    expect(event.attach).toBe(JSON.stringify(attach));
    expect(event.media).toEqual({
      kind: "picture",
      url: "https://nim.nosdn.127.net/photo.jpg",
      size: 91680,
      ext: "jpg",
      name: "photo.jpg",
      md5: "9894907e4ad9de4678091277509361f7",
      width: 1920,
      height: 1080,
    });
  });

  it("reads AUDIO (duration in ms), VIDEO, FILE and LOCATION, attach as a string", () => {
    const audio = media(
      "AUDIO",
      '{"size":"4096","ext":"aac","dur":"3200","url":"https://nos/a.aac","md5":"m"}',
      "发来了一段语音",
    );
    expect(audio.media).toEqual({
      kind: "audio",
      size: 4096,
      ext: "aac",
      duration: 3200,
      url: "https://nos/a.aac",
      md5: "m",
    });
    expect(audio.body).toBe("发来了一段语音");
    expect(
      media("VIDEO", { url: "https://nos/v.mp4", dur: 5000, w: 640, h: 360, size: 1, ext: "mp4", name: "v" }).media,
    ).toEqual({
      kind: "video",
      url: "https://nos/v.mp4",
      duration: 5000,
      width: 640,
      height: 360,
      size: 1,
      ext: "mp4",
      name: "v",
    });
    expect(media("FILE", { ext: "pdf", md5: "m", name: "a.pdf", size: 10, url: "https://nos/a.pdf" }).media).toEqual({
      kind: "file",
      ext: "pdf",
      md5: "m",
      name: "a.pdf",
      size: 10,
      url: "https://nos/a.pdf",
    });
    expect(media("LOCATION", '{"title":"西湖","lng":"120.15","lat":30.25}').media).toEqual({
      kind: "location",
      title: "西湖",
      longitude: 120.15,
      latitude: 30.25,
    });
  });

  it("drops fields of the wrong type instead of guessing, and gives no media for other types", () => {
    const odd = media("PICTURE", { url: 5, size: "big", w: -3, h: 1.5, name: ["x"], ext: "png" });
    expect(odd.media).toEqual({ kind: "picture", ext: "png" });
    expect(media("LOCATION", { lat: 123, lng: "east" }).media).toEqual({ kind: "location" });
    expect(media("PICTURE", "not json").media).toBeUndefined();
    expect(media("CUSTOM", { url: "https://x" }).media).toBeUndefined();
    expect(expectMessage(parseObject(textFromUser)).media).toBeUndefined();
  });
});

describe("parseCallbackEvent: notifications, presence, recall", () => {
  it("parses a custom P2P notification (sendAttachMsg)", () => {
    const raw = {
      eventType: "1",
      convType: "CUSTOM_PERSON",
      to: "user_42",
      fromAccount: bot,
      fromClientType: "REST",
      fromDeviceId: "",
      fromNick: "",
      msgTimestamp: "1456898248757",
      msgType: "CUSTOM_P2P_MSG",
      body: "",
      attach: '{"kind":"typing"}',
      msgidServer: "8364703",
      customSafeFlag: "0",
      customApnsText: "new event",
    };
    expect(parseObject(raw)).toEqual({
      kind: "custom-notification",
      conversation: "person",
      from: bot,
      to: "user_42",
      attach: '{"kind":"typing"}',
      msgidServer: "8364703",
      msgTimestamp: 1456898248757,
      fromClientType: "REST",
      storedOffline: false,
      pushText: "new event",
      raw,
    });
  });

  it("parses a custom team notification, with an empty attach when NIM sent none", () => {
    const event = parseObject({
      eventType: "1",
      convType: "CUSTOM_TEAM",
      to: "1234567",
      fromAccount: "user_42",
      msgType: "CUSTOM_TEAM_MSG",
      customSafeFlag: "1",
    });
    expect(event).toMatchObject({ kind: "custom-notification", conversation: "team", attach: "", storedOffline: true });
  });

  it("parses friend and team operations as system events", () => {
    const friend = parseObject({
      eventType: "1",
      convType: "CUSTOM_PERSON",
      to: "user_2",
      fromAccount: "user_1",
      msgType: "FRIEND_ADD",
      msgTimestamp: "1456898248757",
      msgidServer: "1",
      attach: '{"vt":1}',
    });
    expect(friend).toMatchObject({
      kind: "system",
      conversation: "person",
      systemType: "FRIEND_ADD",
      from: "user_1",
      to: "user_2",
      attach: '{"vt":1}',
    });
    const team = parseObject({
      eventType: "1",
      convType: "CUSTOM_TEAM",
      to: "1234567",
      fromAccount: "user_1",
      msgType: "TEAM_APPLY",
    });
    expect(team).toMatchObject({ kind: "system", conversation: "team", systemType: "TEAM_APPLY" });
  });

  it("parses eventType 2, a login", () => {
    const raw = {
      eventType: "2",
      accid: "user_42",
      clientIp: "203.0.113.7",
      clientType: "WEB",
      code: "200",
      sdkVersion: "91210",
      timestamp: "1441977355557",
      deviceId: "c2b1f3a0e9d84b7c",
      customTag: "",
    };
    expect(parseObject(raw)).toEqual({
      kind: "login",
      accid: "user_42",
      clientType: "WEB",
      clientIp: "203.0.113.7",
      timestamp: 1441977355557,
      deviceId: "c2b1f3a0e9d84b7c",
      sdkVersion: "91210",
      code: "200",
      raw,
    });
  });

  it("parses eventType 3, a logout, with numbers", () => {
    const event = parseObject({ eventType: 3, accid: "user_42", clientType: 1, timestamp: 1441977355557, code: 200 });
    expect(event).toMatchObject({
      kind: "logout",
      accid: "user_42",
      clientType: "AOS",
      timestamp: 1441977355557,
      code: "200",
    });
  });

  it("rejects a login without accid", () => {
    expect(parseObject({ eventType: "2", clientType: "WEB" })).toMatchObject({
      kind: "unknown",
      eventType: "2",
      reason: "accid is missing",
    });
  });

  // NIM's 其他抄送 doc (nim-protocol §10.1 #1): the recall copy's real field names.
  const recallCopy = {
    eventType: "7",
    from: "user_42",
    to: bot,
    msgId: "9007199254740995",
    clientId: "c0ffee00-0000-4000-8000-000000000001",
    deleteTime: "1441977355999",
    sendTime: "1441977355557",
    fromClientType: "WEB",
    selfMsg: "true",
    attach: "撤回了一条消息",
  };

  it("parses eventType 7, a P2P recall, with NIM's real fields", () => {
    expect(parseObject(recallCopy)).toEqual({
      kind: "recall",
      conversation: "person",
      fromAccount: "user_42",
      to: bot,
      recalledMsgidServer: "9007199254740995",
      recalledMsgidClient: "c0ffee00-0000-4000-8000-000000000001",
      deleteTime: 1441977355999,
      sendTime: 1441977355557,
      fromClientType: "WEB",
      selfRecall: true,
      attach: "撤回了一条消息",
      raw: recallCopy,
    });
  });

  it("parses eventType 8 (team) and 25 (super team), with numbers, an object attach and the exact 64-bit msgId", () => {
    const text =
      '{"eventType":8,"from":"manager","to":1234567,"msgId":9007199254740995,"deleteTime":1441977355999,' +
      '"selfMsg":false,"attach":{"reason":"spam"}}';
    expect(parseCallbackEvent(Buffer.from(text))).toMatchObject({
      kind: "recall",
      conversation: "team",
      fromAccount: "manager",
      to: "1234567",
      recalledMsgidServer: "9007199254740995",
      selfRecall: false,
      attach: '{"reason":"spam"}',
    });
    expect(parseObject({ ...recallCopy, eventType: "25", to: "88" })).toMatchObject({
      kind: "recall",
      conversation: "super-team",
      to: "88",
    });
  });

  it("still reads the older guessed recall fields when the real ones are absent", () => {
    expect(parseObject({ eventType: "7", fromAccount: "user_42", to: bot, deleteMsgid: "3456789" })).toMatchObject({
      kind: "recall",
      fromAccount: "user_42",
      recalledMsgidServer: "3456789",
    });
  });

  it("does not handle eventType 4, a chatroom message", () => {
    const raw = {
      eventType: "4",
      roomId: "12345",
      fromAccount: "user_42",
      msgType: "TEXT",
      attach: "hello",
      msgTimestamp: "1441977355557",
      msgidClient: "x",
    };
    expect(parseObject(raw)).toEqual({
      kind: "unknown",
      eventType: "4",
      reason: "eventType 4 (chatroom message) is not handled",
      raw,
    });
  });

  it("reports an eventType it has never heard of", () => {
    expect(parseObject({ eventType: "40", serverId: "1" })).toMatchObject({
      kind: "unknown",
      eventType: "40",
      reason: "eventType 40 is unknown",
    });
  });

  it("reports an unknown convType", () => {
    expect(parseObject({ ...textFromUser, convType: "CHATROOM" })).toMatchObject({
      kind: "unknown",
      eventType: "1",
      reason: "convType CHATROOM is not handled",
    });
  });
});

describe("parseCallbackEvent: validation and junk", () => {
  it("recognises NIM's validation request `{}`", () => {
    expect(parse("{}")).toEqual({ kind: "validation" });
    expect(parse(" { } \n")).toEqual({ kind: "validation" });
  });

  it.each([
    ["[]", "the body is an array, not an object"],
    ["null", "the body is null, not an object"],
    ['"x"', "the body is a string, not an object"],
    ["42", "the body is a number, not an object"],
    ["true", "the body is a boolean, not an object"],
  ])("calls valid JSON %s that is not an object unknown", (body, reason) => {
    expect(parse(body)).toEqual({ kind: "unknown", reason, raw: JSON.parse(body) });
  });

  it.each([
    ["an empty body", ""],
    ["plain text", "hello"],
    ["truncated JSON", '{"eventType":"1",'],
    ["form encoding", "eventType=1&convType=PERSON"],
  ])("calls %s invalid JSON", (_label, body) => {
    expect(parse(body)).toEqual({ kind: "invalid-json", reason: "not-json" });
  });

  it("calls bytes that are not UTF-8 invalid", () => {
    expect(parse(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]))).toEqual({
      kind: "invalid-json",
      reason: "not-utf8",
    });
  });

  it("survives deeply nested junk", () => {
    const depth = 100_000;
    expect(parse("[".repeat(depth) + "]".repeat(depth))).toMatchObject({ kind: "unknown" });
    const nestedObject = '{"eventType":"1","x":' + '{"a":'.repeat(depth) + "1" + "}".repeat(depth) + "}";
    expect(parse(nestedObject)).toMatchObject({ kind: "unknown", eventType: "1", reason: "convType is missing" });
  });

  it("reports a missing or mistyped eventType", () => {
    expect(parseObject({ convType: "PERSON" })).toMatchObject({ kind: "unknown", reason: "eventType is missing" });
    expect(parseObject({ eventType: { a: 1 } })).toMatchObject({
      kind: "unknown",
      reason: "eventType is an object, not a number",
    });
    expect(parseObject({ eventType: "one" })).toMatchObject({ kind: "unknown" });
  });

  it.each(["msgidServer", "fromAccount", "to", "msgTimestamp", "msgType", "convType"])(
    "calls a message without %s unknown",
    (field) => {
      const body: Record<string, unknown> = { ...textFromUser };
      delete body[field];
      expect(parseObject(body)).toMatchObject({ kind: "unknown", eventType: "1", reason: `${field} is missing` });
    },
  );

  it("calls a TEXT message without body unknown", () => {
    const body: Record<string, unknown> = { ...textFromUser };
    delete body["body"];
    expect(parseObject(body)).toMatchObject({ kind: "unknown", reason: "a TEXT message has no body" });
  });

  it.each([
    ["body", 5, "body is a number, not a string"],
    ["attach", 7, "attach is a number, not a string"],
    ["fromAccount", true, "fromAccount is a boolean, not an identifier"],
    ["to", ["advisor_bot"], "to is an array, not an identifier"],
    ["msgType", 0, "msgType is a number, not a string"],
    ["msgTimestamp", "yesterday", "msgTimestamp is not a timestamp in milliseconds"],
    ["msgTimestamp", -1, "msgTimestamp is not a timestamp in milliseconds"],
  ])("calls a message whose %s has the wrong type unknown", (field, value, reason) => {
    expect(parseObject({ ...textFromUser, [field]: value })).toMatchObject({ kind: "unknown", eventType: "1", reason });
  });

  it("does not take fields from the object prototype", () => {
    const body = JSON.stringify({ ...textFromUser, msgType: "TEXT" }).replace('"body":"你好，机器人",', "");
    // Without an own `body`, nothing may be read from Object.prototype.
    expect(parse(body)).toMatchObject({ kind: "unknown", reason: "a TEXT message has no body" });
    expect(parse('{"__proto__":{"eventType":"1"}}')).toMatchObject({ kind: "unknown", reason: "eventType is missing" });
    expect(parse('{"constructor":1}')).toMatchObject({ kind: "unknown", reason: "eventType is missing" });
  });
});

describe("isUserToBotText", () => {
  const message = expectMessage(parseObject(textFromUser));

  it("is true for a P2P text from a user to the bot", () => {
    expect(isUserToBotText(message, bot)).toBe(true);
  });

  it("compares accids case-insensitively", () => {
    expect(isUserToBotText(message, "Advisor_Bot")).toBe(true);
    expect(isUserToBotText({ ...message, to: "ADVISOR_BOT" }, bot)).toBe(true);
  });

  it("ignores the bot's own messages, which NIM copies back too", () => {
    expect(isUserToBotText({ ...message, fromAccount: bot, to: bot }, bot)).toBe(false);
    expect(isUserToBotText({ ...message, fromAccount: "ADVISOR_BOT", to: "user_42" }, bot)).toBe(false);
  });

  it("ignores messages to someone else, team messages, non-text and non-messages", () => {
    expect(isUserToBotText({ ...message, to: "someone_else" }, bot)).toBe(false);
    expect(isUserToBotText({ ...message, conversation: "team" }, bot)).toBe(false);
    expect(isUserToBotText({ ...message, messageType: "custom", text: undefined }, bot)).toBe(false);
    expect(isUserToBotText({ kind: "validation" }, bot)).toBe(false);
    expect(isUserToBotText(parseObject({ eventType: "2", accid: bot }), bot)).toBe(false);
  });

  it("is false when no bot accid is configured", () => {
    expect(isUserToBotText({ ...message, to: "" }, "")).toBe(false);
  });

  it("narrows the event so that text is a string", () => {
    const event: CallbackEvent = message;
    if (isUserToBotText(event, bot)) {
      const text: string = event.text;
      expect(text).toBe("你好，机器人");
    } else {
      throw new Error("expected a user-to-bot text");
    }
  });
});
