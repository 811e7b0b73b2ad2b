/**
 * The demo page's native-stream rendering (im-bridge with NIM_STREAM_MODE=native), kept apart from
 * app.js so the custom-message path stays as it was.
 *
 * The switch ("Native: on|off" in the top bar, remembered in localStorage, or `?stream=native|custom` in
 * the URL) decides how NIM's v2 stream messages are shown:
 * - on: the emulator gateway's live `stream` frames and the merged stream messages go through
 *   im-bridge/client's NativeStreamAssembler, which gives the same reply states (text, status,
 *   done) as the custom-message StreamAssembler, so app.js renders both with one function;
 * - off: live frames are ignored and a merged stream message is an ordinary bubble, as a client
 *   without stream support (or nim-web-sdk-ng before 10.9) would show it.
 * Custom `bot_stream` messages are rendered either way: the switch is about the client, not the
 * bridge's mode.
 */
import { fromEmulatorStreamFrame, NativeStreamAssembler } from "/demo/client.js";

const STORAGE_KEY = "im-bridge-demo.native-streams";

function initialSetting() {
  const fromUrl = new URLSearchParams(location.search).get("stream");
  if (fromUrl === "native" || fromUrl === "custom") return fromUrl === "native";
  return localStorage.getItem(STORAGE_KEY) !== "off";
}

/**
 * @param {{ botAccounts: () => string[], onReply: (reply: object) => void, label: (on: boolean) => string, title: () => string }} options
 */
export function createNativeMode(options) {
  let enabled = initialSetting();
  let assembler = new NativeStreamAssembler();
  assembler.onChange(options.onReply);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "ghost";
  button.dataset.testid = "native-toggle";

  function render() {
    button.textContent = options.label(enabled);
    button.title = options.title();
    button.setAttribute("aria-pressed", String(enabled));
    document.body.dataset.nativeStreams = enabled ? "on" : "off";
  }

  button.addEventListener("click", () => {
    enabled = !enabled;
    localStorage.setItem(STORAGE_KEY, enabled ? "on" : "off");
    render();
  });
  document.querySelector(".topbar-actions")?.prepend(button);
  render();

  return {
    get enabled() {
      return enabled;
    },
    /** Re-labels the button (after a language change). */
    render,
    /** A gateway frame of type "stream": accepted while the switch is on. Returns true if handled. */
    acceptStreamFrame(frame) {
      if (!enabled) return false;
      const message = fromEmulatorStreamFrame(frame);
      return message !== undefined && withBots(message) !== undefined;
    },
    /** A gateway message (live, offline, history): true when it was a stream message taken here. */
    acceptMessage(message) {
      if (!enabled || message?.stream === undefined) return false;
      const converted = fromEmulatorStreamFrame({ type: "message", message });
      return converted !== undefined && withBots(converted) !== undefined;
    },
    /** Forgets every reply (logout, /reset). */
    clear() {
      assembler = new NativeStreamAssembler();
      assembler.onChange(options.onReply);
    },
  };

  function withBots(message) {
    const bots = options.botAccounts().filter(Boolean);
    // Only the bot accounts may render as the bot: the sender check of im-bridge/client.
    if (bots.length > 0 && !bots.some((bot) => bot.toLowerCase() === String(message.senderId).toLowerCase())) {
      return undefined;
    }
    return assembler.accept(message);
  }
}
