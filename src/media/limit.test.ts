import { describe, expect, it } from "vitest";
import { createConcurrencyLimit } from "./limit.ts";

/** A piece of work the test finishes by hand. */
function manualWork(log: string[], name: string) {
  let finish!: () => void;
  let fail!: (error: Error) => void;
  const done = new Promise<string>((resolve, reject) => {
    finish = () => resolve(name);
    fail = reject;
  });
  return {
    run: () => {
      log.push(`start ${name}`);
      return done;
    },
    finish: () => finish(),
    fail: (error: Error) => fail(error),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("createConcurrencyLimit", () => {
  it("runs at most N at once and the rest in arrival order", async () => {
    const limit = createConcurrencyLimit(2);
    const log: string[] = [];
    const works = ["a", "b", "c", "d"].map((name) => manualWork(log, name));
    const results = works.map((work) => limit(work.run));
    const firstFailure = results[0]!.catch((error: Error) => error.message);
    await settle();
    expect(log).toEqual(["start a", "start b"]);
    works[1]!.finish();
    await settle();
    expect(log).toEqual(["start a", "start b", "start c"]);
    works[0]!.fail(new Error("broken download"));
    await settle();
    expect(log).toEqual(["start a", "start b", "start c", "start d"]);
    works[2]!.finish();
    works[3]!.finish();
    expect(await firstFailure).toBe("broken download");
    expect(await Promise.all(results.slice(1))).toEqual(["b", "c", "d"]);
  });

  it("frees its slots again", async () => {
    const limit = createConcurrencyLimit(1);
    for (let round = 0; round < 3; round += 1) {
      expect(await limit(async () => round)).toBe(round);
    }
    const log: string[] = [];
    const work = manualWork(log, "x");
    const pending = limit(work.run);
    await settle();
    expect(log).toEqual(["start x"]);
    work.finish();
    expect(await pending).toBe("x");
  });

  it("refuses a limit below one", () => {
    expect(() => createConcurrencyLimit(0)).toThrow(RangeError);
  });
});
