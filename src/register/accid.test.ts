import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { accidForSiteUser, isNimAccid, NIM_ACCID_MAX_LENGTH } from "./accid.ts";

function hashed(siteUserId: string): string {
  return `h_${createHash("sha256").update(siteUserId, "utf8").digest("hex").slice(0, 30)}`;
}

describe("accidForSiteUser", () => {
  it("keeps a plain lower-case id readable with the u_ prefix", () => {
    expect(accidForSiteUser("alice")).toBe("u_alice");
    expect(accidForSiteUser("42")).toBe("u_42");
    expect(accidForSiteUser("a")).toBe("u_a");
  });

  it("keeps '@', '.', '_' and '-' (all valid in an accid)", () => {
    expect(accidForSiteUser("bob@example.com")).toBe("u_bob@example.com");
    expect(accidForSiteUser("first.last-2_x")).toBe("u_first.last-2_x");
  });

  it("hashes upper-case ids instead of folding them, so Bob and bob stay two users", () => {
    expect(accidForSiteUser("bob")).toBe("u_bob");
    expect(accidForSiteUser("Bob")).toBe(hashed("Bob"));
    expect(accidForSiteUser("Bob")).not.toBe(accidForSiteUser("bob"));
    expect(accidForSiteUser("BOB")).not.toBe(accidForSiteUser("Bob"));
  });

  it("uses the plain form up to 30 characters and hashes from 31 on", () => {
    const thirty = "a".repeat(30);
    const thirtyOne = "a".repeat(31);
    expect(accidForSiteUser(thirty)).toBe(`u_${thirty}`);
    expect(accidForSiteUser(thirty)).toHaveLength(NIM_ACCID_MAX_LENGTH);
    expect(accidForSiteUser(thirtyOne)).toBe(hashed(thirtyOne));
    expect(accidForSiteUser(thirtyOne)).toHaveLength(NIM_ACCID_MAX_LENGTH);
  });

  it("hashes unicode ids to 32 lower-case characters NIM accepts", () => {
    for (const id of ["用户42", "Ünïcödé", "😀", "مرحبا", "a b", "tab\tinside", "x".repeat(128)]) {
      const accid = accidForSiteUser(id);
      expect(accid).toBe(hashed(id));
      expect(accid).toMatch(/^h_[0-9a-f]{30}$/);
      expect(isNimAccid(accid)).toBe(true);
    }
  });

  it("matches the documented example vector", () => {
    expect(accidForSiteUser("Alice")).toBe("h_3bc51062973c458d5a6f2d8d64a023");
    expect(accidForSiteUser("用户42")).toBe("h_eaf864b3d6ca7482c28425803c293e");
  });

  it("is deterministic and never lets the two forms meet", () => {
    expect(accidForSiteUser("Carol")).toBe(accidForSiteUser("Carol"));
    // A plain id that looks like a hashed accid still gets the u_ prefix, so it cannot equal one.
    const lookalike = hashed("Carol").slice(0, 30);
    expect(accidForSiteUser(lookalike)).toBe(`u_${lookalike}`);
    // And the full 32-character lookalike is too long for the plain form: hashed, not copied.
    expect(accidForSiteUser(hashed("Carol"))).toBe(hashed(hashed("Carol")));
    expect(accidForSiteUser(hashed("Carol"))).not.toBe(hashed("Carol"));
  });

  it("gives distinct accids to many distinct ids", () => {
    const ids = new Set<string>();
    const accids = new Set<string>();
    for (let index = 0; index < 5000; index++) {
      for (const id of [`user${index}`, `User${index}`, `用户${index}`, `${"x".repeat(30)}${index}`]) {
        ids.add(id);
        accids.add(accidForSiteUser(id));
      }
    }
    expect(accids.size).toBe(ids.size);
  });

  it("refuses the empty id and ids with lone surrogates (they would hash alike)", () => {
    expect(() => accidForSiteUser("")).toThrow(TypeError);
    expect(() => accidForSiteUser("a\uD800")).toThrow(/well-formed/);
    expect(() => accidForSiteUser("\uDC00b")).toThrow(/well-formed/);
    // A proper surrogate pair is fine.
    expect(accidForSiteUser("\uD83D\uDE00")).toBe(hashed("😀"));
  });
});
