import { describe, expect, it } from "vitest";
import { demoMediaSettings } from "./start.ts";

describe("the demo's media settings", () => {
  it("lets the bridge fetch from the emulator's storage over http by default", () => {
    expect(demoMediaSettings({}, "http://127.0.0.1:53211")).toEqual({
      MEDIA_ALLOWED_HOSTS: "127.0.0.1:53211",
      MEDIA_ALLOW_HTTP: "true",
    });
    expect(demoMediaSettings({ MEDIA_ALLOWED_HOSTS: "" }, "http://[::1]:8001").MEDIA_ALLOWED_HOSTS).toBe("[::1]:8001");
  });

  it("keeps what the operator set", () => {
    const environment = { MEDIA_ALLOWED_HOSTS: "media.example.com", MEDIA_ALLOW_HTTP: "false" };
    expect(demoMediaSettings(environment, "http://127.0.0.1:53211")).toEqual(environment);
  });
});
