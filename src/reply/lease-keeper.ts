/**
 * Keeps a claimed inbox row's lease alive while a reply runs: renews it every third of the lease
 * (so one late renewal does not lose it) by the database's clock. When a renewal finds the lease
 * taken over, or renewals keep failing for a whole lease (the database is gone), the reply is
 * cancelled with `lease-lost`: another worker owns it now or will once the lease runs out.
 *
 * @module
 */
import type { Logger } from "pino";
import type { Clock } from "./clock.ts";

export interface LeaseKeeperOptions {
  renew: () => Promise<boolean>;
  leaseMs: number;
  clock: Clock;
  logger: Pick<Logger, "warn">;
  onLost: () => void;
}

export interface LeaseKeeper {
  stop(): void;
}

export function startLeaseKeeper(options: LeaseKeeperOptions): LeaseKeeper {
  const interval = Math.max(100, Math.floor(options.leaseMs / 3));
  let lastRenewedAt = options.clock.now();
  let stopped = false;
  let handle: unknown;
  const schedule = () => {
    handle = options.clock.setTimeout(tick, interval);
    // The system clock's handle is a Node timer: it must not keep the process alive.
    (handle as { unref?: () => void } | undefined)?.unref?.();
  };
  const tick = () => {
    if (stopped) return;
    options
      .renew()
      .then((renewed) => {
        if (stopped) return;
        if (!renewed) {
          stopped = true;
          options.onLost();
          return;
        }
        lastRenewedAt = options.clock.now();
        schedule();
      })
      .catch((error: unknown) => {
        if (stopped) return;
        options.logger.warn({ err: error }, "lease renewal failed");
        if (options.clock.now() - lastRenewedAt >= options.leaseMs) {
          stopped = true;
          options.onLost();
          return;
        }
        schedule();
      });
  };
  schedule();
  return {
    stop() {
      stopped = true;
      options.clock.clearTimeout(handle);
    },
  };
}
