import { describe, expect, it } from "vitest";
import { createDemoRoom, type DemoTeamApi } from "./demo-room.ts";

/** A team API that records its calls; `failCreates` makes that many creations fail first. */
function recordingApi(failCreates = 0) {
  const calls: string[] = [];
  let failures = failCreates;
  const api: DemoTeamApi = {
    async createTeam(input) {
      calls.push(`create ${input.owner} [${input.members.join(",")}] ${input.name}`);
      if (failures-- > 0) throw new Error("NIM is down");
      return "1500000000";
    },
    async addMembers(input) {
      calls.push(`add ${input.tid} ${input.owner} [${input.members.join(",")}]`);
    },
  };
  return { api, calls };
}

describe("createDemoRoom", () => {
  it("creates the room with every bot at the first join and adds later users once", async () => {
    const { api, calls } = recordingApi();
    const room = createDemoRoom({ api, owner: "Advisor_Bot", bots: ["advisor_bot", "tutor_bot"], name: "演示群" });
    expect(await room.join("u_alice")).toEqual({ tid: "1500000000", name: "演示群" });
    expect(await room.join("U_ALICE")).toEqual({ tid: "1500000000", name: "演示群" });
    await room.join("u_bob");
    await room.join("u_bob");
    expect(calls).toEqual(["create advisor_bot [tutor_bot,u_alice] 演示群", "add 1500000000 advisor_bot [u_bob]"]);
  });

  it("creates the room once when two users arrive together", async () => {
    const { api, calls } = recordingApi();
    const room = createDemoRoom({ api, owner: "advisor_bot", bots: ["advisor_bot"], name: "r" });
    await Promise.all([room.join("u_alice"), room.join("u_bob"), room.join("u_alice")]);
    expect(calls).toEqual(["create advisor_bot [u_alice] r", "add 1500000000 advisor_bot [u_bob]"]);
  });

  it("tries again after a failed creation", async () => {
    const { api, calls } = recordingApi(1);
    const room = createDemoRoom({ api, owner: "advisor_bot", bots: [], name: "r" });
    await expect(room.join("u_alice")).rejects.toThrow(/NIM is down/);
    expect(await room.join("u_alice")).toMatchObject({ tid: "1500000000" });
    expect(calls).toHaveLength(2);
  });
});
