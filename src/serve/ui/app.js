// mynah chat UI: plain ES modules, no build step, no CDN (marked and DOMPurify are served by
// the server from node_modules). Conversations live on the server (/api/...), so they survive
// a reload or another browser. Model text is rendered as Markdown with raw HTML escaped, then
// sanitized by DOMPurify; user text is only ever set as textContent.
import { marked } from "/ui/vendor/marked.js";
import DOMPurify from "/ui/vendor/purify.js";

const $ = (id) => document.getElementById(id);
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
// Raw HTML in model output is shown as text, never interpreted.
marked.use({ gfm: true, breaks: true, renderer: { html: (token) => escapeHtml(token.text ?? token.raw ?? "") } });

/** Markdown → sanitized HTML (the only place HTML is built from model or user text). */
function renderMarkdown(el, text) {
  el.innerHTML = DOMPurify.sanitize(marked.parse(text), { FORBID_TAGS: ["style", "form", "input", "button"], FORBID_ATTR: ["style"] });
  for (const a of el.querySelectorAll("a")) { a.target = "_blank"; a.rel = "noopener noreferrer"; }
}

// ---- state --------------------------------------------------------------------------------
const state = { conversations: [], conv: null, messages: [], streaming: null, info: null };
const DEFAULTS = { temperature: 0.7, top_p: 0.95, top_k: 40, max_tokens: 200 };

// ---- server calls -------------------------------------------------------------------------
function headers(json = true) {
  const h = json ? { "content-type": "application/json" } : {};
  const key = localStorage.getItem("mynah-api-key");
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}
// The run report pages (/reports) are opened as pages, which cannot carry a header: the key
// goes with them as a cookie limited to /reports and to this site (SameSite=Strict).
function shareKeyWithReports() {
  const key = localStorage.getItem("mynah-api-key");
  if (key) document.cookie = `mynah-api-key=${encodeURIComponent(key)}; path=/reports; SameSite=Strict`;
}
async function api(method, path, body) {
  const res = await fetch(path, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) {
    const key = prompt("This server needs an API key:");
    if (key) { localStorage.setItem("mynah-api-key", key.trim()); shareKeyWithReports(); return api(method, path, body); }
  }
  const j = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error(j?.error?.message ?? `HTTP ${res.status}`);
  return j;
}
function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
}

// ---- the message tree -----------------------------------------------------------------------
const byId = () => new Map(state.messages.map((m) => [m.id, m]));
function childrenOf(parentId) {
  return state.messages.filter((m) => (m.parent_id ?? null) === parentId);
}
/** The shown branch: from the conversation's leaf up to the root. */
function branch() {
  const map = byId(), out = [];
  for (let id = state.conv?.leaf_id; id; id = map.get(id)?.parent_id) {
    const m = map.get(id);
    if (!m) break;
    out.push(m);
  }
  return out.reverse();
}
/** The newest leaf under a message (following the newest child). */
function newestLeaf(m) {
  for (;;) {
    const kids = childrenOf(m.id);
    if (kids.length === 0) return m;
    m = kids[kids.length - 1];
  }
}

// ---- sidebar ------------------------------------------------------------------------------
async function loadConversations() {
  const q = $("search").value.trim();
  state.conversations = (await api("GET", `/api/conversations${q ? `?q=${encodeURIComponent(q)}` : ""}`)).data;
  const ul = $("conversations");
  ul.replaceChildren(...state.conversations.map((c) => {
    const li = document.createElement("li");
    li.textContent = c.title;
    li.title = c.title;
    li.dataset.id = c.id;
    if (state.conv?.id === c.id) li.classList.add("active");
    li.addEventListener("click", () => openConversation(c.id));
    return li;
  }));
}
async function openConversation(id) {
  const j = await api("GET", `/api/conversations/${id}`);
  state.conv = j.conversation;
  state.messages = j.messages;
  localStorage.setItem("mynah-open", id);
  renderAll();
  await loadConversations();
}
function renderAll() {
  $("title").textContent = state.conv ? state.conv.title : "mynah";
  $("rename").hidden = $("delete").hidden = !state.conv;
  fillSettings();
  renderMessages();
}

// ---- messages -----------------------------------------------------------------------------
function button(label, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}
function siblingNav(m) {
  const sibs = childrenOf(m.parent_id ?? null).filter((s) => s.role === m.role);
  if (sibs.length < 2) return null;
  const i = sibs.findIndex((s) => s.id === m.id);
  const nav = document.createElement("span");
  nav.className = "nav";
  const go = (j) => async () => {
    const leaf = newestLeaf(sibs[j]);
    state.conv = await api("PATCH", `/api/conversations/${state.conv.id}`, { leaf_id: leaf.id });
    renderMessages();
  };
  const prev = button("‹", "Previous version", go(i - 1));
  prev.disabled = i === 0;
  const next = button("›", "Next version", go(i + 1));
  next.disabled = i === sibs.length - 1;
  const label = document.createElement("span");
  label.textContent = `${i + 1}/${sibs.length}`;
  nav.append(prev, label, next);
  return nav;
}
function screeningBadge(m) {
  if (!m.screen_verdict) return null;
  const b = document.createElement("span");
  b.className = `badge ${m.screen_verdict}`;
  const flags = (m.screen?.flags ?? []).join(", ");
  const conf = m.mean_logprob == null ? "" : ` · confidence ${(Math.exp(m.mean_logprob) * 100).toFixed(0)}% (mean logprob ${m.mean_logprob.toFixed(2)})`;
  b.textContent = `${m.screen_verdict}${flags ? `: ${flags}` : ""}${conf}`;
  b.title = (m.screen?.events ?? []).map((e) => `${e.rule}: ${e.detail}`).join("\n") || "screening found nothing";
  return b;
}

function messageView(m) {
  const div = document.createElement("div");
  div.className = `msg ${m.role}`;
  div.dataset.id = m.id;
  const head = document.createElement("div");
  head.className = "role";
  const who = document.createElement("strong");
  who.textContent = m.role === "user" ? "You" : "mynah";
  head.append(who);
  const nav = siblingNav(m);
  if (nav) head.append(nav);
  if (m.finish_reason === "cancelled") head.append(Object.assign(document.createElement("span"), { textContent: "(stopped)" }));
  if (m.finish_reason === "length") head.append(Object.assign(document.createElement("span"), { textContent: "(cut at max tokens)" }));
  const body = document.createElement("div");
  body.className = "body";
  if (m.role === "user") { body.classList.add("plain"); body.textContent = m.content; }
  else renderMarkdown(body, m.content);
  div.append(head, body);
  const tools = document.createElement("div");
  tools.className = "tools";
  if (m.role === "user") {
    tools.append(button("Edit", "Edit and resend (keeps the original as another branch)", () => editUser(div, m)));
  } else {
    const badge = screeningBadge(m);
    if (badge) tools.append(badge);
    const up = button("▲ Good", "Good reply", () => rate(m, m.rating === 1 ? 0 : 1));
    const down = button("▼ Bad", "Bad reply", () => rate(m, m.rating === -1 ? 0 : -1));
    up.classList.toggle("on", m.rating === 1);
    down.classList.toggle("on", m.rating === -1);
    up.setAttribute("aria-pressed", String(m.rating === 1));
    down.setAttribute("aria-pressed", String(m.rating === -1));
    tools.append(up, down,
      button("Write a better answer", "Your correction is stored beside the model's reply", () => correct(div, m)),
      button("Regenerate", "Another reply to the same message (the old one is kept)", () => reply(m.parent_id)));
    if (m.correction) {
      const c = document.createElement("div");
      c.className = "correction";
      const label = document.createElement("div");
      label.className = "label";
      label.textContent = "Your better answer";
      const cb = document.createElement("div");
      cb.className = "body";
      renderMarkdown(cb, m.correction);
      c.append(label, cb);
      div.append(c);
    }
  }
  div.append(tools);
  return div;
}
function renderMessages() {
  const box = $("messages");
  const msgs = branch();
  if (msgs.length === 0) {
    const e = document.createElement("p");
    e.className = "empty";
    e.textContent = state.conv ? "Say something to start." : "Start a new chat, or pick one on the left.";
    box.replaceChildren(e);
    return;
  }
  box.replaceChildren(...msgs.map(messageView));
  box.scrollTop = box.scrollHeight;
}

// ---- editing, feedback ----------------------------------------------------------------------
function inlineEditor(container, initial, saveLabel, onSave) {
  container.querySelector(".editor")?.remove();
  const ed = document.createElement("div");
  ed.className = "editor";
  const ta = document.createElement("textarea");
  ta.rows = 4;
  ta.value = initial;
  const row = document.createElement("div");
  row.className = "row";
  const save = button(saveLabel, "", async () => { if (ta.value.trim()) { ed.remove(); await onSave(ta.value); } });
  save.classList.add("primary");
  row.append(save, button("Cancel", "", () => ed.remove()));
  ed.append(ta, row);
  container.append(ed);
  ta.focus();
}
function editUser(div, m) {
  inlineEditor(div, m.content, "Save & resend", async (text) => {
    const user = await api("POST", `/api/conversations/${state.conv.id}/messages`, { parent_id: m.parent_id, content: text });
    state.messages.push(user);
    state.conv.leaf_id = user.id;
    renderMessages();
    await reply(user.id);
  });
}
async function rate(m, rating) {
  const j = await api("POST", `/api/messages/${m.id}/feedback`, { rating });
  Object.assign(m, j.message);
  renderMessages();
}
function correct(div, m) {
  inlineEditor(div, m.correction ?? m.content, "Save correction", async (text) => {
    const j = await api("POST", `/api/messages/${m.id}/feedback`, { correction: text });
    Object.assign(m, j.message);
    renderMessages();
  });
}

// ---- sending and streaming ------------------------------------------------------------------
function setStreaming(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
}
async function ensureConversation() {
  if (state.conv) return;
  state.conv = await api("POST", "/api/conversations", { settings: { ...DEFAULTS } });
  state.messages = [];
  localStorage.setItem("mynah-open", state.conv.id);
}
async function send() {
  const text = $("input").value;
  if (!text.trim() || state.streaming) return;
  showError("");
  await ensureConversation();
  const last = branch().at(-1);
  const user = await api("POST", `/api/conversations/${state.conv.id}/messages`, { parent_id: last ? last.id : null, content: text });
  $("input").value = "";
  state.messages.push(user);
  state.conv.leaf_id = user.id;
  renderAll();
  await reply(user.id);
  await loadConversations();
}
/** Streams a reply to user message `parentId` (SSE from /api/conversations/:id/reply). */
async function reply(parentId) {
  if (state.streaming) return;
  showError("");
  const controller = new AbortController();
  state.streaming = controller;
  setStreaming(true);
  // Show the branch up to the user message, then a growing reply.
  state.conv.leaf_id = parentId;
  renderMessages();
  const view = messageView({ id: "pending", role: "assistant", content: "", parent_id: parentId });
  view.classList.add("streaming");
  view.querySelector(".tools").replaceChildren();
  $("messages").append(view);
  const body = view.querySelector(".body");
  let text = "";
  const convId = state.conv.id;
  try {
    const res = await fetch(`/api/conversations/${convId}/reply`, { method: "POST", headers: headers(), body: JSON.stringify({ parent_id: parentId }), signal: controller.signal });
    if (!res.ok) throw new Error((await res.json()).error?.message ?? `HTTP ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (!frame.startsWith("data: ")) continue;
        const ev = JSON.parse(frame.slice(6));
        if (ev.type === "delta") {
          text += ev.text;
          renderMarkdown(body, text);
          $("messages").scrollTop = $("messages").scrollHeight;
        } else if (ev.type === "done") {
          state.messages.push(ev.message);
          state.conv.leaf_id = ev.message.id;
        } else if (ev.type === "error") {
          throw new Error(ev.error.message);
        }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") {
      // Stopped: the server keeps what was generated; fetch it once it is stored.
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const j = await api("GET", `/api/conversations/${convId}`);
        const kid = j.messages.filter((m) => m.parent_id === parentId && m.role === "assistant" && !state.messages.some((x) => x.id === m.id));
        if (kid.length) { state.messages = j.messages; state.conv = j.conversation; break; }
      }
    } else {
      showError(`The reply failed: ${err.message}`);
    }
  } finally {
    state.streaming = null;
    setStreaming(false);
    renderMessages();
  }
}

// ---- settings, rename, delete, export, theme ------------------------------------------------
function fillSettings() {
  const s = { ...DEFAULTS, ...(state.conv?.settings ?? {}) };
  $("set-system").value = state.conv?.system ?? "";
  for (const k of Object.keys(DEFAULTS)) $(`set-${k}`).value = s[k];
}
async function saveSettings() {
  await ensureConversation();
  const settings = {};
  for (const k of Object.keys(DEFAULTS)) {
    const v = Number($(`set-${k}`).value);
    if (!Number.isFinite(v)) { $("settings-note").textContent = `${k} must be a number`; return; }
    settings[k] = v;
  }
  state.conv = await api("PATCH", `/api/conversations/${state.conv.id}`, { system: $("set-system").value, settings });
  $("settings-note").textContent = "Saved.";
  renderAll();
  await loadConversations();
}
function applyTheme(t) {
  if (t) document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
}

$("composer").addEventListener("submit", (e) => { e.preventDefault(); send().catch((err) => showError(err.message)); });
$("input").addEventListener("keydown", (e) => {
  // Enter sends, but not while an input method (Chinese, Japanese, …) is composing: then it
  // confirms the candidate. keyCode 229 covers browsers that end composition before keydown.
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    send().catch((err) => showError(err.message));
  }
});
$("stop").addEventListener("click", () => state.streaming?.abort());
$("new-chat").addEventListener("click", () => {
  state.conv = null;
  state.messages = [];
  localStorage.removeItem("mynah-open");
  renderAll();
  loadConversations();
  $("input").focus();
});
$("search").addEventListener("input", () => loadConversations().catch((err) => showError(err.message)));
$("rename").addEventListener("click", async () => {
  const t = prompt("New name:", state.conv.title);
  if (!t?.trim()) return;
  state.conv = await api("PATCH", `/api/conversations/${state.conv.id}`, { title: t.trim() });
  renderAll();
  await loadConversations();
});
$("delete").addEventListener("click", async () => {
  if (!confirm(`Delete "${state.conv.title}"?`)) return;
  await api("DELETE", `/api/conversations/${state.conv.id}`);
  state.conv = null;
  state.messages = [];
  renderAll();
  await loadConversations();
});
$("export").addEventListener("click", async () => {
  const res = await fetch("/api/export", { headers: headers(false) });
  if (!res.ok) { showError(`Export failed: HTTP ${res.status}`); return; }
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: "mynah-conversations.jsonl" });
  a.click();
  URL.revokeObjectURL(url);
});
$("settings-toggle").addEventListener("click", () => {
  $("settings").hidden = !$("settings").hidden;
  $("settings-toggle").setAttribute("aria-expanded", String(!$("settings").hidden));
});
$("settings-save").addEventListener("click", () => saveSettings().catch((err) => showError(err.message)));
$("theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme ? document.documentElement.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const t = dark ? "light" : "dark";
  localStorage.setItem("mynah-theme", t);
  applyTheme(t);
});

applyTheme(localStorage.getItem("mynah-theme"));
(async () => {
  try {
    state.info = await api("GET", "/api/info");
    $("model-info").textContent = `${state.info.model} · context ${state.info.context}`;
    shareKeyWithReports();
    $("reports").hidden = !(state.info.reports > 0);
  } catch (err) { showError(err.message); }
  await loadConversations();
  const open = localStorage.getItem("mynah-open");
  if (open && state.conversations.some((c) => c.id === open)) await openConversation(open);
  else renderAll();
  document.body.dataset.ready = "1";
})().catch((err) => showError(err.message));
