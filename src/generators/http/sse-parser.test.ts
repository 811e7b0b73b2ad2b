import { describe, expect, test } from "vitest";
import { type ServerSentEvent, ServerSentEventParser } from "./sse-parser.ts";

function parseAll(pieces: string[]): ServerSentEvent[] {
  const parser = new ServerSentEventParser();
  const events = pieces.flatMap((piece) => parser.push(piece));
  return events.concat(parser.end());
}

const event = (data: string, type = "message", id?: string): ServerSentEvent => ({ event: type, data, id });

describe("ServerSentEventParser", () => {
  test("parses data lines, joins multi-line data with \\n and dispatches on a blank line", () => {
    expect(parseAll(["data: first\n\ndata: line one\ndata: line two\n\n"])).toEqual([
      event("first"),
      event("line one\nline two"),
    ]);
  });

  test.each([
    ["\\n", "\n"],
    ["\\r\\n", "\r\n"],
    ["\\r", "\r"],
  ])("accepts %s line endings", (_name, lineEnding) => {
    const stream = ["data: a", "data: b", "", "event: error", "data: c", "", ""].join(lineEnding);
    expect(parseAll([stream])).toEqual([event("a\nb"), event("c", "error")]);
  });

  test("gives the same events wherever the stream is split, including between \\r and \\n", () => {
    const stream =
      "\uFEFF: keep-alive\r\nid: 7\r\nevent: delta\r\ndata: 你好\r\ndata:  two spaces\r\n\r\n" +
      'data\r\n\r\ndata: {"delta":"🙂"}\n\ndata: last\r\r';
    const expected = [
      event("你好\n two spaces", "delta", "7"),
      event("", "message", "7"),
      event('{"delta":"🙂"}', "message", "7"),
      event("last", "message", "7"),
    ];
    expect(parseAll([stream])).toEqual(expected);
    for (let first = 0; first <= stream.length; first += 1) {
      for (let second = first; second <= stream.length; second += 7) {
        const pieces = [stream.slice(0, first), stream.slice(first, second), stream.slice(second)];
        expect(parseAll(pieces), `split at ${first} and ${second}`).toEqual(expected);
      }
    }
    // One character at a time.
    expect(parseAll([...stream])).toEqual(expected);
  });

  test("ignores comments, unknown fields and retry; strips exactly one space after the colon", () => {
    expect(parseAll([": comment\nretry: 1000\nfoo: bar\ndata:no space\ndata:  two\n\n"])).toEqual([
      event("no space\n two"),
    ]);
  });

  test("a blank line without data dispatches nothing and resets the event type", () => {
    expect(parseAll(["event: ping\n\ndata: x\n\n"])).toEqual([event("x")]);
  });

  test("dispatches a last event whose blank line never came (a deliberate leniency)", () => {
    expect(parseAll(["data: a\n\ndata: end of answer\n"])).toEqual([event("a"), event("end of answer")]);
    expect(parseAll(["data: unterminated"])).toEqual([event("unterminated")]);
  });

  test("a byte order mark is dropped only at the very start", () => {
    expect(parseAll(["", "\uFEFFdata: a\n\n", "data: \uFEFFb\n\n"])).toEqual([event("a"), event("\uFEFFb")]);
  });
});
