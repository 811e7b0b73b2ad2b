/**
 * The shared contract suite of ReplyGenerator (in the spirit of hono's router `common.case.test.ts`):
 * every implementation's test file calls `runGeneratorConformance` with a harness that builds the
 * generator against a scripted upstream. What the pipeline relies on is checked here once, the
 * same way for all:
 *
 * - a normal request yields text, in more than one piece, identically on every run;
 * - (fakes) the pieces concatenate to exactly the upstream's text, and the upstream received the
 *   message, the history (oldest first) and the system prompt;
 * - an abort, before or during the stream (also while the upstream is silent), ends the iteration
 *   within a second with GeneratorError, and nothing is yielded after it;
 * - a consumer that stops early (`break`) is released at once;
 * - (with an upstream) an HTTP error is GeneratorError carrying the status, and an answer without
 *   any text is GeneratorError too.
 *
 * Implementations without an upstream (demo) declare it through `capabilities`; the tests that do
 * not apply are then not defined at all (never skipped).
 */
import { describe, expect, test } from "vitest";
import { type ChatTurn, type GenerationRequest, GeneratorError, type ReplyGenerator } from "./types.ts";

/** What the scripted upstream does for one test. */
export type ConformanceScenario =
  /** Answers `text` in `pieces` pieces, `delayMs` apart. */
  | { kind: "text"; text: string; pieces: number; delayMs: number }
  /** Answers a first piece (`text`), then stays silent with the connection open. */
  | { kind: "stall"; text: string }
  /** Answers the HTTP error `status`. */
  | { kind: "failure"; status: number }
  /** Answers 200 with a well-formed stream that holds no text. */
  | { kind: "empty" };

/** A request as the upstream saw it, in the terms of GenerationRequest. */
export interface ReceivedRequest {
  message: string;
  history: ChatTurn[];
  systemPrompt: string;
}

export interface ConformanceSubject {
  generator: ReplyGenerator;
  /** Requests the upstream received since this subject was set up, oldest first (`recordsRequests`). */
  received?: () => ReceivedRequest[];
}

export interface ConformanceCapabilities {
  /** The output is the upstream's text (fakes); false when the generator writes its own (demo). */
  echoesUpstreamText: boolean;
  /** There is an upstream that can fail or answer nothing (openai, http); false for demo. */
  upstreamFailures: boolean;
  /** `received()` reports what the upstream got. */
  recordsRequests: boolean;
}

export interface ConformanceHarness {
  capabilities: ConformanceCapabilities;
  /** Builds a generator whose upstream follows `scenario`; called inside each test. */
  setup(scenario: ConformanceScenario): ConformanceSubject | Promise<ConformanceSubject>;
}

/** The request every conformance test sends: Chinese and English, with history. */
export const conformanceRequest: GenerationRequest = {
  userId: "site-user-42",
  accid: "u_site_user_42",
  message: "今天适合去公园吗？ Is today good for a walk in the park?",
  history: [
    { role: "user", content: "你好" },
    { role: "assistant", content: "你好！有什么可以帮你？" },
    { role: "user", content: "Tell me a joke." },
    { role: "assistant", content: "Why did the bot cross the road? To stream to the other side." },
  ],
  systemPrompt: "You are a test assistant. 你是测试助手。",
};

/** Chinese, English, an emoji (a surrogate pair) and a line break: what pieces must carry intact. */
export const conformanceText = "今天阳光很好，适合散步。🙂\nThe sun is out: a good day for a walk in the park.";

/** Abort must end the iteration within this long (the brief: promptly, well under a second). */
const PROMPT_MS = 1000;

export function runGeneratorConformance(name: string, harness: ConformanceHarness): void {
  const { capabilities } = harness;
  const normal: ConformanceScenario = { kind: "text", text: conformanceText, pieces: 6, delayMs: 5 };

  describe(`ReplyGenerator conformance: ${name}`, () => {
    test("yields non-empty text in more than one piece", async () => {
      const subject = await harness.setup({ kind: "text", text: conformanceText, pieces: 4, delayMs: 40 });
      const { pieces, error } = await collect(subject.generator, conformanceRequest);
      expect(error).toBeUndefined();
      expect(pieces.every((piece) => typeof piece === "string")).toBe(true);
      expect(pieces.join("").trim().length).toBeGreaterThan(0);
      // Streamed as produced, not buffered into one piece at the end.
      expect(pieces.length).toBeGreaterThan(1);
    });

    test("gives the same output for the same request", async () => {
      const first = await collect((await harness.setup(normal)).generator, conformanceRequest);
      const second = await collect((await harness.setup(normal)).generator, conformanceRequest);
      expect(first.error).toBeUndefined();
      expect(second.pieces.join("")).toBe(first.pieces.join(""));
    });

    test("keeps concurrent generations apart", async () => {
      const subject = await harness.setup(normal);
      const [first, second] = await Promise.all([
        collect(subject.generator, conformanceRequest),
        collect(subject.generator, conformanceRequest),
      ]);
      expect(first.error).toBeUndefined();
      expect(second.error).toBeUndefined();
      expect(second.pieces.join("")).toBe(first.pieces.join(""));
    });

    if (capabilities.echoesUpstreamText) {
      test("concatenated pieces equal the upstream's text exactly", async () => {
        const subject = await harness.setup(normal);
        const { pieces, error } = await collect(subject.generator, conformanceRequest);
        expect(error).toBeUndefined();
        expect(pieces.join("")).toBe(conformanceText);
      });
    }

    if (capabilities.recordsRequests) {
      test("passes the message, the history in order and the system prompt upstream", async () => {
        const subject = await harness.setup(normal);
        await collect(subject.generator, conformanceRequest);
        const received = subject.received?.() ?? [];
        expect(received).toHaveLength(1);
        expect(received[0]).toEqual({
          message: conformanceRequest.message,
          history: conformanceRequest.history,
          systemPrompt: conformanceRequest.systemPrompt,
        });
      });
    }

    test("throws GeneratorError at once, yielding nothing, when the signal is already aborted", async () => {
      const subject = await harness.setup(normal);
      const controller = new AbortController();
      controller.abort(new Error("aborted before the start"));
      const started = performance.now();
      const { pieces, error } = await collect(subject.generator, conformanceRequest, controller.signal);
      expect(performance.now() - started).toBeLessThan(PROMPT_MS);
      expect(pieces).toEqual([]);
      expect(error).toBeInstanceOf(GeneratorError);
      if (capabilities.recordsRequests) expect(subject.received?.()).toEqual([]);
    });

    test("stops within a second of an abort while the upstream is silent, and yields nothing after it", async () => {
      const subject = await harness.setup({ kind: "stall", text: "第一段 first piece" });
      const outcome = await abortAfterPieces(subject.generator, 1, 100);
      expect(outcome.piecesBeforeAbort).toBeGreaterThanOrEqual(1);
      expect(outcome.piecesAfterAbort).toBe(0);
      expect(outcome.error).toBeInstanceOf(GeneratorError);
      expect(outcome.endedAfterAbortMs).toBeLessThan(PROMPT_MS);
    });

    test("stops within a second of an abort while pieces are still arriving", async () => {
      const subject = await harness.setup({ kind: "text", text: conformanceText.repeat(4), pieces: 40, delayMs: 25 });
      const outcome = await abortAfterPieces(subject.generator, 2, 10);
      expect(outcome.piecesAfterAbort).toBe(0);
      expect(outcome.error).toBeInstanceOf(GeneratorError);
      expect(outcome.endedAfterAbortMs).toBeLessThan(PROMPT_MS);
    });

    test("releases a consumer that stops early at once", async () => {
      const subject = await harness.setup({ kind: "text", text: conformanceText.repeat(4), pieces: 40, delayMs: 25 });
      const controller = new AbortController();
      let received = 0;
      let stoppedAt = 0;
      for await (const _piece of subject.generator.generate(conformanceRequest, controller.signal)) {
        received += 1;
        stoppedAt = performance.now();
        break;
      }
      // `break` waits for the generator's cleanup (closing the upstream stream).
      expect(performance.now() - stoppedAt).toBeLessThan(PROMPT_MS);
      expect(received).toBe(1);
      // The pipeline aborts after it stops reading; that must be harmless now.
      controller.abort(new Error("reply finished"));
    });

    if (capabilities.upstreamFailures) {
      test.each([500, 401, 429])("turns an upstream HTTP %i into GeneratorError with that status", async (status) => {
        const subject = await harness.setup({ kind: "failure", status });
        const { pieces, error } = await collect(subject.generator, conformanceRequest);
        expect(pieces).toEqual([]);
        expect(error).toBeInstanceOf(GeneratorError);
        expect((error as GeneratorError).status).toBe(status);
      });

      test("turns an answer without any text into GeneratorError", async () => {
        const subject = await harness.setup({ kind: "empty" });
        const { pieces, error } = await collect(subject.generator, conformanceRequest);
        expect(pieces.join("")).toBe("");
        expect(error).toBeInstanceOf(GeneratorError);
      });
    }
  });
}

/** Runs a generation to its end; the error, if any, is returned rather than thrown. */
export async function collect(
  generator: ReplyGenerator,
  request: GenerationRequest,
  signal: AbortSignal = new AbortController().signal,
): Promise<{ pieces: string[]; error: unknown }> {
  const pieces: string[] = [];
  try {
    for await (const piece of generator.generate(request, signal)) pieces.push(piece);
    return { pieces, error: undefined };
  } catch (error) {
    return { pieces, error };
  }
}

/**
 * Consumes until `count` pieces arrived, then aborts `abortDelayMs` later from a timer (so the
 * generator is caught waiting, not between two pieces), and measures how long the end takes.
 */
async function abortAfterPieces(
  generator: ReplyGenerator,
  count: number,
  abortDelayMs: number,
): Promise<{ piecesBeforeAbort: number; piecesAfterAbort: number; error: unknown; endedAfterAbortMs: number }> {
  const controller = new AbortController();
  let abortedAt: number | undefined;
  let piecesBeforeAbort = 0;
  let piecesAfterAbort = 0;
  let error: unknown;
  try {
    for await (const _piece of generator.generate(conformanceRequest, controller.signal)) {
      if (abortedAt !== undefined) {
        piecesAfterAbort += 1;
        continue;
      }
      piecesBeforeAbort += 1;
      if (piecesBeforeAbort === count) {
        setTimeout(() => {
          abortedAt = performance.now();
          controller.abort(new Error("idle timeout"));
        }, abortDelayMs);
      }
    }
  } catch (caught) {
    error = caught;
  }
  const endedAt = performance.now();
  return {
    piecesBeforeAbort,
    piecesAfterAbort,
    error,
    endedAfterAbortMs: abortedAt === undefined ? Number.POSITIVE_INFINITY : endedAt - abortedAt,
  };
}
