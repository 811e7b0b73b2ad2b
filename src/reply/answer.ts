/**
 * The answer stage of a reply: generator → think filter → resume filter → segmenter → output
 * moderation gate → writer. Returns how the answer ended; the finisher sends the final.
 *
 * With output moderation on, the last characters of each segment wait for the next one (longer
 * than any sensible keyword), so a term split across two deltas is caught before any part of it
 * reaches the user. A blocked window cancels the reply with reason `blocked`: it ends with status
 * `blocked`, is audited, and is not a generator error.
 *
 * @module
 */
import type { Logger } from "pino";
import type { GenerationRequest, ReplyGenerator } from "../generators/types.ts";
import { createOutputWindowChecker } from "../moderation/index.ts";
import type { Moderator } from "../moderation/types.ts";
import { type CancelReason, cancelReasonOf } from "./cancellation.ts";
import type { Clock } from "./clock.ts";
import { createResumeFilter, runGeneration } from "./generation.ts";
import { apologyText, blockedText } from "./messages.ts";
import type { ReplyObserver } from "./observer.ts";
import { Segmenter } from "./segmenter.ts";
import { graphemeClusters } from "./text-units.ts";
import { createThinkFilter } from "./think-filter.ts";
import type { ReplyStatus } from "./transport/types.ts";
import type { ReplyWriter } from "./writer.ts";

/** Grapheme clusters held back at the end of each segment while output moderation is on. */
const HOLDBACK_CLUSTERS = 50;
/** Encoded room the held-back clusters may need in a segment body (escapes, emoji sequences). */
const HOLDBACK_BUDGET = 600;
/** How often a quiet reply checks whether its transport needs a keep-alive. */
const KEEP_ALIVE_CHECK_MS = 5_000;

export type AnswerResult =
  /** The answer ended (well or not); send the final with this status. */
  | { kind: "ended"; status: ReplyStatus }
  /** Work on this reply must stop here without a final (shutdown, lost lease, failed delivery). */
  | { kind: "interrupted"; reason: CancelReason };

export interface AnswerOptions {
  writer: ReplyWriter;
  generator: ReplyGenerator;
  request: GenerationRequest;
  replyTo: string;
  signal: AbortSignal;
  cancel: (reason: CancelReason) => void;
  pacingMs: number;
  idleTimeoutMs: number;
  totalTimeoutMs: number;
  clock: Clock;
  logger: Pick<Logger, "warn">;
  observer?: ReplyObserver;
  moderator?: Moderator;
  /** Audit a blocked output window. */
  onBlocked: (reason: string) => Promise<void>;
}

const INTERRUPTING: ReadonlySet<CancelReason> = new Set(["shutdown", "lease-lost", "delivery-failed"]);

export async function produceAnswer(options: AnswerOptions): Promise<AnswerResult> {
  const { writer, clock, observer } = options;
  const outputChecker = options.moderator
    ? createOutputWindowChecker(options.moderator, { context: { accid: options.request.accid } })
    : undefined;
  let heldBack = "";
  let blockedReason: string | undefined;
  const segmenter = new Segmenter({
    pacingMs: options.pacingMs,
    clock,
    // Held-back text rides along with the next delta, so leave room for it in the body.
    maxDeltaCharacters: writer.maxDeltaCharacters() - (outputChecker ? HOLDBACK_BUDGET : 0),
    emit: async (delta) => {
      if (!outputChecker) return writer.writeSegment(delta);
      const verdict = await outputChecker.check(delta);
      if (!verdict.allowed) {
        // Neither the blocked window nor the held-back text before it is ever sent.
        blockedReason = verdict.reason;
        heldBack = "";
        options.cancel("blocked");
        return;
      }
      const clusters = Array.from(graphemeClusters(heldBack + delta), (cluster) => cluster.segment);
      const keep = Math.min(HOLDBACK_CLUSTERS, clusters.length);
      heldBack = clusters.slice(clusters.length - keep).join("");
      const release = clusters.slice(0, clusters.length - keep).join("");
      if (release) await writer.writeSegment(release);
    },
  });
  // A cancelled reply sends nothing more from the segmenter (a stop keeps only what was sent).
  const onAbort = () => segmenter.abort();
  // While the generator is quiet, a transport with a gap rule gets its keep-alives (checked as often
  // as the transport asks, else every few seconds; the writer decides whether one is due and
  // serializes it with the segments).
  let keepAliveHandle: unknown;
  const checkKeepAlive = () => {
    keepAliveHandle = clock.setTimeout(() => {
      writer
        .keepAliveIfDue()
        .catch((error: unknown) =>
          options.logger.warn({ err: error, msgidServer: options.replyTo }, "keep-alive failed"),
        )
        .finally(() => {
          if (!options.signal.aborted && keepAliveHandle !== undefined) checkKeepAlive();
        });
    }, writer.keepAliveCheckMs() ?? KEEP_ALIVE_CHECK_MS);
  };
  checkKeepAlive();
  options.signal.addEventListener("abort", onAbort, { once: true });

  const resume = createResumeFilter(writer.text);
  const think = createThinkFilter();
  const push = (piece: string) => {
    const visible = resume.push(piece);
    if (visible) segmenter.push(visible);
  };
  const startedAt = clock.now();
  let firstTokenSeen = false;
  const outcome = await runGeneration({
    generator: options.generator,
    request: options.request,
    signal: options.signal,
    idleTimeoutMs: options.idleTimeoutMs,
    totalTimeoutMs: options.totalTimeoutMs,
    clock,
    onPiece: (piece) => {
      if (!firstTokenSeen) {
        firstTokenSeen = true;
        observer?.firstToken?.(options.replyTo, clock.now() - startedAt);
      }
      push(think.push(piece));
    },
  });
  if (outcome.kind === "completed") push(think.flush());
  try {
    await segmenter.end();
  } catch (error) {
    // The writer cancelled the reply (delivery failed, lease lost) before throwing.
    if (!options.signal.aborted) throw error;
  } finally {
    options.signal.removeEventListener("abort", onAbort);
    clock.clearTimeout(keepAliveHandle);
    keepAliveHandle = undefined;
  }
  const cancelled = cancelReasonOf(options.signal);
  if (cancelled && INTERRUPTING.has(cancelled)) return { kind: "interrupted", reason: cancelled };
  if (cancelled === "stopped" || cancelled === "recalled") return { kind: "ended", status: "stopped" };
  if (cancelled === "blocked") {
    await options.onBlocked(blockedReason ?? "output");
    return withApology(options, "blocked", blockedText);
  }
  if (heldBack) {
    // Everything held back was checked with the deltas around it; the stream is over.
    const rest = heldBack;
    heldBack = "";
    const result = await writeOrInterrupt(options, rest);
    if (result) return result;
  }
  if (outcome.kind === "timeout" || outcome.kind === "failed") {
    observer?.generatorError?.(outcome.kind);
    options.logger.warn(
      { msgidServer: options.replyTo, outcome: outcome.kind, reason: outcome.reason },
      "generation failed",
    );
    return withApology(options, "error", apologyText(outcome.kind === "timeout" ? "timeout" : "error"));
  }
  if (writer.text.trim() === "") return withApology(options, "error", apologyText("error"));
  return { kind: "ended", status: "ok" };
}

/** The apology is part of the visible answer, so it goes as a delta like any text. */
async function withApology(options: AnswerOptions, status: ReplyStatus, apology: string): Promise<AnswerResult> {
  const separator = options.writer.text === "" ? "" : "\n\n";
  return (await writeOrInterrupt(options, separator + apology)) ?? { kind: "ended", status };
}

async function writeOrInterrupt(options: AnswerOptions, text: string): Promise<AnswerResult | undefined> {
  try {
    await options.writer.writeSegment(text);
    return undefined;
  } catch (error) {
    const reason = cancelReasonOf(options.signal);
    if (reason && INTERRUPTING.has(reason)) return { kind: "interrupted", reason };
    throw error;
  }
}
