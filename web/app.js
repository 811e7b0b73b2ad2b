/**
 * The demo chat page of `npm start`: what a site's front end does with im-bridge.
 *
 * 1. Log in to "the site" (POST /demo/login: any name gets a 1-hour JWT; a real site has its own login).
 * 2. POST /im/register with that JWT → the user's NIM accid + token, and the bot's accid.
 * 3. Log in to NIM with accid + token. Here NIM is the local emulator's WebSocket gateway; with real
 *    NIM this is the Web SDK, and only the adapter (fromNimV9Message / fromNimV10Message) changes.
 * 4. Every bot message goes through one StreamAssembler (live, offline and history alike), which
 *    turns the stream of `bot_stream` segments into one growing bubble per reply.
 *
 * Plain browser ES module, no framework, no build step; /demo/client.js is src/client bundled.
 */
import { fromEmulatorMessage, StreamAssembler } from "/demo/client.js";
import { createNativeMode } from "/native-mode.js";

const STRINGS = {
  zh: {
    title: "im-bridge 演示",
    state_idle: "未连接",
    state_connecting: "连接中…",
    state_online: "在线",
    state_reconnecting: "已断开，正在重连…",
    logout: "退出",
    login_title: "和 AI 机器人聊天",
    login_hint: "输入任意名字登录。这个演示站点会为你签发 JWT，im-bridge 为你创建云信账号。",
    name_label: "你的名字",
    name_placeholder: "例如：小明",
    login_button: "登录",
    logging_in: "登录中…",
    empty_title: "向机器人说点什么吧。",
    input_placeholder: "输入消息…",
    send: "发送",
    reset_title: "清空对话上下文（发送 /reset）",
    status_error: "回答中断了",
    status_blocked: "该回答未通过内容审核",
    status_limited: "提问太频繁了，请稍后再试",
    status_failed: "发送失败",
    generator_demo: "演示生成器",
    generator_openai: "大模型",
    generator_http: "站点后端",
    error_login: "登录失败",
    error_gateway: "无法连接云信（模拟器）",
    native_on: "原生流：开",
    native_off: "原生流：关",
    native_title: "用云信原生流式消息渲染回复（NIM_STREAM_MODE=native）",
  },
  en: {
    title: "im-bridge demo",
    state_idle: "Not connected",
    state_connecting: "Connecting…",
    state_online: "Online",
    state_reconnecting: "Disconnected, reconnecting…",
    logout: "Log out",
    login_title: "Chat with the AI bot",
    login_hint: "Log in with any name. This demo site signs a JWT for you and im-bridge creates your NIM account.",
    name_label: "Your name",
    name_placeholder: "e.g. Alice",
    login_button: "Log in",
    logging_in: "Logging in…",
    empty_title: "Say something to the bot.",
    input_placeholder: "Type a message…",
    send: "Send",
    reset_title: "Clear the conversation context (sends /reset)",
    status_error: "The answer was interrupted",
    status_blocked: "Withheld by moderation",
    status_limited: "Too many questions; please wait a moment",
    status_failed: "Not sent",
    generator_demo: "demo generator",
    generator_openai: "LLM",
    generator_http: "site back end",
    error_login: "Login failed",
    error_gateway: "Cannot reach NIM (emulator)",
    native_on: "Native: on",
    native_off: "Native: off",
    native_title: "Render NIM's native stream messages (NIM_STREAM_MODE=native)",
  },
};

/** Magic messages of the demo generator (src/generators/demo), offered as one-click suggestions. */
const SUGGESTIONS = {
  zh: ["你好！", "来一段长回复", "/demo-fail"],
  en: ["Hello!", "Give me a long answer", "/demo-fail"],
};

const NAME_KEY = "im-bridge-demo.name";
const LANGUAGE_KEY = "im-bridge-demo.language";
const HISTORY_LIMIT = 100;
const PING_INTERVAL_MS = 25_000;

const $ = (id) => document.getElementById(id);
const elements = {
  connection: document.querySelector("[data-testid=connection]"),
  connectionText: $("connection-text"),
  botInfo: $("bot-info"),
  language: $("language"),
  logout: $("logout"),
  loginView: $("login-view"),
  loginForm: $("login-form"),
  loginButton: $("login-button"),
  loginError: $("login-error"),
  name: $("name"),
  chatView: $("chat-view"),
  empty: $("empty"),
  suggestions: $("suggestions"),
  messages: $("messages"),
  composer: $("composer"),
  text: $("text"),
  send: $("send"),
  reset: $("reset"),
};

let language = localStorage.getItem(LANGUAGE_KEY) ?? (navigator.language.startsWith("zh") ? "zh" : "en");
/** From GET /demo/config: { gatewayUrl, bot, generator }. */
let config;
/** { name, accid, token, bot } once registered; undefined when logged out. */
let session;
let socket;
let reconnectTimer;
let reconnectAttempts = 0;
let pingTimer;
/** One token refresh per sign-in: a stored token the (fresh) emulator does not know gets rotated once. */
let refreshedToken = false;

const assembler = new StreamAssembler();
/** streamId → the reply's <li>. */
const replyElements = new Map();
/** User msgid → the placeholder bubble shown until its reply's first message arrives. */
const placeholders = new Map();
/** clientId → the user's <li> until NIM acknowledges it. */
const unacknowledged = new Map();
/** msgids already on screen (history and offline sync overlap with what is shown live). */
const shownMessageIds = new Set();
/** The timetag of the message being fed to the assembler, for placing a new reply's bubble. */
let arrivalTime = 0;

function t(key) {
  return STRINGS[language][key] ?? STRINGS.en[key] ?? key;
}

// ---------------------------------------------------------------------------------------------
// Language
// ---------------------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  for (const element of document.querySelectorAll("[data-i18n-placeholder]")) {
    element.placeholder = t(element.dataset.i18nPlaceholder);
  }
  for (const element of document.querySelectorAll("[data-i18n-title]")) element.title = t(element.dataset.i18nTitle);
  elements.language.textContent = language === "zh" ? "EN" : "中文";
  elements.language.title = language === "zh" ? "Switch to English" : "切换到中文";
  renderBotInfo();
  renderSuggestions();
}

elements.language.addEventListener("click", () => {
  language = language === "zh" ? "en" : "zh";
  localStorage.setItem(LANGUAGE_KEY, language);
  applyLanguage();
  nativeMode.render();
});

function renderBotInfo() {
  if (!config) return;
  elements.botInfo.textContent = `· ${config.bot} · ${t(`generator_${config.generator}`)}`;
}

function renderSuggestions() {
  elements.suggestions.replaceChildren();
  if (config?.generator !== "demo") return;
  for (const text of SUGGESTIONS[language]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chip";
    button.textContent = text;
    button.addEventListener("click", () => sendText(text));
    elements.suggestions.append(button);
  }
}

// ---------------------------------------------------------------------------------------------
// Site login and registration
// ---------------------------------------------------------------------------------------------

async function postJson(path, body, bearer) {
  const headers = { "content-type": "application/json" };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error?.message ?? `${path}: HTTP ${response.status}`);
  return answer;
}

/** The site's login (a stand-in), then /im/register with the site's JWT: accid + token for NIM. */
async function signIn(name, refresh) {
  const login = await postJson("/demo/login", { name });
  const registration = await postJson("/im/register", { user_id: login.user_id, name, refresh }, login.token);
  session = { name, accid: registration.accid, token: registration.token, bot: registration.bot };
}

elements.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = elements.name.value.trim();
  if (name) void start(name);
});

async function start(name) {
  showLoginError("");
  elements.loginButton.disabled = true;
  elements.loginButton.textContent = t("logging_in");
  try {
    refreshedToken = false;
    await signIn(name, false);
    localStorage.setItem(NAME_KEY, name);
    showChat();
    void connect();
  } catch (error) {
    showLoginError(`${t("error_login")}: ${error.message}`);
  } finally {
    elements.loginButton.disabled = false;
    elements.loginButton.textContent = t("login_button");
  }
}

function showLoginError(message) {
  elements.loginError.textContent = message;
  elements.loginError.hidden = message === "";
}

function showChat() {
  elements.loginView.hidden = true;
  elements.chatView.hidden = false;
  elements.logout.hidden = false;
  elements.text.focus();
}

elements.logout.addEventListener("click", () => {
  localStorage.removeItem(NAME_KEY);
  session = undefined;
  disconnect();
  clearConversation();
  elements.chatView.hidden = true;
  elements.logout.hidden = true;
  elements.loginView.hidden = false;
  setConnection("idle");
  elements.name.focus();
});

// ---------------------------------------------------------------------------------------------
// The NIM connection (the emulator's gateway)
// ---------------------------------------------------------------------------------------------

function setConnection(state) {
  elements.connection.dataset.state = state;
  elements.connectionText.dataset.i18n = `state_${state}`;
  elements.connectionText.textContent = t(`state_${state}`);
  const online = state === "online";
  elements.send.disabled = !online;
  elements.reset.disabled = !online;
}

async function connect() {
  disconnect();
  if (!session) return;
  const reconnecting = reconnectAttempts > 0;
  setConnection(reconnecting ? "reconnecting" : "connecting");
  // After a restart of `npm start` the emulator listens on another port: ask again where it is.
  if (reconnecting) config = (await fetchConfig().catch(() => undefined)) ?? config;
  if (!session || socket) return;
  const current = new WebSocket(config.gatewayUrl);
  socket = current;
  current.addEventListener("open", () => {
    current.send(JSON.stringify({ type: "login", accid: session.accid, token: session.token }));
  });
  current.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    void handleFrame(frame, current);
  });
  current.addEventListener("close", () => {
    if (socket !== current) return;
    socket = undefined;
    clearInterval(pingTimer);
    if (!session) return;
    // Back off 1, 2, 4 … 15 s. Offline messages and history catch up after the next login.
    const delay = Math.min(15_000, 1000 * 2 ** reconnectAttempts);
    reconnectAttempts += 1;
    setConnection("reconnecting");
    reconnectTimer = setTimeout(() => void connect(), delay);
  });
}

function disconnect() {
  clearTimeout(reconnectTimer);
  clearInterval(pingTimer);
  const current = socket;
  socket = undefined;
  current?.close();
}

function sendFrame(frame) {
  if (socket?.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(frame));
  return true;
}

async function handleFrame(frame, from) {
  if (from !== socket) return;
  switch (frame.type) {
    case "login":
      if (frame.code === 200) {
        reconnectAttempts = 0;
        setConnection("online");
        pingTimer = setInterval(() => sendFrame({ type: "ping" }), PING_INTERVAL_MS);
        sendFrame({ type: "history", with: session.bot, limit: HISTORY_LIMIT });
      } else {
        await loginRefused(frame);
      }
      return;
    case "offline":
    case "history":
      for (const message of sortByTime(frame.messages ?? [])) showMessage(message, false);
      return;
    case "message":
      if (frame.message) showMessage(frame.message, true);
      return;
    case "stream":
      arrivalTime = Math.max(Date.now(), lastTime());
      nativeMode.acceptStreamFrame(frame);
      return;
    case "sent":
      acknowledge(frame);
      return;
    default:
      return;
  }
}

/**
 * 302: NIM does not accept this token. After a restart of `npm start` the bridge still has the
 * user's token while the fresh emulator has no account: `"refresh": true` makes the bridge set a
 * new token (re-creating the account). A real site does the same on NIM's 302.
 */
async function loginRefused(frame) {
  const name = session?.name;
  disconnect();
  if (!name) return;
  if (!refreshedToken) {
    refreshedToken = true;
    try {
      await signIn(name, true);
      void connect();
      return;
    } catch (error) {
      frame = { desc: error.message };
    }
  }
  session = undefined;
  setConnection("idle");
  elements.chatView.hidden = true;
  elements.loginView.hidden = false;
  showLoginError(`${t("error_gateway")}: ${frame.desc ?? frame.code}`);
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

function sortByTime(messages) {
  return [...messages].sort((left, right) => (left.timetag ?? 0) - (right.timetag ?? 0));
}

/** A text message's body is NIM's `{"msg": "…"}`; anything else is shown as it came. */
function textOf(message) {
  try {
    const body = typeof message.body === "string" ? JSON.parse(message.body) : message.body;
    if (typeof body?.msg === "string") return body.msg;
  } catch {
    // not JSON: plain text
  }
  return String(message.body ?? "");
}

/** Routes one NIM message (live, offline or history) to the right bubble. */
function showMessage(message, live) {
  if (!session) return;
  const time = live ? Math.max(message.timetag ?? Date.now(), lastTime()) : (message.timetag ?? Date.now());
  if (message.from === session.accid) {
    if (message.msgid && shownMessageIds.has(message.msgid)) return;
    if (message.msgid) shownMessageIds.add(message.msgid);
    place(createUserBubble(textOf(message), message.msgid), time);
    return;
  }
  const body = fromEmulatorMessage(message);
  if (body) {
    arrivalTime = time;
    assembler.accept(body); // repeats (history ∩ offline ∩ live) are dropped by the assembler
    return;
  }
  arrivalTime = time;
  if (nativeMode.acceptMessage(message)) return;
  // An ordinary message from the bot (or anyone else): show it once, as it is.
  if (message.msgid && shownMessageIds.has(message.msgid)) return;
  if (message.msgid) shownMessageIds.add(message.msgid);
  const item = createBotBubble();
  setBotText(item, textOf(message), "ok");
  place(item, time);
}

/** Renders one reply state, from the custom assembler or the native one (same shape). */
function renderReply(reply) {
  let item = replyElements.get(reply.streamId);
  if (!item) {
    item = placeholders.get(reply.replyTo);
    placeholders.delete(reply.replyTo);
    if (!item) {
      item = createBotBubble();
      place(item, arrivalTime);
    }
    item.dataset.streamId = reply.streamId;
    item.dataset.replyTo = reply.replyTo;
    replyElements.set(reply.streamId, item);
  }
  setBotText(item, reply.text, reply.status);
  scrollToEnd();
}
assembler.onChange(renderReply);
const nativeMode = createNativeMode({
  botAccounts: () => [session?.bot],
  onReply: renderReply,
  label: (on) => t(on ? "native_on" : "native_off"),
  title: () => t("native_title"),
});

function createUserBubble(text, msgid) {
  const item = document.createElement("li");
  item.className = "message user";
  item.dataset.testid = "user-bubble";
  item.dataset.status = msgid ? "sent" : "sending";
  if (msgid) item.dataset.msgid = msgid;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const paragraph = document.createElement("p");
  paragraph.className = "text";
  paragraph.dataset.testid = "user-text";
  paragraph.textContent = text;
  bubble.append(paragraph);
  item.append(bubble, createLabel());
  return item;
}

/** A bot bubble: text, typing dots (while streaming and still empty), and a status label. */
function createBotBubble() {
  const item = document.createElement("li");
  item.className = "message bot";
  item.dataset.testid = "bot-bubble";
  item.dataset.status = "pending";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const paragraph = document.createElement("p");
  paragraph.className = "text";
  paragraph.dataset.testid = "bot-text";
  const typing = document.createElement("span");
  typing.className = "typing";
  typing.dataset.testid = "typing";
  typing.setAttribute("aria-label", "…");
  for (let index = 0; index < 3; index += 1) typing.append(document.createElement("i"));
  bubble.append(paragraph, typing);
  item.append(bubble, createLabel());
  return item;
}

function createLabel() {
  const label = document.createElement("span");
  label.className = "label";
  label.dataset.testid = "status-label";
  label.hidden = true;
  return label;
}

/** status: pending | streaming | ok | error | blocked | limited (CSS and the test read data-status). */
function setBotText(item, text, status) {
  item.querySelector(".text").textContent = text;
  item.dataset.status = status;
  item.dataset.empty = text === "" ? "true" : "false";
  setLabel(item, status === "error" || status === "blocked" || status === "limited" ? `status_${status}` : "");
}

function setLabel(item, key) {
  const label = item.querySelector(".label");
  if (key) {
    label.dataset.i18n = key;
    label.textContent = t(key);
  } else {
    delete label.dataset.i18n;
    label.textContent = "";
  }
  label.hidden = key === "";
}

function lastTime() {
  const last = elements.messages.lastElementChild;
  return last ? Number(last.dataset.time) : 0;
}

/** Keeps the list in time order: history can arrive after live messages (reconnects). */
function place(item, time) {
  item.dataset.time = String(time);
  let before = null;
  for (const child of elements.messages.children) {
    if (Number(child.dataset.time) > time) {
      before = child;
      break;
    }
  }
  elements.messages.insertBefore(item, before);
  elements.empty.hidden = true;
  scrollToEnd();
}

function scrollToEnd() {
  const list = elements.messages;
  list.scrollTop = list.scrollHeight;
}

function clearConversation() {
  elements.messages.replaceChildren();
  elements.empty.hidden = false;
  assembler.clear();
  nativeMode.clear();
  replyElements.clear();
  placeholders.clear();
  unacknowledged.clear();
  shownMessageIds.clear();
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

function sendText(text) {
  if (!session || text.trim() === "") return false;
  const clientId = crypto.randomUUID();
  if (!sendFrame({ type: "send", to: session.bot, text, clientId })) return false;
  const item = createUserBubble(text, undefined);
  place(item, Math.max(Date.now(), lastTime()));
  // The reply's bubble appears at once, with typing dots, and is adopted by the reply's first message.
  const placeholder = createBotBubble();
  place(placeholder, lastTime());
  unacknowledged.set(clientId, { item, placeholder });
  return true;
}

/** NIM accepted (msgid) or refused (code) a message this page sent. */
function acknowledge(frame) {
  const pending = unacknowledged.get(frame.clientId);
  if (!pending) return;
  unacknowledged.delete(frame.clientId);
  const { item, placeholder } = pending;
  if (frame.code !== undefined && frame.code !== 200) {
    item.dataset.status = "failed";
    setLabel(item, "status_failed");
    item.title = frame.desc ?? String(frame.code);
    placeholder.remove();
    return;
  }
  item.dataset.status = "sent";
  item.dataset.msgid = frame.msgid;
  shownMessageIds.add(frame.msgid);
  // The reply may already be here (its first message can overtake this acknowledgement).
  const alreadyAnswered = [...replyElements.values()].some((reply) => reply.dataset.replyTo === frame.msgid);
  if (alreadyAnswered) placeholder.remove();
  else placeholders.set(frame.msgid, placeholder);
}

elements.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  if (sendText(elements.text.value)) {
    elements.text.value = "";
    fitComposer();
  }
});

elements.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    elements.composer.requestSubmit();
  }
});

function fitComposer() {
  elements.text.rows = Math.min(5, Math.max(1, elements.text.value.split("\n").length));
}
elements.text.addEventListener("input", fitComposer);

elements.reset.addEventListener("click", () => sendText("/reset"));

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

async function fetchConfig() {
  const response = await fetch("/demo/config");
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

async function main() {
  applyLanguage();
  setConnection("idle");
  try {
    config = await fetchConfig();
  } catch (error) {
    showLoginError(`/demo/config: ${error.message}`);
    return;
  }
  applyLanguage();
  nativeMode.render();
  document.body.dataset.ready = "true";
  const name = localStorage.getItem(NAME_KEY);
  if (name) {
    elements.name.value = name;
    await start(name);
  } else {
    elements.name.focus();
  }
}

void main();
