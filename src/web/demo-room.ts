/**
 * The demo page's group room: one NIM advanced team where the demo users and every bot meet, so
 * `@` works as in a real app (contract: "Teams"). A real site does the same with NIM's server API:
 * `team/create.action` once (owner, members, `magree` 0) and `team/add.action` for each user who
 * joins; the bots must be members, or NIM refuses their replies ("not in team", 804).
 *
 * Created lazily by the first user who opens the room (the bots' accounts exist by then: the bridge
 * ensures them at start); later users are added. Only demo code: `npm run serve` never mounts it.
 *
 * @example
 * const room = createDemoRoom({ api, owner: "advisor_bot", bots: ["advisor_bot", "tutor_bot"], name: "演示群" });
 * await room.join("u_alice"); // { tid: "1500000000", name: "演示群" }
 */

/** The two team calls the room needs (NIM's classic API, or the emulator's state directly). */
export interface DemoTeamApi {
  /** team/create.action with `magree` 0; resolves with the tid. */
  createTeam(input: { name: string; owner: string; members: string[] }): Promise<string>;
  /** team/add.action with `magree` 0. */
  addMembers(input: { tid: string; owner: string; members: string[] }): Promise<void>;
}

export interface DemoRoomInfo {
  tid: string;
  name: string;
}

export interface DemoRoom {
  /** Makes `accid` a member (creating the room on first use) and returns the room. */
  join(accid: string): Promise<DemoRoomInfo>;
}

export interface DemoRoomOptions {
  api: DemoTeamApi;
  /** The team's owner: the default bot (a demo user could leave; the bot stays). */
  owner: string;
  /** Every bot accid (the owner may be among them). */
  bots: string[];
  name: string;
}

export function createDemoRoom(options: DemoRoomOptions): DemoRoom {
  const owner = options.owner.toLowerCase();
  const bots = [...new Set(options.bots.map((accid) => accid.toLowerCase()))].filter((accid) => accid !== owner);
  /** The creation in flight or done; cleared when it failed, so the next join tries again. */
  let created: Promise<string> | undefined;
  /** Accids known to be members, so a reload does not call team/add again. */
  const members = new Set<string>([owner, ...bots]);

  return {
    async join(accid) {
      const member = accid.toLowerCase();
      let creating = false;
      if (!created) {
        creating = true;
        created = options.api.createTeam({ name: options.name, owner, members: [...bots, member] });
        created.catch(() => {
          created = undefined;
        });
      }
      const tid = await created;
      if (creating) members.add(member);
      if (!members.has(member)) {
        await options.api.addMembers({ tid, owner, members: [member] });
        members.add(member);
      }
      return { tid, name: options.name };
    },
  };
}
