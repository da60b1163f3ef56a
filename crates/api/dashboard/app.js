// Hookline's dashboard: one page on the same JSON API as everything else.
// The API key lives in this tab's sessionStorage only; every call sends it
// as a bearer token to this origin. Everything shown is set as text, never
// as HTML.
"use strict";

const KEY = "hookline.apiKey";
// The triggers and statuses are the API's own, read from its OpenAPI
// document at start: "order.paid" is shown as "Order paid".
const label = (name) => { const t = name.replace(/[._]/g, " "); return t.charAt(0).toUpperCase() + t.slice(1); };

async function loadNames() {
  const res = await fetch("/openapi.json");
  const doc = await res.json();
  const schemas = doc.components.schemas;
  const fill = (select, values) => {
    for (const v of values) select.append(el("option", { value: v }, label(v)));
  };
  fill($("#rule-form").trigger, schemas.Trigger.enum);
  fill($("#delivery-filter").status, schemas.DeliveryStatus.enum);
}
const $ = (sel) => document.querySelector(sel);

const state = { rules: [], editing: null, cursor: null, key: null, shown: false };

// ---- the API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e ? e.message : `Hookline answered ${status}`);
    this.status = status;
    this.code = e ? e.code : null;
  }
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new Error(`Cannot reach Hookline: ${e.message}`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: say the status */ }
  if (!res.ok) {
    if (res.status === 401 && path !== "/v1/webhook-key") signOut("Your API key was not accepted; sign in again.");
    throw new ApiError(res.status, json);
  }
  return json;
}

// ---- page helpers ----------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

let noticeTimer = null;
function notify(message, ok) {
  const n = $("#notice");
  n.textContent = message;
  n.className = ok ? "ok" : "";
  n.hidden = false;
  clearTimeout(noticeTimer);
  if (ok) noticeTimer = setTimeout(() => { n.hidden = true; }, 4000);
}
function fail(e) { notify(e.message || String(e)); }

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function ruleName(id) {
  const r = state.rules.find((r) => r.id === id);
  return r ? r.name : id;
}

function scopeText(s) {
  if (!s || s.type === "universal") return "everything";
  return `${s.type.replace("_", " ")} ${s.id}`;
}

// ---- sign in ---------------------------------------------------------------

async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  try {
    await api("GET", "/v1/webhook-key");
  } catch (e) {
    sessionStorage.removeItem(KEY);
    throw e.status === 401 ? new Error("That API key is not valid.") : e;
  }
  $("#sign-in").hidden = true;
  $("#app").hidden = false;
  $("#sign-out").hidden = false;
  $("#who").textContent = `Signed in as ${key.slice(0, 6)}…`;
  $("#notice").hidden = true;
  await loadRules();
  await loadDeliveries(false);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  state.key = null;
  $("#app").hidden = true;
  $("#sign-in").hidden = false;
  $("#sign-out").hidden = true;
  $("#who").textContent = "";
  $("#api-key").value = "";
  if (message) notify(message);
}

// ---- tabs ------------------------------------------------------------------

function showTab(name) {
  for (const b of document.querySelectorAll("[data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${name}`;
  if (name === "rules") loadHealth().catch(fail);
  if (name === "key") loadKey().catch(fail);
  if (name === "deliveries") loadDeliveries(false).catch(fail);
}

// ---- rules -----------------------------------------------------------------

async function loadRules() {
  const rules = [];
  let cursor = null;
  do {
    const page = await api("GET", `/v1/rules?limit=250${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    rules.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  state.rules = rules;
  renderRules();
  loadHealth().catch(fail);
  for (const select of document.querySelectorAll("select[name=rule_id]")) {
    const keep = select.value;
    const all = select.closest("#delivery-filter") ? [el("option", { value: "" }, "All")] : [];
    select.replaceChildren(...all, ...rules.map((r) => el("option", { value: r.id }, r.name)));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }
}

function renderRules() {
  const list = $("#rules");
  if (!state.rules.length) {
    list.replaceChildren(el("div", { class: "empty" }, "No webhooks yet. Add one to start receiving events."));
    return;
  }
  list.replaceChildren(...state.rules.map((r) => el("div", { class: "item rule", "data-id": r.id },
    el("div", {},
      el("div", { class: "title" }, r.name,
        el("span", { class: `badge ${r.enabled ? "on" : "off"}` }, r.enabled ? "enabled" : "disabled"),
        r.disabled_reason ? el("span", { class: "badge failing", title: `since ${when(r.disabled_at)}` }, r.disabled_reason === "gone" ? "disabled: the receiver is gone" : "disabled for failing") : null),
      el("div", { class: "meta" }, `${label(r.trigger)} · ${scopeText(r.scope)}${r.per_order_line ? " · per order line" : ""}${r.first_payment_only ? " · first payment only" : ""}${r.payload === "thin" ? " · thin body" : ""}${r.rate_limit ? ` · at most ${r.rate_limit}/s` : ""}`),
      el("div", { class: "meta" }, r.url),
      el("div", { class: "meta health" }, "…")),
    el("div", { class: "actions" },
      el("button", { class: "health-open", onclick: () => showHealth(r).catch(fail) }, "Health"),
      el("button", { class: "test", onclick: () => testRule(r).catch(fail) }, "Send test"),
      el("button", { class: "toggle", onclick: () => toggleRule(r).catch(fail) }, r.enabled ? "Disable" : "Enable"),
      el("button", { class: "edit", onclick: () => openRuleForm(r) }, "Edit"),
      el("button", { class: "delete danger", onclick: () => deleteRule(r).catch(fail) }, "Delete")))));
}

// ---- a rule's health -------------------------------------------------------

const percent = (w) => (w.success_rate === null ? "no attempts" : `${(w.success_rate * 100).toFixed(1)}% delivered of ${w.attempts}`);
const ms = (v) => (v === null ? "—" : `${v} ms`);

// One line under a webhook: its circuit when not closed, the last day's
// success rate and median latency, and failures in a row when there are.
function healthLine(h) {
  const circuit = h.circuit === "closed" ? null
    : el("span", { class: "badge failing" }, h.circuit === "open" ? `paused until ${when(h.circuit_open_until)}` : "probing");
  const day = h.last_day;
  const parts = [`Last 24 h: ${percent(day)}`];
  if (day.latency_p50_ms !== null) parts.push(`median ${ms(day.latency_p50_ms)}`);
  if (h.consecutive_failures > 0) parts.push(`${h.consecutive_failures} failed in a row`);
  return [circuit, parts.join(" · ")].filter((part) => part !== null);
}

async function loadHealth() {
  await Promise.all(state.rules.map(async (r) => {
    const row = document.querySelector(`.rule[data-id="${CSS.escape(r.id)}"] .health`);
    try {
      const h = await api("GET", `/v1/rules/${encodeURIComponent(r.id)}/health`);
      if (row) row.replaceChildren(...healthLine(h));
    } catch (e) {
      if (row) row.textContent = `Health unavailable: ${e.message}`;
    }
  }));
}

async function showHealth(r) {
  const h = await api("GET", `/v1/rules/${encodeURIComponent(r.id)}/health`);
  const row = document.querySelector(`.rule[data-id="${CSS.escape(r.id)}"] .health`);
  if (row) row.replaceChildren(...healthLine(h));
  const windows = [["Last hour", h.last_hour], ["Last 24 hours", h.last_day]];
  const facts = [
    ["Circuit", h.circuit === "open" ? `open: deliveries wait until ${when(h.circuit_open_until)}` : h.circuit],
    ["Failed in a row", String(h.consecutive_failures)],
    ["Failing since", h.failing_since ? when(h.failing_since) : "—"],
    ["Last success", h.last_success_at ? when(h.last_success_at) : "—"],
    ["Last failure", h.last_failure ? `${when(h.last_failure.at)}: ${h.last_failure.error || "failed"}` : "—"],
    ["Attempts at once", h.concurrency === null ? "—" : String(h.concurrency)],
  ];
  const box = $("#rule-health");
  box.hidden = false;
  box.replaceChildren(
    el("div", { class: "row spread" },
      el("h3", {}, `Health of ${r.name}`),
      el("button", { onclick: () => { box.hidden = true; } }, "Close")),
    el("div", { class: "scroll" }, el("table", { class: "windows" },
      el("thead", {}, el("tr", {}, ["", "Delivered", "Attempts", "Failed", "Median", "99th"].map((t) => el("th", {}, t)))),
      el("tbody", {}, windows.map(([name, w]) => el("tr", {},
        el("th", {}, name),
        el("td", {}, w.success_rate === null ? "—" : `${(w.success_rate * 100).toFixed(1)}%`),
        el("td", {}, String(w.attempts)),
        el("td", {}, String(w.failures)),
        el("td", {}, ms(w.latency_p50_ms)),
        el("td", {}, ms(w.latency_p99_ms))))))),
    el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("p", { class: "muted" }, "Counted per attempt that reached (or tried to reach) your receiver; latency is given as the bound of its range."));
  box.scrollIntoView({ block: "nearest" });
}

function openRuleForm(rule) {
  state.editing = rule;
  const f = $("#rule-form");
  f.reset();
  $("#rule-form-title").textContent = rule ? `Edit ${rule.name}` : "Add webhook";
  if (rule) {
    f.name.value = rule.name;
    f.trigger.value = rule.trigger;
    f.url.value = rule.url;
    f.scope.value = rule.scope.type;
    f.scope_id.value = rule.scope.id || "";
    f.payload.value = rule.payload;
    f.rate_limit.value = rule.rate_limit || "";
    f.per_order_line.checked = rule.per_order_line;
    f.first_payment_only.checked = rule.first_payment_only;
    f.enabled.checked = rule.enabled;
    f.filter.value = rule.filter ? JSON.stringify(rule.filter, null, 2) : "";
    f.headers.value = Object.entries(rule.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
  }
  f.scope_id.disabled = f.scope.value === "universal";
  f.hidden = false;
  f.name.focus();
}

function ruleBody(f) {
  const body = {
    name: f.name.value.trim(),
    trigger: f.trigger.value,
    url: f.url.value.trim(),
    scope: f.scope.value === "universal" ? { type: "universal" } : { type: f.scope.value, id: f.scope_id.value.trim() },
    per_order_line: f.per_order_line.checked,
    first_payment_only: f.first_payment_only.checked,
    enabled: f.enabled.checked,
    payload: f.payload.value,
    rate_limit: f.rate_limit.value ? Number(f.rate_limit.value) : null,
    filter: null,
    headers: {},
  };
  if (f.filter.value.trim()) {
    try { body.filter = JSON.parse(f.filter.value); } catch (e) { throw new Error(`The filter is not valid JSON: ${e.message}`); }
  }
  for (const line of f.headers.value.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`"${line.trim()}" is not a header: write Name: value`);
    body.headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return body;
}

async function saveRule(e) {
  e.preventDefault();
  const f = $("#rule-form");
  const body = ruleBody(f);
  if (state.editing) await api("PATCH", `/v1/rules/${encodeURIComponent(state.editing.id)}`, body);
  else await api("POST", "/v1/rules", body);
  notify(state.editing ? "Webhook saved." : "Webhook added.", true);
  f.hidden = true;
  state.editing = null;
  await loadRules();
}

async function toggleRule(r) {
  await api("PATCH", `/v1/rules/${encodeURIComponent(r.id)}`, { enabled: !r.enabled });
  notify(r.enabled ? `${r.name} disabled.` : `${r.name} enabled.`, true);
  await loadRules();
}

async function deleteRule(r) {
  if (!confirm(`Delete ${r.name}? Its pending deliveries will not be sent.`)) return;
  await api("DELETE", `/v1/rules/${encodeURIComponent(r.id)}`);
  notify(`${r.name} deleted.`, true);
  await loadRules();
}

async function testRule(r) {
  const box = $("#test-result");
  box.hidden = false;
  box.replaceChildren(el("div", { class: "muted" }, `Sending a test ${label(r.trigger)} event to ${r.url}…`));
  const { attempt } = await api("POST", `/v1/rules/${encodeURIComponent(r.id)}/test`);
  box.replaceChildren(el("h3", {}, `Test send to ${r.name}`), attemptTable([attempt]));
}

// ---- webhook key -----------------------------------------------------------

async function loadKey() {
  state.key = (await api("GET", "/v1/webhook-key")).key;
  renderKey();
}

function renderKey() {
  const masked = state.key ? `whsec_${"•".repeat(20)}` : "";
  $("#key-value").textContent = state.shown ? state.key : masked;
  $("#key-reveal").textContent = state.shown ? "Hide" : "Reveal";
}

async function copyKey() {
  if (!state.key) await loadKey();
  try {
    await navigator.clipboard.writeText(state.key);
    notify("Webhook key copied.", true);
  } catch (_) {
    state.shown = true;
    renderKey();
    getSelection().selectAllChildren($("#key-value"));
    notify("Copying is not allowed here: the key is selected, copy it with your keyboard.", true);
  }
}

async function rotateKey() {
  if (!confirm("Make a new webhook key now? The old key keeps signing beside it for the grace period, then stops.")) return;
  state.key = (await api("POST", "/v1/webhook-key/rotate")).key;
  state.shown = true;
  renderKey();
  notify("New webhook key made. Update your receivers before the grace period ends.", true);
}

// ---- deliveries ------------------------------------------------------------

async function loadDeliveries(more) {
  const f = $("#delivery-filter");
  const q = new URLSearchParams({ limit: "25" });
  for (const name of ["rule_id", "event_id", "status"]) if (f[name].value.trim()) q.set(name, f[name].value.trim());
  if (more && state.cursor) q.set("cursor", state.cursor);
  const page = await api("GET", `/v1/deliveries?${q}`);
  state.cursor = page.next_cursor;
  const list = $("#deliveries");
  const items = page.data.map(deliveryItem);
  if (more) list.append(...items);
  else list.replaceChildren(...(items.length ? items : [el("div", { class: "empty" }, "No deliveries match.")]));
  $("#deliveries-more").hidden = !state.cursor;
}

function deliveryItem(d) {
  return el("div", { class: "item delivery clickable", "data-id": d.id, onclick: () => showDelivery(d.id).catch(fail) },
    el("div", {},
      el("div", { class: "title" }, d.event_id, el("span", { class: `badge ${d.status}` }, d.status)),
      el("div", { class: "meta" }, `${ruleName(d.rule_id)}${d.line_id ? ` · line ${d.line_id}` : ""} · ${when(d.created_at)} · ${d.attempt_count} attempt${d.attempt_count === 1 ? "" : "s"}${d.waiting ? ` · waiting (${d.waiting.reason.replace("_", " ")}) until ${when(d.waiting.until)}` : ""}`)),
    el("div", { class: "meta" }, el("code", {}, d.id)));
}

function attemptTable(attempts) {
  if (!attempts.length) return el("div", { class: "empty" }, "No attempt yet.");
  return el("div", { class: "scroll" }, el("table", { class: "attempts" },
    el("thead", {}, el("tr", {}, ["When", "Status", "Took", "Error", "Response"].map((h) => el("th", {}, h)))),
    el("tbody", {}, attempts.map((a) => el("tr", {},
      el("td", {}, when(a.at)),
      el("td", { class: "status" }, a.status_code === null ? "—" : String(a.status_code)),
      el("td", {}, `${a.duration_ms} ms`),
      el("td", {}, a.error || ""),
      el("td", {}, a.response_body ? el("pre", {}, a.response_body) : ""))))));
}

async function showDelivery(id) {
  const d = await api("GET", `/v1/deliveries/${encodeURIComponent(id)}`);
  // The list row shows the same state as the detail.
  const row = document.querySelector(`.delivery[data-id="${CSS.escape(d.id)}"]`);
  if (row) row.replaceWith(deliveryItem(d));
  const box = $("#delivery-detail");
  box.hidden = false;
  box.replaceChildren(
    el("div", { class: "row spread" },
      el("h3", {}, `Delivery `, el("code", {}, d.id), el("span", { class: `badge ${d.status}` }, d.status)),
      el("button", { id: "delivery-retry", class: "primary", onclick: () => retryDelivery(d.id).catch(fail) }, "Retry now")),
    el("div", { class: "meta muted" }, `Event ${d.event_id} to ${ruleName(d.rule_id)} · ${d.attempt_count} attempt${d.attempt_count === 1 ? "" : "s"} in all`),
    attemptTable(d.attempts));
  box.scrollIntoView({ block: "nearest" });
}

async function retryDelivery(id) {
  try {
    await api("POST", `/v1/deliveries/${encodeURIComponent(id)}/retry`);
  } catch (e) {
    if (e.code === "already_pending") throw new Error("This delivery is already queued or waiting for its next retry.");
    throw e;
  }
  notify("Delivery queued again.", true);
  await loadDeliveries(false);
  await showDelivery(id);
}

async function recover(e) {
  e.preventDefault();
  const f = $("#recover-form");
  const iso = (v) => new Date(v).toISOString();
  const body = { since: iso(f.since.value) };
  if (f.until.value) body.until = iso(f.until.value);
  const { recovered } = await api("POST", `/v1/rules/${encodeURIComponent(f.rule_id.value)}/recover`, body);
  notify(`${recovered} dead deliver${recovered === 1 ? "y" : "ies"} queued again.`, true);
  await loadDeliveries(false);
}

// ---- wiring ----------------------------------------------------------------

const guard = (fn) => (e) => { Promise.resolve(fn(e)).catch(fail); };

document.addEventListener("DOMContentLoaded", () => {
  $("#sign-in-form").addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    await signIn($("#api-key").value.trim());
  }));
  $("#sign-out").addEventListener("click", () => signOut());
  for (const b of document.querySelectorAll("[data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#add-rule").addEventListener("click", () => openRuleForm(null));
  $("#rule-cancel").addEventListener("click", () => { $("#rule-form").hidden = true; });
  $("#rule-form").addEventListener("submit", guard(saveRule));
  $("#rule-form").scope.addEventListener("change", (e) => { $("#rule-form").scope_id.disabled = e.target.value === "universal"; });
  $("#key-reveal").addEventListener("click", guard(async () => {
    if (!state.key) await loadKey();
    state.shown = !state.shown;
    renderKey();
  }));
  $("#key-copy").addEventListener("click", guard(copyKey));
  $("#key-rotate").addEventListener("click", guard(rotateKey));
  $("#delivery-filter").addEventListener("submit", guard((e) => { e.preventDefault(); return loadDeliveries(false); }));
  $("#deliveries-more").addEventListener("click", guard(() => loadDeliveries(true)));
  $("#recover-form").addEventListener("submit", guard(recover));
  loadNames().catch((e) => signOut(`Cannot read Hookline's API description: ${e.message}`));
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved).catch((e) => signOut(e.message));
});
