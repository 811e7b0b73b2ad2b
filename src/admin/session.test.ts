import { describe, expect, it } from "vitest";
import { constantTimeEqual, createSessionCodec, parseCookies, sessionCookie } from "./session.ts";

function codec(now = { value: 1_000_000 }, adminToken = "operator-token-1234567890") {
  return { now, codec: createSessionCodec({ adminToken, lifetimeMs: 60_000, now: () => now.value }) };
}

describe("admin sessions", () => {
  it("accepts only the admin token", () => {
    const { codec: sessions } = codec();
    expect(sessions.tokenMatches("operator-token-1234567890")).toBe(true);
    expect(sessions.tokenMatches("operator-token-1234567891")).toBe(false);
    expect(sessions.tokenMatches("")).toBe(false);
    expect(sessions.tokenMatches("operator-token-1234567890 ")).toBe(false);
  });

  it("verifies its own cookie until it expires", () => {
    const { codec: sessions, now } = codec();
    const { session, cookieValue } = sessions.issue();
    expect(sessions.verify(cookieValue)).toEqual(session);
    now.value += 59_999;
    expect(sessions.verify(cookieValue)).toEqual(session);
    now.value += 1;
    expect(sessions.verify(cookieValue)).toBeUndefined();
  });

  it("refuses tampered, foreign and malformed cookies", () => {
    const { codec: sessions } = codec();
    const { cookieValue } = sessions.issue();
    const [payload, signature] = cookieValue.split(".") as [string, string];
    const longer = Buffer.from(JSON.stringify({ sid: "x", exp: 9e15 })).toString("base64url");
    expect(sessions.verify(`${longer}.${signature}`)).toBeUndefined();
    expect(sessions.verify(`${payload}.${signature.slice(0, -2)}AA`)).toBeUndefined();
    expect(sessions.verify(`${payload}.${signature}.extra`)).toBeUndefined();
    expect(sessions.verify(payload)).toBeUndefined();
    expect(sessions.verify(undefined)).toBeUndefined();
    // Another deployment (another ADMIN_TOKEN) cannot mint cookies for this one.
    const other = codec({ value: 1_000_000 }, "another-token").codec.issue().cookieValue;
    expect(sessions.verify(other)).toBeUndefined();
  });

  it("binds the CSRF token to the session", () => {
    const { codec: sessions } = codec();
    const first = sessions.issue().session;
    const second = sessions.issue().session;
    expect(sessions.csrfMatches(first, sessions.csrfToken(first))).toBe(true);
    expect(sessions.csrfMatches(first, sessions.csrfToken(second))).toBe(false);
    expect(sessions.csrfMatches(first, undefined)).toBe(false);
    expect(sessions.csrfMatches(first, "")).toBe(false);
  });

  it("compares strings of different lengths without throwing", () => {
    expect(constantTimeEqual("a", "ab")).toBe(false);
    expect(constantTimeEqual("same", "same")).toBe(true);
  });

  it("parses cookies and writes a strict, HTTP-only cookie", () => {
    expect(parseCookies("a=1; im_admin=x.y; a=2").get("a")).toBe("1");
    expect(parseCookies("a=1; im_admin=x.y").get("im_admin")).toBe("x.y");
    expect(parseCookies(undefined).size).toBe(0);
    const cookie = sessionCookie("im_admin", "v", { maxAgeSeconds: 3600, secure: true });
    expect(cookie).toBe("im_admin=v; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=3600; Secure");
    expect(sessionCookie("im_admin", "", { maxAgeSeconds: 0, secure: false })).not.toContain("Secure");
  });
});
