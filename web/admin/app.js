/**
 * The operator console of im-bridge (/admin): conversations with live replies, usage, pauses and
 * takeover. A plain browser ES module with no framework and no build step. Everything shown is
 * inserted as text (never as HTML): user messages are hostile input.
 *
 * The session is an HTTP-only cookie the page cannot read; the CSRF token from
 * GET /admin/api/session goes with every change as X-CSRF-Token.
 */

const STRINGS = {
  zh: {
    title: "im-bridge 运营控制台",
    language: "语言",
    logout: "退出",
    nav: "控制台导航",
    nav_conversations: "会话",
    nav_usage: "用量",
    nav_controls: "控制",
    login_title: "登录",
    login_hint: "输入服务器上配置的 ADMIN_TOKEN（启用 ADMIN_JWT_CLAIM 时也可以粘贴带管理员声明的站点 JWT）。",
    token_label: "管理令牌",
    login_button: "登录",
    login_failed: "登录失败",
    search_label: "搜索机器人、用户或群",
    search_button: "搜索",
    no_conversations: "没有会话。",
    back: "← 全部会话",
    pause_skip: "暂停（不回答）",
    pause_note: "暂停（自动说明）",
    takeover: "人工接管",
    resume: "交还机器人",
    operator_label: "以机器人身份回复用户",
    send: "发送",
    audit_trail: "审计记录",
    days_label: "天数",
    export_csv: "导出 CSV",
    chart_caption: "每日 token 用量",
    top_users: "用量最多的用户",
    user: "用户",
    replies: "回答",
    tokens: "tokens",
    estimate_hint: "模型未报告用量时按字符估算（中日韩字符约 1 token，其它约 4 字符 1 token）。",
    bots: "机器人",
    pauses: "当前暂停",
    settings: "设置",
    operator_audit: "运营操作记录",
    bot: "机器人",
    team: "群",
    last_activity: "最近活动",
    messages: "条消息",
    status_answering: "回答中",
    status_paused: "已暂停",
    status_takeover: "人工接管中",
    status_ok: "正常",
    status_error: "出错",
    status_blocked: "已拦截",
    status_limited: "已限流",
    status_stopped: "已停止",
    status_failed: "发送失败",
    status_idle: "空闲",
    status_skipped: "未回答",
    status_streaming: "生成中",
    not_paused: "机器人正常回答。",
    paused_skip: "已暂停：消息会保存，但不回答。",
    paused_note: "已暂停：自动回复暂停说明。",
    paused_takeover: "人工接管中：机器人不回答，你的消息以机器人身份发送。",
    paused_bot: "（整个机器人已暂停）",
    received: "收到",
    first_segment: "首段",
    final: "完成",
    sends: "云信发送",
    operator: "运营人员",
    no_pauses: "没有暂停。",
    pause_bot: "暂停",
    pause_bot_note: "暂停并说明",
    total_tokens: "合计 {tokens} tokens，{replies} 次回答（{days} 天）",
    estimated: "估算",
    budget_user: "每用户每日额度",
    budget_bot: "每机器人每日额度",
    paused_note_setting: "暂停说明",
    time_zone: "时区",
    live_across: "跨实例实时推送",
    none: "无",
    yes: "是",
    no: "否",
    live: "实时",
    error_generic: "操作失败",
  },
  en: {
    title: "im-bridge operator console",
    language: "Language",
    logout: "Log out",
    nav: "Console navigation",
    nav_conversations: "Conversations",
    nav_usage: "Usage",
    nav_controls: "Controls",
    login_title: "Log in",
    login_hint:
      "Enter the ADMIN_TOKEN configured on the server (or, with ADMIN_JWT_CLAIM, a site JWT carrying the admin claim).",
    token_label: "Admin token",
    login_button: "Log in",
    login_failed: "Login failed",
    search_label: "Search bots, users or teams",
    search_button: "Search",
    no_conversations: "No conversations.",
    back: "← All conversations",
    pause_skip: "Pause (no answers)",
    pause_note: "Pause (with a note)",
    takeover: "Take over",
    resume: "Hand back to the bot",
    operator_label: "Reply to the user as the bot",
    send: "Send",
    audit_trail: "Audit trail",
    days_label: "Days",
    export_csv: "Export CSV",
    chart_caption: "Tokens per day",
    top_users: "Top users",
    user: "User",
    replies: "Replies",
    tokens: "Tokens",
    estimate_hint:
      "When the model reports no usage, tokens are estimated from characters (about 1 per CJK character, 1 per 4 other characters).",
    bots: "Bots",
    pauses: "Active pauses",
    settings: "Settings",
    operator_audit: "Operator actions",
    bot: "Bot",
    team: "Team",
    last_activity: "Last activity",
    messages: "messages",
    status_answering: "answering",
    status_paused: "paused",
    status_takeover: "taken over",
    status_ok: "ok",
    status_error: "error",
    status_blocked: "blocked",
    status_limited: "limited",
    status_stopped: "stopped",
    status_failed: "failed",
    status_idle: "idle",
    status_skipped: "not answered",
    status_streaming: "streaming",
    not_paused: "The bot answers normally.",
    paused_skip: "Paused: messages are stored but not answered.",
    paused_note: "Paused: the bot answers with the pause note.",
    paused_takeover: "Taken over: the bot is silent; what you send goes to the user as the bot.",
    paused_bot: "(the whole bot is paused)",
    received: "received",
    first_segment: "first segment",
    final: "final",
    sends: "NIM sends",
    operator: "operator",
    no_pauses: "Nothing is paused.",
    pause_bot: "Pause",
    pause_bot_note: "Pause with a note",
    total_tokens: "{tokens} tokens in {replies} replies ({days} days)",
    estimated: "estimated",
    budget_user: "Daily budget per user",
    budget_bot: "Daily budget per bot",
    paused_note_setting: "Pause note",
    time_zone: "Time zone",
    live_across: "Live view across instances",
    none: "none",
    yes: "yes",
    no: "no",
    live: "live",
    error_generic: "The action failed",
  },
};

const LANGUAGE_KEY = "im-bridge-admin.language";
let language = localStorage.getItem(LANGUAGE_KEY) ?? (navigator.language.startsWith("zh") ? "zh" : "en");
/** From GET /admin/api/session: { csrfToken, expiresAt, settings }. */
let session;
/** The open EventSource, if any. */
let events;
/** The conversation shown, and the live bubbles of its replies by replyTo. */
let current;
const liveBubbles = new Map();

const $ = (id) => document.getElementById(id);

function t(key, values = {}) {
  const text = STRINGS[language][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** Builds an element; children are nodes or strings (always inserted as text). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function formatTime(epochMs) {
  if (!epochMs) return "";
  return new Date(epochMs).toLocaleString(language === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

function formatNumber(value) {
  return Number(value).toLocaleString(language === "zh" ? "zh-CN" : "en-GB");
}

function statusLabel(status) {
  return STRINGS[language][`status_${status}`] ? t(`status_${status}`) : status;
}

function applyLanguage() {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  $("nav").setAttribute("aria-label", t("nav"));
  $("language").value = language;
}

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session) headers["x-csrf-token"] = session.csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/admin/api/login" && path !== "/admin/api/session") {
    // The session ran out: back to the login form.
    session = undefined;
    route().catch(() => {});
  }
  if (!response.ok) throw new ApiError(response.status, data?.error?.message ?? t("error_generic"));
  return data;
}

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

const VIEWS = ["login-view", "conversations-view", "conversation-view", "usage-view", "controls-view"];

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  $("nav").hidden = view === "login-view";
  $("logout").hidden = view === "login-view";
  for (const link of $("nav").querySelectorAll("a")) {
    const active =
      location.hash.startsWith(link.getAttribute("href")) ||
      (view === "conversation-view" && link.dataset.testid === "nav-conversations");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  closeEvents();
  if (!session) {
    try {
      session = await api("/admin/api/session");
    } catch {
      show("login-view");
      $("token").focus();
      return;
    }
  }
  const hash = location.hash || "#/conversations";
  if (hash.startsWith("#/c/")) return showConversation(decodeURIComponent(hash.slice(4)));
  if (hash.startsWith("#/usage")) return showUsage();
  if (hash.startsWith("#/controls")) return showControls();
  return showConversations();
}

// ---- login ------------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("/admin/api/login", { method: "POST", body: { token: $("token").value } });
    $("token").value = "";
    session = await api("/admin/api/session");
    await route();
  } catch (error) {
    $("login-error").textContent = `${t("login_failed")}: ${error.message}`;
  }
}

async function logout() {
  try {
    await api("/admin/api/logout", { method: "POST", body: {} });
  } finally {
    session = undefined;
    location.hash = "#/conversations";
    await route();
  }
}

// ---- conversations ----------------------------------------------------------------------------

async function showConversations() {
  show("conversations-view");
  const query = $("search").value.trim();
  const { conversations } = await api(`/admin/api/conversations?q=${encodeURIComponent(query)}`);
  const list = $("conversation-list");
  list.replaceChildren(
    ...conversations.map((conversation) => {
      const who =
        conversation.scope === "team"
          ? `${t("team")} ${conversation.teamId}${conversation.userAccid ? ` · ${conversation.userAccid}` : ""}`
          : conversation.siteUserId && conversation.siteUserId !== conversation.userAccid
            ? `${conversation.siteUserId} (${conversation.userAccid})`
            : conversation.userAccid;
      return h(
        "li",
        { class: "row", dataset: { testid: "conversation-row", conversation: conversation.conversationId } },
        h(
          "a",
          { href: `#/c/${encodeURIComponent(conversation.conversationId)}`, class: "row-link" },
          h("span", { class: "who" }, who ?? conversation.conversationId),
          h("span", { class: "bot" }, `${t("bot")} ${conversation.botAccid}`),
          h("span", { class: "last" }, conversation.lastText ?? ""),
        ),
        h(
          "span",
          { class: `badge status-${conversation.status}`, dataset: { testid: "conversation-status" } },
          statusLabel(conversation.status),
        ),
        h(
          "time",
          { class: "meta", datetime: new Date(conversation.lastActivity).toISOString() },
          formatTime(conversation.lastActivity),
        ),
      );
    }),
  );
  $("conversations-empty").hidden = conversations.length > 0;
  // Reload the list when a reply starts (its first delta), ends, or a pause changes: not on every
  // delta, so a streaming reply does not turn into one list query per segment.
  openEvents("list", (event) => {
    if (event.type === "delta") {
      if (startedReplies.has(event.replyTo)) return;
      startedReplies.add(event.replyTo);
    }
    if (!$("conversations-view").hidden) scheduleRefresh(showConversations);
  });
}

/** Replies whose first delta the list has seen (it reloads once per reply start). */
const startedReplies = new Set();
let refreshTimer;
/** Many events in a burst (a streaming reply) cause one reload of the list, not one each. */
function scheduleRefresh(load) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => load().catch(() => {}), 400);
}

async function showConversation(conversationId) {
  show("conversation-view");
  if (current?.conversationId !== conversationId) $("operator-text").value = "";
  const conversation = await api(`/admin/api/conversations/${encodeURIComponent(conversationId)}`);
  current = conversation;
  liveBubbles.clear();
  $("conversation-title").textContent =
    conversation.scope === "team"
      ? `${t("team")} ${conversation.teamId}${conversation.userAccid ? ` · ${conversation.userAccid}` : ""}`
      : (conversation.siteUserId ?? conversation.userAccid);
  $("conversation-meta").textContent = `${t("bot")} ${conversation.botAccid} · ${conversation.conversationId}`;
  renderPause(conversation.pause);
  renderTimeline(conversation);
  $("audit").replaceChildren(...conversation.audit.map(auditItem));
  openEvents(conversationId, (event) => onConversationEvent(conversationId, event));
}

function renderPause(pause) {
  const state = $("pause-state");
  const mode = pause?.mode;
  state.dataset.mode = mode ?? "none";
  state.textContent = !pause
    ? t("not_paused")
    : `${t(`paused_${mode}`)}${pause.scope === "bot" ? ` ${t("paused_bot")}` : ""}`;
  $("operator-form").hidden = !(pause?.scope === "conversation" && mode === "takeover");
}

function renderTimeline(conversation) {
  const items = [];
  for (const exchange of conversation.exchanges) {
    items.push({ at: exchange.sentAt, node: userItem(exchange) });
    if (exchange.reply) items.push({ at: exchange.sentAt + 0.5, node: replyItem(exchange) });
  }
  for (const turn of conversation.history) {
    if (turn.operator) items.push({ at: turn.at, node: operatorItem(turn.content, turn.at) });
  }
  items.sort((left, right) => left.at - right.at);
  $("timeline").replaceChildren(...items.map((item) => item.node));
}

function userItem(exchange) {
  return h(
    "li",
    { class: "bubble user", dataset: { testid: "user-message", msgid: exchange.msgidServer } },
    h(
      "p",
      { class: "text" },
      exchange.messageType === "text" ? exchange.text : `[${exchange.messageType}] ${exchange.text}`,
    ),
    h(
      "p",
      { class: "meta" },
      `${exchange.from} · ${formatTime(exchange.sentAt)}${exchange.recalled ? " · recalled" : ""}`,
    ),
  );
}

function replyItem(exchange) {
  const reply = exchange.reply;
  // A skipped plan (paused, recalled, /stop) finishes the message without a final status.
  const status =
    reply.status ??
    (reply.action.startsWith("skip") ? "skipped" : exchange.status === "failed" ? "failed" : "streaming");
  const timing = [
    `${t("received")} ${formatTime(exchange.receivedAt)}`,
    reply.firstSegmentAt ? `${t("first_segment")} +${reply.firstSegmentAt - exchange.receivedAt} ms` : "",
    reply.finalAt ? `${t("final")} +${reply.finalAt - exchange.receivedAt} ms` : "",
  ].filter(Boolean);
  const usage = exchange.usage
    ? `${formatNumber(exchange.usage.totalTokens)} ${t("tokens")} (${exchange.usage.promptTokens} + ${exchange.usage.completionTokens}${exchange.usage.estimated ? `, ${t("estimated")}` : ""})`
    : "";
  return h(
    "li",
    { class: "bubble bot", dataset: { testid: "reply", replyTo: exchange.msgidServer, status } },
    h("p", { class: "text", dataset: { testid: "reply-text" } }, reply.text),
    h(
      "p",
      { class: "meta" },
      h("span", { class: `badge status-${status}`, dataset: { testid: "reply-status" } }, statusLabel(status)),
      ` ${reply.action} · ${timing.join(" → ")}${usage ? ` · ${usage}` : ""}`,
    ),
    reply.sends.length > 0 &&
      h(
        "details",
        {},
        h("summary", {}, `${t("sends")} (${reply.sends.length})`),
        h(
          "table",
          { class: "table small" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ...["seq", "kind", "state", "NIM msgid", "chars"].map((name) => h("th", { scope: "col" }, name)),
            ),
          ),
          h(
            "tbody",
            {},
            ...reply.sends.map((send) =>
              h(
                "tr",
                {},
                h("td", {}, send.seq),
                h("td", {}, send.done ? `${send.kind} (done)` : send.kind),
                h("td", {}, send.state),
                h("td", {}, send.nimMsgid ?? ""),
                h("td", {}, send.characters),
              ),
            ),
          ),
        ),
      ),
  );
}

function operatorItem(text, at) {
  return h(
    "li",
    { class: "bubble bot operator", dataset: { testid: "operator-message" } },
    h("p", { class: "text" }, text),
    h("p", { class: "meta" }, `${t("operator")} · ${formatTime(at)}`),
  );
}

function auditItem(row) {
  return h(
    "li",
    { dataset: { event: row.event } },
    h("time", { class: "meta" }, formatTime(row.at)),
    " ",
    h("strong", {}, row.event),
    row.subject ? ` ${row.subject}` : "",
    row.detail ? h("code", {}, ` ${JSON.stringify(row.detail)}`) : "",
  );
}

function onConversationEvent(conversationId, event) {
  if (event.type === "delta") {
    let bubble = liveBubbles.get(event.replyTo);
    if (!bubble) {
      // A reply loaded from the database already shows its committed text, which can be ahead of
      // the events: it is brought up to date when it finishes, instead of risking doubled text.
      if (document.querySelector(`[data-testid=reply][data-reply-to="${CSS.escape(event.replyTo)}"]`)) return;
      bubble = h(
        "li",
        { class: "bubble bot", dataset: { testid: "reply", replyTo: event.replyTo, status: "streaming" } },
        h("p", { class: "text", dataset: { testid: "reply-text" } }, ""),
        h(
          "p",
          { class: "meta" },
          h("span", { class: "badge status-streaming", dataset: { testid: "reply-status" } }, t("live")),
        ),
      );
      liveBubbles.set(event.replyTo, bubble);
      $("timeline").append(bubble);
    }
    bubble.querySelector("[data-testid=reply-text]").textContent += event.text;
    return;
  }
  if (event.type === "operator") {
    $("timeline").append(operatorItem(event.text, event.at));
    return;
  }
  // finished, a pause change, or a new message: reload what the database says now.
  scheduleRefresh(() => showConversation(conversationId));
}

async function conversationAction(action) {
  if (!current) return;
  const id = current.conversationId;
  try {
    if (action === "takeover")
      await api(`/admin/api/conversations/${encodeURIComponent(id)}/takeover`, { method: "POST", body: {} });
    else if (action === "resume")
      await api("/admin/api/pauses/resume", { method: "POST", body: { scope: "conversation", target: id } });
    else
      await api("/admin/api/pauses", {
        method: "POST",
        body: { scope: "conversation", target: id, mode: action === "pause-note" ? "note" : "skip" },
      });
    await showConversation(id);
  } catch (error) {
    $("pause-state").textContent = error.message;
  }
}

async function sendOperatorText(event) {
  event.preventDefault();
  if (!current) return;
  const text = $("operator-text").value;
  $("operator-error").textContent = "";
  try {
    await api(`/admin/api/conversations/${encodeURIComponent(current.conversationId)}/messages`, {
      method: "POST",
      body: { text },
    });
    $("operator-text").value = "";
  } catch (error) {
    $("operator-error").textContent = error.message;
  }
}

// ---- live events ------------------------------------------------------------------------------

/** Which stream is open ("list" or a conversation id) and who handles its events now. */
let eventsKey;
let eventHandler;

/** Opens the event stream for `key`, or keeps the open one: a reload of the view does not reconnect. */
function openEvents(key, onEvent) {
  eventHandler = onEvent;
  if (events && eventsKey === key) return;
  closeEvents();
  eventsKey = key;
  const url = `/admin/api/events${key !== "list" ? `?conversation=${encodeURIComponent(key)}` : ""}`;
  events = new EventSource(url, { withCredentials: true });
  for (const type of ["delta", "finished", "operator", "pause"]) {
    events.addEventListener(type, (message) => {
      try {
        eventHandler?.(JSON.parse(message.data));
      } catch {
        // a malformed event is ignored; the next reload shows the truth
      }
    });
  }
  events.addEventListener("open", () => document.body.setAttribute("data-live", "open"));
}

function closeEvents() {
  events?.close();
  events = undefined;
  eventsKey = undefined;
  document.body.removeAttribute("data-live");
}

// ---- usage ------------------------------------------------------------------------------------

async function showUsage() {
  show("usage-view");
  const days = $("usage-days").value;
  $("usage-csv").href = `/admin/api/usage.csv?days=${days}`;
  const usage = await api(`/admin/api/usage?days=${days}`);
  const total = usage.days.reduce((sum, day) => sum + day.totalTokens, 0);
  const replies = usage.days.reduce((sum, day) => sum + day.replies, 0);
  $("usage-summary").textContent =
    `${t("total_tokens", { tokens: formatNumber(total), replies, days: usage.days.length })} · ${usage.timeZone}`;
  $("usage-chart").replaceChildren(chart(usage.days));
  $("top-users").replaceChildren(
    ...usage.topUsers.map((user) =>
      h(
        "tr",
        { dataset: { testid: "top-user" } },
        h("td", {}, user.userAccid),
        h("td", {}, user.replies),
        h("td", {}, formatNumber(user.totalTokens)),
      ),
    ),
  );
}

/** A bar chart of tokens per day as inline SVG, with a text alternative for screen readers. */
function chart(days) {
  const svgNs = "http://www.w3.org/2000/svg";
  const node = (tag, attributes, text) => {
    const element = document.createElementNS(svgNs, tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  };
  const width = 640;
  const height = 220;
  const padding = { left: 48, right: 8, top: 12, bottom: 28 };
  const maximum = Math.max(1, ...days.map((day) => day.totalTokens));
  const slot = (width - padding.left - padding.right) / days.length;
  const svg = node("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${t("chart_caption")}: ${days.map((day) => `${day.day} ${day.totalTokens}`).join(", ")}`,
    "data-testid": "usage-svg",
  });
  const plotHeight = height - padding.top - padding.bottom;
  svg.append(
    node("line", {
      x1: padding.left,
      y1: height - padding.bottom,
      x2: width - padding.right,
      y2: height - padding.bottom,
      class: "axis",
    }),
  );
  svg.append(
    node(
      "text",
      { x: padding.left - 6, y: padding.top + 10, "text-anchor": "end", class: "tick" },
      formatNumber(maximum),
    ),
  );
  svg.append(
    node("text", { x: padding.left - 6, y: height - padding.bottom, "text-anchor": "end", class: "tick" }, "0"),
  );
  days.forEach((day, index) => {
    const barHeight = (day.totalTokens / maximum) * plotHeight;
    const x = padding.left + index * slot + slot * 0.15;
    const bar = node("rect", {
      x,
      y: height - padding.bottom - barHeight,
      width: Math.max(1, slot * 0.7),
      height: barHeight,
      class: "bar",
      "data-day": day.day,
      "data-tokens": day.totalTokens,
    });
    bar.append(node("title", {}, `${day.day}: ${day.totalTokens} tokens, ${day.replies} replies`));
    svg.append(bar);
    const every = Math.ceil(days.length / 8);
    if (index % every === 0 || index === days.length - 1) {
      svg.append(
        node("text", { x: x + slot * 0.35, y: height - 8, "text-anchor": "middle", class: "tick" }, day.day.slice(5)),
      );
    }
  });
  return svg;
}

// ---- controls ---------------------------------------------------------------------------------

async function showControls() {
  show("controls-view");
  const [{ pauses, bots }, { events: adminEvents }] = await Promise.all([
    api("/admin/api/pauses"),
    api("/admin/api/audit?prefix=admin."),
  ]);
  const botPause = (accid) => pauses.find((pause) => pause.scope === "bot" && pause.target === accid);
  $("bot-list").replaceChildren(
    ...bots.map((accid) => {
      const pause = botPause(accid);
      return h(
        "li",
        { class: "row", dataset: { testid: "bot-row", bot: accid } },
        h("span", { class: "who" }, accid),
        h(
          "span",
          { class: `badge status-${pause ? "paused" : "ok"}` },
          pause ? `${t("status_paused")} (${pause.mode})` : t("status_ok"),
        ),
        pause
          ? h(
              "button",
              { type: "button", dataset: { testid: "resume-bot" }, onclick: () => botAction(accid, "resume") },
              t("resume"),
            )
          : [
              h(
                "button",
                { type: "button", dataset: { testid: "pause-bot" }, onclick: () => botAction(accid, "skip") },
                t("pause_bot"),
              ),
              h(
                "button",
                { type: "button", dataset: { testid: "pause-bot-note" }, onclick: () => botAction(accid, "note") },
                t("pause_bot_note"),
              ),
            ],
      );
    }),
  );
  $("pause-list").replaceChildren(
    ...(pauses.length
      ? pauses.map((pause) =>
          h(
            "li",
            { class: "row" },
            h("span", { class: "who" }, `${pause.scope === "bot" ? t("bot") : ""} ${pause.target}`),
            h("span", { class: "badge status-paused" }, pause.mode),
            h("time", { class: "meta" }, formatTime(pause.createdAt)),
          ),
        )
      : [h("li", { class: "hint" }, t("no_pauses"))]),
  );
  const settings = session?.settings ?? {};
  const entries = [
    [t("budget_user"), settings.userDailyTokenBudget ? formatNumber(settings.userDailyTokenBudget) : t("none")],
    [t("budget_bot"), settings.botDailyTokenBudget ? formatNumber(settings.botDailyTokenBudget) : t("none")],
    [t("paused_note_setting"), settings.pausedNote ?? ""],
    [t("time_zone"), settings.timeZone ?? ""],
    [t("live_across"), settings.liveAcrossInstances ? t("yes") : t("no")],
  ];
  $("settings").replaceChildren(...entries.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
  $("admin-audit").replaceChildren(...adminEvents.map(auditItem));
}

async function botAction(accid, mode) {
  if (mode === "resume")
    await api("/admin/api/pauses/resume", { method: "POST", body: { scope: "bot", target: accid } });
  else await api("/admin/api/pauses", { method: "POST", body: { scope: "bot", target: accid, mode } });
  await showControls();
}

// ---------------------------------------------------------------------------------------------

function main() {
  applyLanguage();
  $("language").addEventListener("change", () => {
    language = $("language").value;
    localStorage.setItem(LANGUAGE_KEY, language);
    applyLanguage();
    route().catch(() => {});
  });
  $("login-form").addEventListener("submit", (event) => void login(event));
  $("logout").addEventListener("click", () => void logout());
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showConversations().catch(() => {});
  });
  $("usage-days").addEventListener("change", () => void showUsage());
  $("conversation-actions").addEventListener("click", (event) => {
    const action = event.target.closest("button")?.dataset.action;
    if (action) void conversationAction(action);
  });
  $("operator-form").addEventListener("submit", (event) => void sendOperatorText(event));
  window.addEventListener("hashchange", () => void route());
  route().catch(() => {});
}

main();
