import { describe, expect, it } from "vitest";
import { isResetCommand, isStopCommand, type TurnCommand, turnCommandOf } from "./commands.ts";

describe("turnCommandOf", () => {
  it.each<[string, TurnCommand | undefined]>([
    ["/stop", "stop"],
    ["  /stop\n", "stop"],
    ["/STOP", "stop"],
    ["/Stop", "stop"],
    ["停止", "stop"],
    [" 停止 ", "stop"],
    ["\u3000停止\u3000", "stop"],
    ["／ｓｔｏｐ", "stop"],
    ["/reset", "reset"],
    ["/RESET ", "reset"],
    ["重置", "reset"],
    ["／reset", "reset"],
    ["", undefined],
    ["   ", undefined],
    ["stop", undefined],
    ["/stopp", undefined],
    ["/ stop", undefined],
    ["please /stop", undefined],
    ["/stop now", undefined],
    ["停止吧", undefined],
    ["停 止", undefined],
    ["停止。", undefined],
    ["/reset and /stop", undefined],
    [`${" ".repeat(100)}/stop`, undefined],
    ["/stop\u200b", undefined],
  ])("%j → %s", (text, expected) => {
    expect(turnCommandOf(text)).toBe(expected);
  });

  it("answers the yes/no questions the same way", () => {
    expect(isStopCommand("停止")).toBe(true);
    expect(isStopCommand("重置")).toBe(false);
    expect(isResetCommand("/reset")).toBe(true);
    expect(isResetCommand("/stop")).toBe(false);
  });

  it("is quick on a long ordinary message", () => {
    expect(turnCommandOf("x".repeat(1_000_000))).toBeUndefined();
  });
});
