/**
 * An incremental parser of `text/event-stream` as specified by the HTML standard
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 * Text is pushed in arbitrary pieces (a network chunk may end anywhere, even between the `\r` and
 * `\n` of one line break) and complete events come out.
 *
 * One deliberate leniency: at the end of the stream an event whose blank line never came is still
 * dispatched (the standard drops it). Hand-written back ends often end with `data: …\n` and close,
 * and dropping the last words of an answer is worse than accepting an unterminated event.
 */

export interface ServerSentEvent {
  /** The `event:` field; "message" when absent, as in the standard. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last `id:` seen, if any. */
  id: string | undefined;
}

export class ServerSentEventParser {
  /** The unfinished last line of what was pushed so far. */
  private partialLine = "";
  /** The previous piece ended with "\r": a "\n" starting the next piece belongs to that break. */
  private skipLineFeed = false;
  private atStreamStart = true;
  private dataLines: string[] = [];
  private eventType = "";
  private lastEventId: string | undefined;

  /** Feeds decoded text; returns the events completed by it, in order. */
  push(text: string): ServerSentEvent[] {
    let input = text;
    if (this.skipLineFeed && input.length > 0) {
      if (input.startsWith("\n")) input = input.slice(1);
      this.skipLineFeed = false;
    }
    if (this.atStreamStart && input.length > 0) {
      // A byte order mark may start the stream and is not part of the first field name.
      if (input.startsWith("\uFEFF")) input = input.slice(1);
      this.atStreamStart = false;
    }
    const events: ServerSentEvent[] = [];
    let lineStart = 0;
    for (let index = 0; index < input.length; index += 1) {
      const character = input.charCodeAt(index);
      if (character !== 0x0a && character !== 0x0d) continue;
      const line = this.partialLine + input.slice(lineStart, index);
      this.partialLine = "";
      if (character === 0x0d) {
        if (index + 1 < input.length) {
          if (input.charCodeAt(index + 1) === 0x0a) index += 1;
        } else {
          this.skipLineFeed = true;
        }
      }
      lineStart = index + 1;
      this.processLine(line, events);
    }
    this.partialLine += input.slice(lineStart);
    return events;
  }

  /** Call at the end of the stream; returns a last event left without its blank line (see above). */
  end(): ServerSentEvent[] {
    const events: ServerSentEvent[] = [];
    if (this.partialLine !== "") {
      const line = this.partialLine;
      this.partialLine = "";
      this.processLine(line, events);
    }
    this.processLine("", events);
    return events;
  }

  private processLine(line: string, events: ServerSentEvent[]): void {
    if (line === "") {
      // A blank line dispatches; without data lines there is nothing to dispatch, but the event
      // type still resets, exactly as the standard says.
      if (this.dataLines.length > 0) {
        events.push({ event: this.eventType || "message", data: this.dataLines.join("\n"), id: this.lastEventId });
      }
      this.dataLines = [];
      this.eventType = "";
      return;
    }
    if (line.startsWith(":")) return; // A comment, typically a keep-alive.
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    // Exactly one space after the colon is syntax; further spaces are data (a token " world").
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.dataLines.push(value);
        break;
      case "event":
        this.eventType = value;
        break;
      case "id":
        if (!value.includes("\u0000")) this.lastEventId = value;
        break;
      default:
        // `retry` only matters to a reconnecting EventSource; unknown fields are ignored by the standard.
        break;
    }
  }
}
