/**
 * The one rule that turns a site user id into a NIM accid.
 *
 * NIM accids are at most 32 characters of `a-z 0-9 _ @ . -` and NIM stores them lower-cased
 * (`user/create.action`, nim-protocol.md §2.1). The site's user ids are arbitrary strings, so the
 * rule has to be:
 *
 * - **deterministic**: the same user gets the same accid across calls, restarts and instances,
 *   with no lookup needed (an instance that lost its database still derives the same accid and
 *   then takes over the NIM account on "already register");
 * - **injective**: two different site users never share an accid, which would hand one user's
 *   conversation to another.
 *
 * The rule:
 *
 * 1. If the id already matches `/^[a-z0-9_@.-]{1,30}$/` it is used as is: `u_<id>` (at most
 *    2 + 30 = 32 characters). Readable accids make support and log reading easier.
 * 2. Otherwise: `h_` + the first 30 lowercase hex characters of sha256(UTF-8 of the id), always
 *    32 characters.
 *
 * Why this is injective:
 *
 * - Within form 1 the id is copied verbatim, so different ids give different accids.
 * - Forms 1 and 2 never meet, because their prefixes differ (`u_` vs `h_`). This is also why
 *   `"Bob"` and `"bob"` get different accids: `"bob"` is form 1 (`u_bob`), `"Bob"` has an
 *   upper-case letter, which NIM would silently fold to lower case, so it is hashed instead.
 *   Lower-casing it would have merged two site users into one NIM account.
 * - Within form 2, 30 hex characters are 120 bits of sha256. sha256 has no known collisions and
 *   truncation keeps it uniform, so by the birthday bound the chance that any two of n hashed ids
 *   collide is about n² / 2^121: for a billion users (n = 10^9) about 4 × 10^-19. That is far
 *   below the chance of a disk silently flipping the bit that stores the account, so the rule is
 *   treated as injective.
 *
 * UTF-8 encoding is injective only on well-formed strings: Node replaces every lone UTF-16
 * surrogate with U+FFFD before hashing, so two ids that differ only in their lone surrogates would
 * hash alike. Such ids (and the empty id) are therefore refused here, not just by the route.
 *
 * Changing this rule orphans every existing NIM account, so it must never change.
 *
 * @example
 * accidForSiteUser("alice");            // "u_alice"
 * accidForSiteUser("Alice");            // "h_3bc51062973c458d5a6f2d8d64a023" (32 characters)
 * accidForSiteUser("用户42");           // "h_eaf864b3d6ca7482c28425803c293e"
 */
import { createHash } from "node:crypto";

/** The longest accid NIM accepts. */
export const NIM_ACCID_MAX_LENGTH = 32;

/** Site user ids that are already valid, lower-case accid material and short enough for `u_`. */
const PLAIN_SITE_USER_ID = /^[a-z0-9_@.-]{1,30}$/;

/** With the `u` flag a well-formed surrogate pair is one code point, so this matches only lone halves. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Prefix of accids that carry the site user id verbatim. */
export const PLAIN_ACCID_PREFIX = "u_";
/** Prefix of accids derived from sha256 of the site user id. */
export const HASHED_ACCID_PREFIX = "h_";
/** 30 hex characters = 120 bits; with the 2-character prefix exactly NIM's 32-character limit. */
const HASH_HEX_LENGTH = 30;

/** The accid of a site user. Throws a TypeError for an empty id or one with lone surrogates. */
export function accidForSiteUser(siteUserId: string): string {
  if (siteUserId.length === 0) throw new TypeError("site user id must not be empty");
  if (LONE_SURROGATE.test(siteUserId)) throw new TypeError("site user id must be well-formed Unicode");
  if (PLAIN_SITE_USER_ID.test(siteUserId)) return PLAIN_ACCID_PREFIX + siteUserId;
  const digest = createHash("sha256").update(siteUserId, "utf8").digest("hex");
  return HASHED_ACCID_PREFIX + digest.slice(0, HASH_HEX_LENGTH);
}

/** True for a string NIM accepts as an accid in its stored (lower-case) form. */
export function isNimAccid(value: string): boolean {
  return /^[a-z0-9_@.-]{1,32}$/.test(value);
}
