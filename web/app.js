/**
 * The demo chat page of `npm start`: what a site's front end does with im-bridge.
 *
 * 1. Log in to "the site" (POST /demo/login: any name gets a 1-hour JWT; a real site has its own login).
 * 2. POST /im/register with that JWT → the user's NIM accid + token, and the bot's accid.
 * 3. Log in to NIM with accid + token. Here NIM is the local emulator's WebSocket gateway; with real
 *    NIM this is the Web SDK, and only the adapter (fromNimV9Message / fromNimV10Message) changes.
 * 4. Every bot message goes through one StreamAssembler (live, offline and history alike), which
 *    turns the stream of `bot_stream` segments into one growing bubble per reply.
 * 5. Several bots: one tab per bot (a P2P conversation each) and a group room (a NIM team the demo
 *    site makes the user a member of, with every bot in it). In the room a bot answers when it is
 *    @-mentioned: the page writes UIKit's `yxAitMsg` into the message's ext, like NIM's UIKit.
 *    The stop button sends `/stop` (in the room `@bot /stop`) while a reply is being written.
 * 6. Pictures and files: the attach button uploads to the emulator's NOS stand-in (NIM's SDK uploads
 *    to NOS the same way) and sends a PICTURE or FILE message whose attach carries the download URL.
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
    status_stopped: "已停止",
    status_failed: "发送失败",
    stop: "停止",
    stop_title: "停止正在生成的回答（发送 /stop）",
    mention_title: "@ 一个机器人",
    room: "群聊",
    recalled: "消息已撤回",
    recall: "撤回",
    recall_failed: "无法撤回",
    input_placeholder_room: "在群里说点什么，@ 机器人让它回答…",
    generator_demo: "演示生成器",
    generator_openai: "大模型",
    generator_http: "站点后端",
    error_login: "登录失败",
    error_gateway: "无法连接云信（模拟器）",
    native_on: "原生流：开",
    native_off: "原生流：关",
    native_title: "用云信原生流式消息渲染回复（NIM_STREAM_MODE=native）",
    attach_label: "发送图片或文件",
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
    status_stopped: "Stopped",
    status_failed: "Not sent",
    stop: "Stop",
    stop_title: "Stop the answer being written (sends /stop)",
    mention_title: "@ a bot",
    room: "Group",
    recalled: "Message recalled",
    recall: "Recall",
    recall_failed: "Cannot recall",
    input_placeholder_room: "Say something to the group; @ a bot to ask it…",
    generator_demo: "demo generator",
    generator_openai: "LLM",
    generator_http: "site back end",
    error_login: "Login failed",
    error_gateway: "Cannot reach NIM (emulator)",
    native_on: "Native: on",
    native_off: "Native: off",
    native_title: "Render NIM's native stream messages (NIM_STREAM_MODE=native)",
    attach_label: "Send a picture or a file",
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
/** NIM's default recall window; the console can change it, and NIM answers 508 after it. */
const RECALL_WINDOW_MS = 120_000;
/** Images sent as a PICTURE (shown inline); anything else, or an image the browser cannot decode, goes as a FILE. */
const PICTURE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
/** NIM's message types with an attachment the page shows (PICTURE, FILE). */
const MEDIA_MESSAGE_TYPES = { 1: "PICTURE", 6: "FILE" };

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
  stop: $("stop"),
  mention: $("mention"),
  attach: $("attach"),
  attachInput: $("attach-input"),
  mentionList: $("mention-list"),
  conversations: $("conversations"),
};

let language = localStorage.getItem(LANGUAGE_KEY) ?? (navigator.language.startsWith("zh") ? "zh" : "en");
/** From GET /demo/config: { gatewayUrl, bot, bots, generator, room }. */
let config;
/**
 * { name, accid, token, bot, bots, room, expiresAt } once registered; undefined when logged out.
 * `expiresAt` (ms) is set when im-bridge hands out expiring tokens (NIM_TOKEN_MODE=dynamic), null otherwise.
 */
let session;
/** What is on screen: { scene: "p2p", peer: <bot accid> } or { scene: "team", tid, name }. */
let conversation;
/** Bots picked from the @ list for the message being written (accids). */
const pickedMentions = new Set();
/** Where the typed "@" that opened the @ list sits in the text, to be replaced by the pick. */
let mentionAt;
/** The bot last addressed in the room: where the room's stop and reset go. */
let lastAddressedBot;
/** Renews an expiring token ahead of time (see scheduleRenewal). */
let renewalTimer;
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
/** streamId → the bot that sends it (the assembler does not keep senders). */
const streamSenders = new Map();
/** streamId → "@Nick" the final message mentions (team replies carry yxAitMsg in ext). */
const streamMentions = new Map();

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
  for (const element of document.querySelectorAll("[data-i18n-aria-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nAriaLabel));
  }
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
  const where = conversation?.scene === "team" ? conversation.name : botName(conversation?.peer ?? config.bot);
  elements.botInfo.textContent = `· ${where} · ${t(`generator_${config.generator}`)}`;
  if (conversation) {
    elements.text.placeholder = t(conversation.scene === "team" ? "input_placeholder_room" : "input_placeholder");
  }
  const room = elements.conversations.querySelector("[data-testid=room-tab]");
  if (room) room.textContent = `${t("room")} · ${session?.room?.name ?? ""}`;
}

function renderSuggestions() {
  elements.suggestions.replaceChildren();
  // In the room a suggestion would address nobody; the hint in the input says to @ a bot.
  if (config?.generator !== "demo" || conversation?.scene === "team") return;
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

/** POSTs JSON; resolves with the answer and the server's clock (its Date header, ms) or throws. */
async function postJson(path, body, bearer) {
  const headers = { "content-type": "application/json" };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error?.message ?? `${path}: HTTP ${response.status}`);
  const serverTime = Date.parse(response.headers.get("date") ?? "");
  return { answer, serverTime: Number.isNaN(serverTime) ? Date.now() : serverTime };
}

/**
 * The site's login (a stand-in), then /im/register with the site's JWT: accid + token for NIM, and
 * the bots. Then the demo site puts the user into the group room (a real site adds its users to
 * teams with NIM's team/add.action). Without a room the page simply offers none.
 */
async function signIn(name, refresh) {
  const { answer: login } = await postJson("/demo/login", { name });
  const { answer: registration, serverTime } = await postJson(
    "/im/register",
    { user_id: login.user_id, name, refresh },
    login.token,
  );
  // expires_at is on the server's clock. A page whose clock runs ahead would otherwise think the
  // token nearly expired and renew at once, again and again; so it is moved onto this page's clock.
  const skew = Date.now() - serverTime;
  const expiresAt = registration.expires_at ? Date.parse(registration.expires_at) + skew : null;
  const bots = Array.isArray(registration.bots) && registration.bots.length > 0 ? registration.bots : config.bots;
  const room = session?.name === name ? session.room : undefined;
  session = {
    name,
    accid: registration.accid,
    token: registration.token,
    bot: registration.bot,
    bots: bots ?? [{ accid: registration.bot, name: registration.bot }],
    room,
    expiresAt,
  };
  scheduleRenewal();
  if (config.room && !session.room) {
    session.room = await postJson("/demo/room", {}, login.token)
      .then(({ answer }) => answer)
      .catch((error) => {
        console.warn("group room unavailable:", error.message);
        return undefined;
      });
  }
}

function botName(accid) {
  return (session?.bots ?? config?.bots ?? []).find((bot) => bot.accid === accid)?.name ?? accid;
}

function isBot(accid) {
  return (session?.bots ?? config?.bots ?? []).some((bot) => bot.accid === accid) || accid === session?.bot;
}

// ---------------------------------------------------------------------------------------------
// Expiring tokens (NIM_TOKEN_MODE=dynamic, docs/client.md "Expiring tokens")
// ---------------------------------------------------------------------------------------------

/** Renewals never follow each other faster than this, whatever the clocks say. */
const MINIMUM_RENEWAL_INTERVAL_MS = 5_000;

/** How long before expiry a token is renewed: a tenth of its lifetime, between 10 s and 5 min. */
function renewalMargin(lifetimeMs) {
  return Math.min(300_000, Math.max(10_000, lifetimeMs / 10));
}

/** Whether the session's token is missing or too close to its expiry to log in with. */
function tokenNeedsRenewal(now = Date.now()) {
  if (!session?.expiresAt) return false;
  return session.expiresAt - now <= renewalMargin(session.expiresAt - now);
}

/**
 * Fetches a fresh token shortly before the current one expires, so a reconnect at any moment logs
 * in with a valid one. The open connection is left alone: NIM checks the token at login only.
 * (With NIM's SDK: v10 passes a `tokenProvider`, v9 sets the new token in `onwillreconnect`.)
 */
function scheduleRenewal() {
  clearTimeout(renewalTimer);
  if (!session?.expiresAt) return;
  const lifetime = session.expiresAt - Date.now();
  const delay = Math.max(MINIMUM_RENEWAL_INTERVAL_MS, lifetime - renewalMargin(lifetime));
  const name = session.name;
  renewalTimer = setTimeout(() => {
    if (session?.name !== name) return;
    // A failed renewal is retried at the next (re)connect, which renews a token about to expire.
    signIn(name, false).catch(() => {});
  }, delay);
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
  renderConversations();
  const stillThere =
    conversation && (conversation.scene === "team" ? session.room?.tid === conversation.tid : isBot(conversation.peer));
  if (!stillThere) selectConversation({ scene: "p2p", peer: session.bot }, false);
  elements.text.focus();
}

// ---------------------------------------------------------------------------------------------
// Conversations: one per bot, and the group room
// ---------------------------------------------------------------------------------------------

function renderConversations() {
  elements.conversations.replaceChildren();
  for (const bot of session.bots) {
    elements.conversations.append(conversationTab(bot.name, "bot-tab", { scene: "p2p", peer: bot.accid }));
  }
  if (session.room) {
    const room = { scene: "team", tid: session.room.tid, name: session.room.name };
    elements.conversations.append(conversationTab(`${t("room")} · ${session.room.name}`, "room-tab", room));
  }
  markSelectedTab();
}

function conversationTab(label, testid, target) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tab";
  button.dataset.testid = testid;
  button.dataset.key = conversationKey(target);
  if (target.scene === "p2p") button.dataset.accid = target.peer;
  else button.dataset.tid = target.tid;
  button.setAttribute("role", "tab");
  button.textContent = label;
  button.addEventListener("click", () => selectConversation(target, true));
  return button;
}

function conversationKey(target) {
  return target.scene === "team" ? `team:${target.tid}` : `p2p:${target.peer}`;
}

function markSelectedTab() {
  const key = conversation ? conversationKey(conversation) : "";
  for (const tab of elements.conversations.children) {
    const selected = tab.dataset.key === key;
    tab.setAttribute("aria-selected", String(selected));
    if (selected) delete tab.dataset.unread;
  }
}

/** Shows another conversation: a clean list, then its history from NIM. */
function selectConversation(target, fetchHistory) {
  if (conversation && conversationKey(conversation) === conversationKey(target)) return;
  conversation = target;
  clearConversation();
  pickedMentions.clear();
  closeMentionList();
  const inRoom = target.scene === "team";
  elements.mention.hidden = !inRoom;
  elements.chatView.dataset.scene = inRoom ? "team" : "p2p";
  markSelectedTab();
  renderBotInfo();
  renderSuggestions();
  if (fetchHistory) sendFrame(historyFrame());
}

function historyFrame() {
  return conversation.scene === "team"
    ? { type: "history", with: conversation.tid, scene: "team", limit: HISTORY_LIMIT }
    : { type: "history", with: conversation.peer, limit: HISTORY_LIMIT };
}

/** Whether a NIM message belongs to the conversation on screen. */
function inView(message) {
  if (!conversation || !session) return false;
  if (conversation.scene === "team") return message.scene === "team" && message.to === conversation.tid;
  if (message.scene === "team") return false;
  const peer = conversation.peer;
  return (
    (message.from === session.accid && message.to === peer) || (message.from === peer && message.to === session.accid)
  );
}

/** A message for a conversation not on screen: a dot on its tab. */
function markUnread(message) {
  if (!session) return;
  const key =
    message.scene === "team"
      ? `team:${message.to}`
      : `p2p:${message.from === session.accid ? message.to : message.from}`;
  for (const tab of elements.conversations.children) {
    if (tab.dataset.key === key && tab.getAttribute("aria-selected") !== "true") tab.dataset.unread = "true";
  }
}

elements.logout.addEventListener("click", () => {
  localStorage.removeItem(NAME_KEY);
  session = undefined;
  conversation = undefined;
  clearTimeout(renewalTimer);
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
  elements.mention.disabled = !online;
  elements.attach.disabled = !online;
  refreshStop();
}

async function connect() {
  disconnect();
  if (!session) return;
  const reconnecting = reconnectAttempts > 0;
  setConnection(reconnecting ? "reconnecting" : "connecting");
  // After a restart of `npm start` the emulator listens on another port: ask again where it is.
  if (reconnecting) config = (await fetchConfig().catch(() => undefined)) ?? config;
  if (!session || socket) return;
  // Like v10's tokenProvider: never log in with a token that is about to expire.
  if (tokenNeedsRenewal()) await signIn(session.name, false).catch(() => {});
  if (!session || socket) return;
  const current = new WebSocket(config.gatewayUrl);
  socket = current;
  current.addEventListener("open", () => {
    // authType 1: NIM's dynamic token; 0 (the default): the static one.
    const authType = session.expiresAt ? 1 : 0;
    current.send(JSON.stringify({ type: "login", accid: session.accid, token: session.token, authType }));
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
        if (conversation) sendFrame(historyFrame());
      } else {
        await loginRefused(frame);
      }
      return;
    case "offline":
      for (const message of sortByTime(frame.messages ?? [])) {
        if (inView(message)) showMessage(message, false);
        else markUnread(message);
      }
      return;
    case "history": {
      // An answer for a conversation left meanwhile is dropped: the list shows the current one.
      const current = conversation?.scene === "team" ? conversation.tid : conversation?.peer;
      if (frame.with !== current) return;
      for (const message of sortByTime(frame.messages ?? [])) showMessage(message, false);
      return;
    }
    case "message":
      if (!frame.message) return;
      if (inView(frame.message)) showMessage(frame.message, true);
      else markUnread(frame.message);
      return;
    case "stream":
      arrivalTime = Math.max(Date.now(), lastTime());
      nativeMode.acceptStreamFrame(frame);
      return;
    case "sent":
      acknowledge(frame);
      return;
    case "recall":
      if (frame.recall) showRecall(frame.recall.msgid);
      return;
    case "recalled":
      if (frame.code === 200) showRecall(frame.msgid);
      else recallRefused(frame);
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
  clearTimeout(renewalTimer);
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

/** A PICTURE's or FILE's { msgType, name, url } from its body (NIM's attach JSON), else undefined. */
function mediaOf(message) {
  const msgType = MEDIA_MESSAGE_TYPES[message.type];
  if (!msgType) return undefined;
  try {
    const attach = JSON.parse(message.body);
    const name = typeof attach?.name === "string" ? attach.name : "";
    return { msgType, name, url: typeof attach?.url === "string" ? attach.url : undefined };
  } catch {
    return { msgType, name: "", url: undefined };
  }
}

/**
 * Shows a picture (from the storage URL; the page's CSP loads pictures from the emulator only, so a
 * URL elsewhere shows as a broken picture, never a request to it) or a file's name in a bubble.
 */
function showAttachment(item, media) {
  const paragraph = item.querySelector(".text");
  item.dataset.kind = media.msgType === "PICTURE" ? "picture" : "file";
  if (media.msgType === "PICTURE" && media.url && /^https?:\/\//.test(media.url)) {
    const image = document.createElement("img");
    image.className = "picture";
    image.dataset.testid = "attachment-image";
    image.src = media.url;
    image.alt = media.name;
    paragraph.replaceChildren(image);
    return;
  }
  const file = document.createElement("span");
  file.className = "attachment-file";
  file.dataset.testid = "attachment-file";
  file.append(documentIcon(), media.name);
  paragraph.replaceChildren(file);
}

/** A sheet with a folded corner, drawn (an emoji may have no font to show it). */
function documentIcon() {
  const namespace = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(namespace, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(namespace, "path");
  path.setAttribute("d", "M6 2h8l4 4v16H6z M14 2v4h4");
  svg.append(path);
  return svg;
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
    const item = createUserBubble(textOf(message), message.msgid);
    const media = mediaOf(message);
    if (media) showAttachment(item, media);
    // Only fresh messages can still be recalled (NIM: 2 minutes by default); history is older.
    if (!live || Date.now() - (message.timetag ?? 0) > RECALL_WINDOW_MS) item.querySelector(".recall")?.remove();
    place(item, time);
    return;
  }
  // Only a bot's custom messages are replies: anyone in a team could send a look-alike body.
  const body = isBot(message.from) ? fromEmulatorMessage(message) : undefined;
  if (body) {
    arrivalTime = time;
    if (!streamSenders.has(body.stream_id)) streamSenders.set(body.stream_id, message.from);
    const mention = mentionedNick(message.ext);
    if (mention) streamMentions.set(body.stream_id, mention);
    assembler.accept(body); // repeats (history ∩ offline ∩ live) are dropped by the assembler
    return;
  }
  arrivalTime = time;
  if (isBot(message.from) && nativeMode.acceptMessage(message)) return;
  if (message.msgid && shownMessageIds.has(message.msgid)) return;
  if (message.msgid) shownMessageIds.add(message.msgid);
  if (!isBot(message.from)) {
    // Another member of the room.
    const item = createOtherBubble(textOf(message), message.fromNick || message.from, message.msgid);
    const media = mediaOf(message);
    if (media) showAttachment(item, media);
    place(item, time);
    return;
  }
  // An ordinary message from a bot: show it once, as it is.
  const item = createBotBubble(message.from);
  setBotText(item, textOf(message), "ok");
  place(item, time);
}

/** "@Nick" from a reply's UIKit ext (`yxAitMsg`), to show whom a team answer is for. */
function mentionedNick(ext) {
  if (typeof ext !== "string" || ext === "" || ext.length > 4096) return undefined;
  try {
    const ait = JSON.parse(ext)?.yxAitMsg;
    if (!ait || typeof ait !== "object") return undefined;
    const entry = Object.values(ait)[0];
    return typeof entry?.text === "string" ? entry.text.trim().slice(0, 40) : undefined;
  } catch {
    return undefined;
  }
}

/** NIM refused the recall (too late, 508, or not found): the bubble says so. */
function recallRefused(frame) {
  const item = elements.messages.querySelector(
    `[data-testid=user-bubble][data-msgid="${CSS.escape(frame.msgid ?? "")}"]`,
  );
  if (!item) return;
  setLabel(item, "recall_failed");
  item.title = frame.desc ?? String(frame.code);
}

/** A recalled message leaves the screen as "message recalled", like NIM apps show it. */
function showRecall(msgid) {
  for (const item of elements.messages.querySelectorAll("li")) {
    if (item.dataset.msgid !== msgid) continue;
    item.dataset.status = "recalled";
    item.querySelector(".text").textContent = t("recalled");
  }
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
  setSender(item, streamSenders.get(reply.streamId));
  const mention = streamMentions.get(reply.streamId);
  if (mention && !item.querySelector(".mention-chip")) {
    const chip = document.createElement("span");
    chip.className = "mention-chip";
    chip.dataset.testid = "reply-mention";
    chip.textContent = `${mention} `;
    item.querySelector(".bubble").prepend(chip);
  }
  setBotText(item, reply.text, reply.status);
  scrollToEnd();
}
assembler.onChange(renderReply);
const nativeMode = createNativeMode({
  botAccounts: () => (session?.bots ?? []).map((bot) => bot.accid).concat(session?.bot ? [session.bot] : []),
  onReply: renderReply,
  label: (on) => t(on ? "native_on" : "native_off"),
  title: () => t("native_title"),
});

/** In the room several bots answer: each reply bubble says which one. */
function setSender(item, accid) {
  if (!accid || conversation?.scene !== "team") return;
  item.dataset.bot = accid;
  let sender = item.querySelector(".sender");
  if (!sender) {
    sender = document.createElement("span");
    sender.className = "sender";
    sender.dataset.testid = "sender";
    item.prepend(sender);
  }
  sender.textContent = botName(accid);
}

/** Another member's message in the room, with their name. */
function createOtherBubble(text, name, msgid) {
  const item = document.createElement("li");
  item.className = "message other";
  item.dataset.testid = "other-bubble";
  if (msgid) item.dataset.msgid = msgid;
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.textContent = name;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const paragraph = document.createElement("p");
  paragraph.className = "text";
  paragraph.dataset.testid = "other-text";
  paragraph.textContent = text;
  bubble.append(paragraph);
  item.append(sender, bubble);
  return item;
}

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
  // NIM lets a sender recall a message for a while (2 minutes by default): the bridge then does not
  // answer it, or stops the answer it is writing.
  const recall = document.createElement("button");
  recall.type = "button";
  recall.className = "recall";
  recall.dataset.testid = "recall-button";
  recall.dataset.i18n = "recall";
  recall.textContent = t("recall");
  recall.addEventListener("click", () => {
    if (item.dataset.msgid) sendFrame({ type: "recall", msgid: item.dataset.msgid });
  });
  item.append(bubble, createLabel(), recall);
  return item;
}

/** A bot bubble: text, typing dots (while streaming and still empty), and a status label. */
function createBotBubble(accid) {
  const item = document.createElement("li");
  item.className = "message bot";
  item.dataset.testid = "bot-bubble";
  item.dataset.status = "pending";
  if (accid) item.dataset.bot = accid;
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

/** status: pending | streaming | ok | error | blocked | limited | stopped (CSS and the tests read data-status). */
function setBotText(item, text, status) {
  item.querySelector(".text").textContent = text;
  item.dataset.status = status;
  item.dataset.empty = text === "" ? "true" : "false";
  const labelled = ["error", "blocked", "limited", "stopped"];
  setLabel(item, labelled.includes(status) ? `status_${status}` : "");
  refreshStop();
}

/** The stop button works while a reply on screen is still being written. */
function refreshStop() {
  const writing = elements.messages.querySelector(
    "[data-testid=bot-bubble][data-status=pending], [data-testid=bot-bubble][data-status=streaming]",
  );
  elements.stop.disabled = !writing || elements.connection.dataset.state !== "online";
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
  streamSenders.clear();
  streamMentions.clear();
  refreshStop();
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

/**
 * Sends a text to the conversation on screen. In the room the bots picked from the @ list go into
 * the ext as UIKit's `yxAitMsg`; a reply is awaited (a typing bubble) only when a bot is addressed.
 * `expectReply: false` for commands such as /stop, which get no answer of their own.
 */
function sendText(text, { expectReply = true } = {}) {
  if (!session || !conversation || text.trim() === "") return false;
  const clientId = crypto.randomUUID();
  const frame = { type: "send", text, clientId };
  let addressed = true;
  if (conversation.scene === "team") {
    const ait = aitExtension(text);
    frame.to = conversation.tid;
    frame.scene = "team";
    if (ait) frame.ext = JSON.stringify({ yxAitMsg: ait });
    const mentioned = session.bots.filter((bot) => ait?.[bot.accid] || text.includes(`@${bot.name}`));
    addressed = mentioned.length > 0;
    if (addressed) lastAddressedBot = mentioned[mentioned.length - 1].accid;
  } else {
    frame.to = conversation.peer;
  }
  if (!sendFrame(frame)) return false;
  pickedMentions.clear();
  const item = createUserBubble(text, undefined);
  place(item, Math.max(Date.now(), lastTime()));
  let placeholder;
  if (expectReply && addressed) {
    // The reply's bubble appears at once, with typing dots, and is adopted by the reply's first message.
    placeholder = createBotBubble();
    place(placeholder, lastTime());
  }
  unacknowledged.set(clientId, { item, placeholder });
  refreshStop();
  return true;
}

/**
 * UIKit's `yxAitMsg` for the bots picked from the @ list that are still in the text: per accid the
 * display text "@Name " and every place "@Name" stands, `end` inclusive as NIM's UIKit writes it.
 */
function aitExtension(text) {
  const ait = {};
  for (const accid of pickedMentions) {
    const name = botName(accid);
    const mention = `@${name}`;
    const segments = [];
    for (let start = text.indexOf(mention); start >= 0; start = text.indexOf(mention, start + mention.length)) {
      segments.push({ start, end: start + mention.length - 1, broken: false });
    }
    if (segments.length > 0) ait[accid] = { text: `${mention} `, segments };
  }
  return Object.keys(ait).length > 0 ? ait : undefined;
}

/** A command to the bot of this conversation: in the room it must @ the bot, or no bot would hear it. */
function sendCommand(command) {
  if (conversation?.scene === "team") {
    const accid = lastAddressedBot ?? session.bot;
    pickedMentions.clear();
    pickedMentions.add(accid);
    return sendText(`@${botName(accid)} ${command}`, { expectReply: false });
  }
  return sendText(command, { expectReply: command !== "/stop" });
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
    placeholder?.remove();
    refreshStop();
    return;
  }
  item.dataset.status = "sent";
  item.dataset.msgid = frame.msgid;
  shownMessageIds.add(frame.msgid);
  if (!placeholder) return;
  // The reply may already be here (its first message can overtake this acknowledgement).
  const alreadyAnswered = [...replyElements.values()].some((reply) => reply.dataset.replyTo === frame.msgid);
  if (alreadyAnswered) placeholder.remove();
  else placeholders.set(frame.msgid, placeholder);
  refreshStop();
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

elements.reset.addEventListener("click", () => sendCommand("/reset"));

// ---------------------------------------------------------------------------------------------
// Pictures and files: upload to NOS (the emulator's stand-in), then a PICTURE or FILE message
// ---------------------------------------------------------------------------------------------

elements.attach.addEventListener("click", () => elements.attachInput.click());
elements.attachInput.addEventListener("change", async () => {
  const files = [...elements.attachInput.files];
  elements.attachInput.value = "";
  // One after another, so they arrive in the order they were picked.
  for (const file of files) await sendAttachment(file);
});

/**
 * Shows the bubble at once (the file name), uploads, then sends the message with NIM's attach
 * fields. In the room a picture addresses no bot, so no reply is awaited there.
 */
async function sendAttachment(file) {
  const target = conversation;
  if (!session || !target || !config?.uploadUrl) return;
  const dimensions = PICTURE_TYPES.has(file.type) ? await pictureSize(file) : undefined;
  const msgType = dimensions ? "PICTURE" : "FILE";
  const item = createUserBubble("", undefined);
  showAttachment(item, { msgType, name: file.name, url: undefined });
  place(item, Math.max(Date.now(), lastTime()));
  const failed = (reason) => {
    item.dataset.status = "failed";
    setLabel(item, "status_failed");
    item.title = reason;
  };
  let uploaded;
  try {
    uploaded = await upload(file);
  } catch (error) {
    failed(error.message);
    return;
  }
  const clientId = crypto.randomUUID();
  const attach = {
    url: uploaded.url,
    name: uploaded.name,
    ext: extensionOf(uploaded.name),
    size: uploaded.size,
    md5: uploaded.md5,
    ...dimensions,
  };
  const frame = { type: "send", clientId, msgType, attach };
  if (target.scene === "team") {
    frame.to = target.tid;
    frame.scene = "team";
  } else {
    frame.to = target.peer;
  }
  if (conversation !== target || !sendFrame(frame)) {
    failed(conversation !== target ? "conversation changed" : "offline");
    return;
  }
  showAttachment(item, { msgType, name: uploaded.name, url: uploaded.url });
  let placeholder;
  if (target.scene === "p2p") {
    placeholder = createBotBubble();
    place(placeholder, lastTime());
  }
  unacknowledged.set(clientId, { item, placeholder });
  refreshStop();
}

/** { w, h } of a picture the browser can decode, else undefined (then it goes as a file). */
async function pictureSize(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const size = { w: bitmap.width, h: bitmap.height };
    bitmap.close();
    return size.w > 0 && size.h > 0 ? size : undefined;
  } catch {
    return undefined;
  }
}

/** POSTs the raw bytes to the storage; resolves with { url, name, size, md5 } or throws. */
async function upload(file) {
  const response = await fetch(`${config.uploadUrl}?name=${encodeURIComponent(file.name)}`, {
    method: "POST",
    headers: { "content-type": file.type || "application/octet-stream" },
    body: file,
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error?.message ?? `upload: HTTP ${response.status}`);
  return answer;
}

/** NIM's `ext`: the name's extension, letters and digits only, lower-cased ("" when there is none). */
function extensionOf(name) {
  const match = /\.([A-Za-z0-9]{1,16})$/.exec(name);
  return match ? match[1].toLowerCase() : "";
}
elements.stop.addEventListener("click", () => sendCommand("/stop"));

// ---------------------------------------------------------------------------------------------
// @ in the room: the @ button, or typing "@", opens the list of bots
// ---------------------------------------------------------------------------------------------

function openMentionList() {
  elements.mentionList.replaceChildren();
  for (const bot of session?.bots ?? []) {
    const option = document.createElement("button");
    option.type = "button";
    option.className = "chip";
    option.dataset.testid = "mention-option";
    option.dataset.accid = bot.accid;
    option.setAttribute("role", "option");
    option.textContent = `@${bot.name}`;
    option.addEventListener("click", () => pickMention(bot));
    elements.mentionList.append(option);
  }
  elements.mentionList.hidden = false;
}

function closeMentionList() {
  elements.mentionList.hidden = true;
  mentionAt = undefined;
}

/** Puts "@Name " into the text (replacing the typed "@" that opened the list) and remembers the pick. */
function pickMention(bot) {
  const input = elements.text;
  const insert = `@${bot.name} `;
  const start = mentionAt ?? input.selectionStart ?? input.value.length;
  const end = mentionAt !== undefined ? mentionAt + 1 : (input.selectionEnd ?? start);
  input.value = input.value.slice(0, start) + insert + input.value.slice(end);
  const caret = start + insert.length;
  input.setSelectionRange(caret, caret);
  pickedMentions.add(bot.accid);
  closeMentionList();
  fitComposer();
  input.focus();
}

elements.mention.addEventListener("click", () => {
  if (elements.mentionList.hidden) openMentionList();
  else closeMentionList();
});

elements.text.addEventListener("input", (event) => {
  if (conversation?.scene !== "team" || event.isComposing) return;
  const caret = elements.text.selectionStart ?? 0;
  const typed = elements.text.value[caret - 1];
  if (event.inputType?.startsWith("insert") && (typed === "@" || typed === "＠")) {
    openMentionList();
    mentionAt = caret - 1;
  } else if (!elements.mentionList.hidden && mentionAt !== undefined) {
    closeMentionList();
  }
});

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
  elements.attach.hidden = !config.uploadUrl;
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
