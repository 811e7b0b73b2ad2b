/**
 * The emulator's advanced teams (高级群): the rules behind `team/create.action`, `team/add.action`,
 * `team/kick.action` and team sends (`sendMsg` with `ope` 1, the gateway's team send), shared by
 * the classic API and the gateway. Parameter names follow NIM's classic API and the official Java
 * server SDK (`CreateTeamRequestV1`, `AddTeamRequestV1`, `KickTeamRequestV1`: `tname`, `owner`,
 * `members` as a JSON array, `msg`, `magree`, `joinmode`, `tid`, `member`).
 *
 * NIM codes used: 803 team not found, 804 "not in team" (the sender or the member is not in the
 * team, nim-protocol §10.3), 802 no permission, 801 member limit, 414 bad parameters. Which of
 * them NIM answers in every case is partly a guess (labelled below); the bridge treats each as
 * final.
 *
 * Not modelled: invitations that wait for the invitee's consent (`magree` 1 is refused with a
 * message saying so), managers, muting, super teams, team notifications in the history.
 */
import { ClassicApiError } from "./errors.ts";
import type { EmulatorTeam, NimEmulatorState } from "./state.ts";

/** NIM's default member limit of an advanced team (console-configurable up to thousands). */
export const TEAM_MEMBER_LIMIT = 200;
/**
 * `tMembers` is copied only for teams of at most this many members (nim-protocol §10.1 #2): the
 * member list of a big team would dwarf the message.
 */
export const TEAM_MEMBERS_COPY_LIMIT = 200;

/** A team that exists, else 803. */
export function requireTeam(state: NimEmulatorState, tid: string): EmulatorTeam {
  const team = /^\d{1,20}$/.test(tid) ? state.findTeam(tid) : undefined;
  if (!team) throw new ClassicApiError(803, "team not exist");
  return team;
}

/** The team a member may send to: 803 when it does not exist, 804 when `accid` is not a member. */
export function requireTeamSender(state: NimEmulatorState, tid: string, accid: string): EmulatorTeam {
  const team = requireTeam(state, tid);
  if (!team.members.includes(accid.toLowerCase())) throw new ClassicApiError(804, "not in team");
  return team;
}

/** team/create.action: the owner and every member must exist; members become members at once. */
export function createTeam(
  state: NimEmulatorState,
  input: { name: string; owner: string; members: string[]; consentRequired: boolean },
): EmulatorTeam {
  refuseConsentMode(input.consentRequired);
  const owner = state.findAccount(input.owner);
  if (!owner) throw new ClassicApiError(414, "owner not exist");
  const members = requireAccounts(state, input.members);
  if (new Set([owner.accid, ...members]).size > TEAM_MEMBER_LIMIT) {
    throw new ClassicApiError(801, "team member count over limit");
  }
  return state.createTeam({ name: input.name, owner: owner.accid, members });
}

/** team/add.action: only the owner adds (managers are not modelled); existing members are kept once. */
export function addTeamMembers(
  state: NimEmulatorState,
  input: { tid: string; owner: string; members: string[]; consentRequired: boolean },
): EmulatorTeam {
  refuseConsentMode(input.consentRequired);
  const team = requireTeam(state, input.tid);
  if (team.owner !== input.owner.toLowerCase()) throw new ClassicApiError(802, "no permission: not the owner");
  const members = requireAccounts(state, input.members);
  const joined = members.filter((accid) => !team.members.includes(accid));
  if (team.members.length + joined.length > TEAM_MEMBER_LIMIT) {
    throw new ClassicApiError(801, "team member count over limit");
  }
  team.members.push(...joined);
  state.recordTeamChange(team);
  return team;
}

/**
 * team/kick.action: the owner removes members. Accounts that are not members are reported back
 * (`faccid`, the shape the Java SDK reads) rather than failing the call (a guess at NIM's choice).
 */
export function kickTeamMembers(
  state: NimEmulatorState,
  input: { tid: string; owner: string; members: string[] },
): { team: EmulatorTeam; notMembers: string[] } {
  const team = requireTeam(state, input.tid);
  const owner = input.owner.toLowerCase();
  if (team.owner !== owner) throw new ClassicApiError(802, "no permission: not the owner");
  const wanted = input.members.map((accid) => accid.toLowerCase());
  if (wanted.includes(owner)) throw new ClassicApiError(414, "the owner cannot be kicked");
  const notMembers = wanted.filter((accid) => !team.members.includes(accid));
  team.members = team.members.filter((accid) => !wanted.includes(accid));
  state.recordTeamChange(team);
  return { team, notMembers };
}

/**
 * NIM's `tMembers` value: the member list as an *unquoted* bracketed list, e.g. "[zhangsan, lisi]"
 * (nim-protocol §10.1 #2), or undefined for a team too big to list.
 */
export function teamMembersCopyValue(team: EmulatorTeam): string | undefined {
  if (team.members.length > TEAM_MEMBERS_COPY_LIMIT) return undefined;
  return `[${team.members.join(", ")}]`;
}

/** A classic-API JSON array of accids (`members`), 414 for anything else. */
export function parseAccidList(text: string, name: string, limit: number): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ClassicApiError(414, `${name} is not a JSON array`);
  }
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === "string" && item !== "")) {
    throw new ClassicApiError(414, `${name} is not a JSON array of accids`);
  }
  if (parsed.length > limit) throw new ClassicApiError(414, `${name} too many, max ${limit}`);
  return parsed as string[];
}

function requireAccounts(state: NimEmulatorState, accids: string[]): string[] {
  const found: string[] = [];
  for (const accid of accids) {
    const account = state.findAccount(accid);
    if (!account) throw new ClassicApiError(414, "members contain an accid that does not exist");
    if (!found.includes(account.accid)) found.push(account.accid);
  }
  return found;
}

function refuseConsentMode(consentRequired: boolean): void {
  if (consentRequired) {
    throw new ClassicApiError(414, "magree=1 (invitees must agree) is not modelled by the emulator; use magree=0");
  }
}
