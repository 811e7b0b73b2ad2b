import { describe, expect, it } from "vitest";
import { startLeaseKeeper } from "./lease-keeper.ts";
import { ManualClock, settlePromises } from "./manual-clock.ts";

const logger = { warn: () => {} };

describe("lease keeper", () => {
  it("renews every third of the lease while the renewal succeeds", async () => {
    const clock = new ManualClock();
    let renewals = 0;
    let lost = false;
    const keeper = startLeaseKeeper({
      renew: async () => {
        renewals += 1;
        return true;
      },
      leaseMs: 3_000,
      clock,
      logger,
      onLost: () => {
        lost = true;
      },
    });
    for (let step = 0; step < 6; step += 1) {
      clock.advance(1_000);
      await settlePromises();
    }
    expect(renewals).toBe(6);
    expect(lost).toBe(false);
    keeper.stop();
    clock.advance(5_000);
    await settlePromises();
    expect(renewals).toBe(6);
  });

  it("reports the lease lost as soon as a renewal finds it taken over", async () => {
    const clock = new ManualClock();
    let lost = 0;
    startLeaseKeeper({ renew: async () => false, leaseMs: 3_000, clock, logger, onLost: () => (lost += 1) });
    clock.advance(1_000);
    await settlePromises();
    clock.advance(10_000);
    await settlePromises();
    expect(lost).toBe(1);
  });

  it("rides out a failing renewal, but gives the lease up once failures last a whole lease", async () => {
    const clock = new ManualClock();
    let lost = 0;
    let failures = 0;
    startLeaseKeeper({
      renew: async () => {
        failures += 1;
        throw new Error("database unavailable");
      },
      leaseMs: 3_000,
      clock,
      logger,
      onLost: () => (lost += 1),
    });
    clock.advance(1_000);
    await settlePromises();
    clock.advance(1_000);
    await settlePromises();
    expect(lost).toBe(0); // two failures inside one lease: keep going
    clock.advance(1_000);
    await settlePromises();
    expect(failures).toBe(3);
    expect(lost).toBe(1);
  });
});
