/**
 * NIM's frequency control (code 416), per path group. NIM counts limits per API category per app
 * (e.g. "user & relation" 100/s on standard plans, nim-protocol §3.2); the emulator models that with
 * one token bucket per group whose rate is read from the settings on every request, so a test can
 * tighten it at run time.
 */
import type { EmulatorSettings } from "./state.ts";

export type PathGroup = "user" | "message" | "other";

export function pathGroupOf(path: string): PathGroup {
  if (path.startsWith("user/")) return "user";
  if (path.startsWith("msg/")) return "message";
  // v2 message endpoints (im/v2/conversations/…/messages…) share the message category at NIM.
  if (path.startsWith("im/v2/conversations/")) return "message";
  return "other";
}

export class FrequencyControl {
  private readonly buckets = new Map<PathGroup, { tokens: number; updatedAt: number }>();

  constructor(
    private readonly settings: EmulatorSettings,
    private readonly now: () => number,
  ) {}

  /** True when the request may proceed; false means answer 416. */
  tryTake(path: string): boolean {
    const group = pathGroupOf(path);
    const rate = this.rateOf(group);
    if (!Number.isFinite(rate)) return true;
    const now = this.now();
    const bucket = this.buckets.get(group) ?? { tokens: rate, updatedAt: now };
    // Burst size equals one second's worth, like a per-second counter at NIM.
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.updatedAt) / 1000) * rate);
    bucket.updatedAt = now;
    this.buckets.set(group, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forgets the buckets, e.g. after changing the limits. */
  reset(): void {
    this.buckets.clear();
  }

  private rateOf(group: PathGroup): number {
    if (group === "user") return this.settings.frequencyLimits.userPerSecond;
    if (group === "message") return this.settings.frequencyLimits.messagePerSecond;
    return Number.POSITIVE_INFINITY;
  }
}
