// The operator's pages: dashboard, channels, accounts and keys, request log, prices. Each route is
// {id, title, mount(view, ctx)}; ctx.op(path, {method, body, query}) is the admin API (session cookie
// + CSRF), ctx.ui the DOM helpers. mount may return a cleanup function (timers).

import { timeChart, barChart } from "./charts.js";
import {
  el, clear, table, field, badge, busy, message, notice, confirmDialog, showSecretDialog,
  timeEl, fmtTime, fmtUsd, fmtMs, fmtPercent, localInputToIso, isoToLocalInput, newestOnly, repeat,
} from "./ui.js";

// ------------------------------------------------------------ shared bits

/** Exact USD decimal string -> integer micros (display sums without float drift). */
function usdToMicros(value) {
  if (value === null || value === undefined || value === "") return 0;
  const s = String(value).trim();
  const neg = s.startsWith("-");
  const [int, frac = ""] = (neg ? s.slice(1) : s).split(".");
  const micros = Number(int || "0") * 1e6 + Number((frac + "000000").slice(0, 6));
  return neg ? -micros : micros;
}

function microsToUsd(micros) {
  const neg = micros < 0;
  const m = Math.round(Math.abs(micros));
  return `${neg ? "-" : ""}${Math.floor(m / 1e6)}.${String(m % 1e6).padStart(6, "0")}`;
}

const fmtInt = (v) => Math.round(Number(v) || 0).toLocaleString("en-US");
const fmtUsdNumber = (v) => {
  const n = Number(v) || 0;
  if (n !== 0 && Math.abs(n) < 0.01) return `$${n.toFixed(4)}`;
  return `$${n.toFixed(2)}`;
};
const fmtRate = (v) => `${((Number(v) || 0) * 100).toFixed(1)}%`;

function pageHeader(title, intro, ...actions) {
  return el("div", { class: "page-header" },
    el("div", null, el("h1", null, title), intro ? el("p", { class: "intro" }, intro) : null),
    actions.length ? el("div", { class: "page-actions" }, actions) : null);
}

/** Show an error from an admin call next to the thing it is about (401s are handled by the shell). */
function showError(target, err, prefix = "") {
  if (err && err.status === 401) return;
  const text = `${prefix}${err && err.message ? err.message : String(err)}`;
  clear(target, message(text, "error"));
  target.hidden = false;
}

function statusBox(id) {
  return el("div", { id, class: "status-box", role: "status", "aria-live": "polite" });
}

function setStatus(box, text, kind = "ok") {
  clear(box, message(text, kind));
  box.hidden = false;
}

/** Blank -> null; otherwise a positive integer or an Error naming the field. */
function intOrNull(value, label) {
  const s = String(value ?? "").trim();
  if (!s) return null;
  if (!/^\d+$/.test(s) || Number(s) < 1) throw new Error(`${label} must be a whole number of at least 1, or blank.`);
  return Number(s);
}

function safeId(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, "_");
}

let operationsCache = null;
async function loadOperations(op) {
  if (!operationsCache) {
    operationsCache = op("admin/operations").catch((err) => { operationsCache = null; throw err; });
  }
  return operationsCache;
}

// ------------------------------------------------------------ dashboard

const RANGES = [
  { value: "24h", label: "Last 24 hours (hourly)", hours: 24, bucket: "hour" },
  { value: "7d", label: "Last 7 days (hourly)", hours: 168, bucket: "hour" },
  { value: "30d", label: "Last 30 days (daily)", hours: 720, bucket: "day" },
  { value: "90d", label: "Last 90 days (daily)", hours: 2160, bucket: "day" },
  { value: "365d", label: "Last 365 days (daily)", hours: 8760, bucket: "day" },
];
let dashboardRange = "7d";
const dashboardScope = { operation: "", channel: "" };

async function mountDashboard(view, { op }) {
  let operations = [];
  let channels = [];
  await Promise.all([
    loadOperations(op).then((o) => { operations = o || []; }).catch(() => {}),
    op("admin/channels").then((c) => { channels = c || []; }).catch(() => {}),
  ]);
  const channelNames = [...new Set([...channels.map((c) => c.name), dashboardScope.channel].filter(Boolean))].sort();
  const rangeField = field({ id: "dash-range", label: "Period", type: "select", value: dashboardRange,
                             options: RANGES.map((r) => ({ value: r.value, label: r.label })) });
  const operationField = field({ id: "dash-operation", label: "Operation", type: "select", value: dashboardScope.operation,
                                 options: [{ value: "", label: "All operations" },
                                           ...operations.map((o) => ({ value: o.operation, label: o.operation }))] });
  const channelField = field({ id: "dash-channel", label: "Channel", type: "select", value: dashboardScope.channel,
                               options: [{ value: "", label: "All channels" }, ...channelNames.map((n) => ({ value: n, label: n }))] });
  const refresh = el("button", { type: "button", id: "dash-refresh", class: "secondary" }, "Refresh");
  const body = el("div", { id: "dashboard-body", "aria-busy": "true" });
  const errorBox = el("div", { id: "dashboard-error", hidden: true });
  view.append(
    pageHeader("Dashboard", "Requests, images, revenue, upstream cost and errors over time, per operation and per channel. "
               + "Choose an operation or a channel to see its own figures over time."),
    el("div", { class: "toolbar" }, rangeField, operationField, channelField, refresh),
    errorBox, body);

  const begin = newestOnly();
  async function load() {
    const range = RANGES.find((r) => r.value === dashboardRange) || RANGES[1];
    const current = begin();  // the period or scope may change again before this answer comes
    body.setAttribute("aria-busy", "true");
    errorBox.hidden = true;
    try {
      const query = { hours: range.hours, bucket: range.bucket };
      if (dashboardScope.operation) query.operation = dashboardScope.operation;
      if (dashboardScope.channel) query.channel = dashboardScope.channel;
      const stats = await op("admin/stats", { query });
      if (current()) renderDashboard(body, stats, range);
    } catch (err) {
      if (current()) showError(errorBox, err, "The statistics could not be loaded: ");
    } finally {
      if (current()) body.setAttribute("aria-busy", "false");
    }
  }
  document.getElementById("dash-range").addEventListener("change", (e) => { dashboardRange = e.target.value; load(); });
  for (const name of ["operation", "channel"]) {
    document.getElementById(`dash-${name}`).addEventListener("change", (e) => { dashboardScope[name] = e.target.value; load(); });
  }
  refresh.addEventListener("click", () => busy(refresh, load));
  await load();
}

/** "Over time", or "Over time: operation v3-generate, channel up" when the figures are scoped. */
function scopeTitle(title, stats) {
  const parts = [stats.operation ? `operation ${stats.operation}` : "", stats.channel ? `channel ${stats.channel}` : ""].filter(Boolean);
  return parts.length ? `${title}: ${parts.join(", ")}` : title;
}

function renderDashboard(body, stats, range) {
  const buckets = stats.buckets || [];
  const byOp = stats.by_operation || [];
  const byChannel = stats.by_channel || [];
  const total = (key) => buckets.reduce((a, b) => a + (Number(b[key]) || 0), 0);
  const totalUsd = (key) => buckets.reduce((a, b) => a + usdToMicros(b[key]), 0);
  const requests = total("requests");
  const errors = total("errors");
  const revenue = totalUsd("revenue_usd");
  const cost = totalUsd("upstream_cost_usd");
  const card = (id, label, value) => el("div", { class: "stat", id },
    el("span", { class: "stat-label" }, label), el("span", { class: "stat-value" }, value));

  clear(body,
    el("h2", { class: "visually-hidden" }, "Totals"),
    el("div", { class: "stats", id: "dash-totals" },
      card("stat-requests", "Requests", fmtInt(requests)),
      card("stat-images", "Images", fmtInt(total("images"))),
      card("stat-revenue", "Revenue", fmtUsd(microsToUsd(revenue))),
      card("stat-cost", "Upstream cost", fmtUsd(microsToUsd(cost))),
      card("stat-margin", "Margin", fmtUsd(microsToUsd(revenue - cost))),
      card("stat-error-rate", "Error rate", requests ? fmtPercent(errors / requests) : "—")),
    el("h2", { id: "dash-over-time" }, scopeTitle("Over time", stats)),
    el("div", { class: "chart-grid" },
      timeChart({ id: "chart-requests", title: "Requests and errors", points: buckets, bucket: range.bucket, format: fmtInt, integer: true,
                  series: [{ name: "Requests", value: (b) => b.requests }, { name: "Errors", value: (b) => b.errors }] }),
      timeChart({ id: "chart-images", title: "Images", points: buckets, bucket: range.bucket, format: fmtInt, integer: true,
                  series: [{ name: "Images", value: (b) => b.images }] }),
      timeChart({ id: "chart-money", title: "Revenue and upstream cost (USD)", points: buckets, bucket: range.bucket,
                  format: fmtUsdNumber,
                  series: [{ name: "Revenue", value: (b) => usdToMicros(b.revenue_usd) / 1e6 },
                           { name: "Upstream cost", value: (b) => usdToMicros(b.upstream_cost_usd) / 1e6 }] }),
      timeChart({ id: "chart-error-rate", title: "Error rate", points: buckets, bucket: range.bucket, format: fmtRate,
                  series: [{ name: "Error rate", value: (b) => b.error_rate }] })),
    el("h2", null, "Per operation"),
    el("div", { class: "chart-grid" },
      barChart({ id: "chart-op-requests", title: "Requests per operation", format: fmtInt,
                 items: byOp.map((o) => ({ label: o.operation, value: o.requests })) }),
      barChart({ id: "chart-op-revenue", title: "Revenue per operation (USD)", format: fmtUsdNumber,
                 items: byOp.map((o) => ({ label: o.operation, value: usdToMicros(o.revenue_usd) / 1e6 })) })),
    table({ id: "dash-operations", caption: "Per operation", label: "Per operation", rows: byOp, empty: "No requests in this period.",
            columns: [
              { label: "Operation", value: (o) => o.operation },
              { label: "Requests", value: (o) => fmtInt(o.requests), className: "num" },
              { label: "Images", value: (o) => fmtInt(o.images), className: "num" },
              { label: "Revenue", value: (o) => fmtUsd(o.revenue_usd), className: "num" },
              { label: "Upstream cost", value: (o) => fmtUsd(o.upstream_cost_usd), className: "num" },
              { label: "Errors", value: (o) => fmtInt(o.errors), className: "num" },
              { label: "Error rate", value: (o) => (o.requests ? fmtPercent(o.errors / o.requests) : "—"), className: "num" },
            ] }),
    el("h2", null, "Per channel"),
    el("div", { class: "chart-grid" },
      barChart({ id: "chart-channel-attempts", title: "Upstream attempts per channel", format: fmtInt,
                 items: byChannel.map((c) => ({ label: c.channel, value: c.attempts })) }),
      barChart({ id: "chart-channel-errors", title: "Failed attempts per channel", format: fmtInt,
                 items: byChannel.map((c) => ({ label: c.channel, value: c.errors })) })),
    table({ id: "dash-channels", caption: "Per channel", label: "Per channel", rows: byChannel, empty: "No upstream attempts in this period.",
            columns: [
              { label: "Channel", value: (c) => c.channel },
              { label: "Attempts", value: (c) => fmtInt(c.attempts), className: "num" },
              { label: "Errors", value: (c) => fmtInt(c.errors), className: "num" },
              { label: "Error rate", value: (c) => (c.attempts ? fmtPercent(c.errors / c.attempts) : "—"), className: "num" },
              { label: "Upstream cost", value: (c) => fmtUsd(c.upstream_cost_usd), className: "num" },
              { label: "Latency p50", value: (c) => fmtMs(c.latency_ms_p50), className: "num" },
            ] }));
}

// ------------------------------------------------------------ channels

const CHANNEL_KINDS = [{ value: "relay", label: "relay (a reseller or another ideohub)" },
                       { value: "ideogram", label: "ideogram (api.ideogram.ai)" }];
const AUTH_STYLES = [{ value: "", label: "The kind's default" }, { value: "bearer", label: "bearer (Authorization: Bearer)" },
                     { value: "api-key", label: "api-key (Api-Key header)" }];
const PATH_STYLES = [{ value: "", label: "The kind's default" }, { value: "official", label: "official (/generate)" },
                     { value: "ideogram", label: "ideogram (/ideogram/generate)" },
                     { value: "ideogram-v1", label: "ideogram-v1 (/ideogram/v1/generate for legacy)" }];

function healthBadge(health, enabled) {
  const s = (health && health.state) || (enabled === false ? "disabled" : "ok");
  const kind = { ok: "ok", failing: "error", cooling: "warn", disabled: "muted" }[s] || "muted";
  return badge(s, kind);
}

/** The health badge with what stands behind it: failures in a row, cooling until, last success. */
function healthCell(c) {
  const h = c.health || {};
  return el("div", { class: "health" },
    healthBadge(c.health, c.enabled),
    h.consecutive_failures ? el("div", { class: "hint" }, `${h.consecutive_failures} failure${h.consecutive_failures === 1 ? "" : "s"} in a row`) : null,
    h.cooling_until ? el("div", { class: "hint" }, "cooling until ", timeEl(h.cooling_until)) : null,
    el("div", { class: "hint" }, "last OK ", h.last_ok_at ? timeEl(h.last_ok_at) : "never"));
}

async function mountChannels(view, { op }) {
  const testResults = new Map(); // channel name -> {ok, text}
  const listError = el("div", { id: "channels-error", hidden: true });
  const formStatus = statusBox("channel-form-status");
  const formHolder = el("div", { id: "channel-form-holder" });
  const listHolder = el("div", { id: "channels-list", "aria-busy": "true" });
  const addButton = el("button", { type: "button", id: "channel-add-open" }, "Add channel");
  const refreshButton = el("button", { type: "button", id: "channels-refresh", class: "secondary" }, "Refresh");
  const updated = el("p", { id: "channels-updated", class: "hint" });
  view.append(
    pageHeader("Channels", "Upstreams the relay sends requests to, with their live health from the shared state. Refreshes every 10 seconds.",
               addButton, refreshButton),
    formStatus, formHolder, listError, updated, listHolder);
  let channels = [];
  const begin = newestOnly();

  /** true when the list was loaded; an error is shown once, not re-announced on every poll. */
  async function load() {
    const current = begin();
    try {
      const answer = await op("admin/channels");
      if (!current()) return true;
      channels = answer;
      listError.hidden = true;
      renderList();
      updated.textContent = `Updated ${fmtTime(new Date().toISOString())}.`;
      return true;
    } catch (err) {
      if (current() && listError.hidden) showError(listError, err, "The channels could not be loaded: ");
      return false;
    } finally {
      listHolder.setAttribute("aria-busy", "false");
    }
  }

  function renderList() {
    const focusedId = document.activeElement && listHolder.contains(document.activeElement) ? document.activeElement.id : null;
    clear(listHolder, table({
      id: "channels-table", caption: "Channels", rows: channels, empty: "No channels yet. Add one to relay requests upstream.",
      rowAttrs: (c) => ({ dataset: { channel: c.name } }),
      columns: [
        { label: "Channel", value: (c) => el("div", null, el("strong", null, c.name),
          el("div", { class: "hint" }, `${c.kind} · ${c.base_url || ""}`),
          c.source ? el("div", { class: "hint" }, `from ${c.source}`) : null) },
        { label: "Health", value: (c) => healthCell(c) },
        { label: "In flight", className: "num", value: (c) => `${c.health ? c.health.in_flight ?? 0 : 0}${c.max_in_flight ? ` / ${c.max_in_flight}` : ""}` },
        { label: "Latency p50", className: "num", value: (c) => (c.health && c.health.latency_ms_p50 != null ? fmtMs(c.health.latency_ms_p50) : "—") },
        { label: "Last hour", className: "num", value: (c) => (c.health ? `${c.health.attempts_1h ?? 0} attempts, ${c.health.errors_1h ?? 0} errors` : "—") },
        { label: "Last errors", value: (c) => errorsCell(c) },
        { label: "Operations", value: (c) => c.operations_text || (c.operations ? c.operations.join(",") : "all") },
        { label: "Priority / weight", className: "num", value: (c) => `${c.priority ?? ""} / ${c.weight ?? ""}` },
        { label: "Actions", value: (c) => channelActions(c) },
      ],
    }));
    if (focusedId) {
      const again = document.getElementById(focusedId);
      if (again) again.focus();
    }
  }

  /** The stored last error, then the last hour's latest failed attempts (when, what, status). */
  function errorsCell(c) {
    const h = c.health || {};
    const recent = h.recent_errors || [];
    if (!h.last_error && !recent.length) return "—";
    return el("div", { id: `channel-errors-${safeId(c.name)}` },
      h.last_error ? el("span", { class: "error-text" }, h.last_error) : null,
      recent.length ? el("ul", { class: "recent-errors" }, recent.map((e) => el("li", null,
        timeEl(e.at), ` ${e.outcome}${e.status_code ? ` (HTTP ${e.status_code})` : ""}`))) : null);
  }

  function channelActions(c) {
    const sid = safeId(c.name);
    const result = el("div", { id: `channel-test-result-${sid}`, class: "test-result", role: "status", "aria-live": "polite",
                               dataset: { channel: c.name } });
    const prior = testResults.get(c.name);
    if (prior) renderTestResult(result, prior);
    const test = el("button", { type: "button", id: `channel-test-${sid}`, class: "small", "aria-label": `Test channel ${c.name}` }, "Test");
    test.addEventListener("click", () => busy(test, async () => {
      clear(result, el("span", { class: "hint" }, "Testing…"));
      try {
        const r = await op(`admin/channels/${encodeURIComponent(c.name)}/test`, { method: "POST" });
        testResults.set(c.name, r);
      } catch (err) {
        if (err.status === 401) return;
        testResults.set(c.name, { ok: false, status_code: err.status || null, latency_ms: null, detail: err.message });
      }
      renderTestResult(document.getElementById(result.id) || result, testResults.get(c.name));
      notice(`Channel ${c.name} test: ${testResults.get(c.name).ok ? "ok" : "failed"}.`, testResults.get(c.name).ok ? "ok" : "error");
    }));
    const edit = el("button", { type: "button", id: `channel-edit-${sid}`, class: "small secondary", "aria-label": `Edit channel ${c.name}` }, "Edit");
    edit.addEventListener("click", () => openForm(c));
    const toggle = el("button", { type: "button", id: `channel-toggle-${sid}`, class: "small secondary",
                                  "aria-label": `${c.enabled ? "Disable" : "Enable"} channel ${c.name}` }, c.enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", () => busy(toggle, async () => {
      try {
        await op(`admin/channels/${encodeURIComponent(c.name)}`, { method: "PATCH", body: { enabled: !c.enabled } });
        await load();
        setStatus(formStatus, `Channel ${c.name} ${c.enabled ? "disabled" : "enabled"}.`);
      } catch (err) {
        showError(formStatus, err, `Channel ${c.name} could not be changed: `);
      }
    }));
    const del = el("button", { type: "button", id: `channel-delete-${sid}`, class: "small danger", "aria-label": `Delete channel ${c.name}` }, "Delete");
    del.addEventListener("click", async () => {
      if (!(await confirmDialog(`Delete channel ${c.name}? Requests stop going to it at once.`, "Delete channel"))) return;
      try {
        await op(`admin/channels/${encodeURIComponent(c.name)}`, { method: "DELETE" });
        testResults.delete(c.name);
        await load();
        setStatus(formStatus, `Channel ${c.name} deleted.`);
      } catch (err) {
        showError(formStatus, err, `Channel ${c.name} could not be deleted: `);
      }
    });
    return el("div", { class: "cell-actions" }, el("div", { class: "button-row" }, test, edit, toggle, del), result);
  }

  function renderTestResult(node, r) {
    const parts = [r.ok ? "ok" : "failed"];
    if (r.status_code != null) parts.push(`HTTP ${r.status_code}`);
    if (r.latency_ms != null) parts.push(fmtMs(r.latency_ms));
    clear(node, badge(r.ok ? "ok" : "failed", r.ok ? "ok" : "error"), " ",
      el("span", { class: "test-detail" }, parts.slice(1).join(", ")),
      r.detail ? el("div", { class: (r.ok ? "hint" : "error-text") + " test-detail-text" }, r.detail) : null);
    node.dataset.ok = String(Boolean(r.ok));
  }

  function openForm(existing) {
    const editing = Boolean(existing);
    const c = existing || {};
    const heading = editing ? `Edit channel ${c.name}` : "Add channel";
    const errorBox = el("div", { id: "channel-form-error", hidden: true });
    const submit = el("button", { type: "submit", id: "channel-submit" }, editing ? "Save changes" : "Add channel");
    const cancel = el("button", { type: "button", id: "channel-cancel", class: "secondary" }, "Cancel");
    const form = el("form", { id: "channel-form", class: "card form-grid", "aria-labelledby": "channel-form-heading", novalidate: true },
      el("h2", { id: "channel-form-heading", class: "span-all" }, heading),
      field({ id: "channel-name", label: "Name", value: c.name || "", required: true, readonly: editing, maxlength: "64",
              autocomplete: "off", hint: editing ? "The name cannot be changed." : "Letters, digits, - and _." }),
      field({ id: "channel-kind", label: "Kind", type: "select", options: CHANNEL_KINDS, value: c.kind || "relay" }),
      field({ id: "channel-base-url", label: "Base URL", type: "url", value: editing ? c.base_url || "" : "",
              placeholder: "https://relay.example.com", hint: "Blank for kind ideogram: https://api.ideogram.ai." }),
      field({ id: "channel-key", label: "Upstream key", type: "password", autocomplete: "new-password",
              hint: editing ? "Blank keeps the stored key." : "Stored encrypted; never shown again." }),
      field({ id: "channel-auth", label: "Auth", type: "select", options: AUTH_STYLES, value: editing ? c.auth || "" : "" }),
      field({ id: "channel-path-style", label: "Path style", type: "select", options: PATH_STYLES, value: editing ? c.path_style || "" : "" }),
      field({ id: "channel-priority", label: "Priority", type: "number", step: "1", value: c.priority ?? "", hint: "Higher tiers are tried first; blank: default." }),
      field({ id: "channel-weight", label: "Weight", type: "number", step: "1", min: "0", value: c.weight ?? "", hint: "Share among channels of one priority." }),
      field({ id: "channel-max-in-flight", label: "Max in flight", type: "number", step: "1", min: "1", value: c.max_in_flight ?? "",
              hint: "Requests at once; blank: default." }),
      field({ id: "channel-operations", label: "Operations", value: editing ? c.operations_text || (c.operations || []).join(",") : "",
              placeholder: "legacy,3.0,4.0,v2", hint: "Comma-separated operations or families (legacy, 3.0, 4.0, v2); blank: the kind's default (relay: legacy,3.0; ideogram: all)." }),
      field({ id: "channel-enabled", label: "Enabled", type: "checkbox", checked: editing ? c.enabled !== false : true }),
      el("details", { id: "channel-advanced", class: "span-all advanced" },
        el("summary", null, "Timeouts and cost"),
        el("div", { class: "form-grid" },
          field({ id: "channel-timeout", label: "Timeout (s)", type: "number", min: "1", step: "any", value: c.timeout_s ?? "",
                  hint: "A whole request upstream; blank: default." }),
          field({ id: "channel-connect-timeout", label: "Connect timeout (s)", type: "number", min: "0.1", step: "any",
                  value: c.connect_timeout_s ?? "", hint: "Blank: default." }),
          field({ id: "channel-cost-multiplier", label: "Cost multiplier", type: "number", min: "0", step: "any",
                  value: c.cost_multiplier ?? "", hint: "Upstream cost = list price × this; blank: default." }))),
      el("div", { class: "span-all button-row" }, submit, cancel),
      el("div", { class: "span-all" }, errorBox));
    cancel.addEventListener("click", () => { clear(formHolder); addButton.focus(); });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(submit, async () => {
        errorBox.hidden = true;
        let body;
        try {
          body = channelBody(editing ? c : null);
        } catch (err) {
          showError(errorBox, err);
          return;
        }
        try {
          let done;
          if (editing) {
            await op(`admin/channels/${encodeURIComponent(c.name)}`, { method: "PATCH", body });
            done = `Channel ${c.name} saved.`;
          } else {
            const created = await op("admin/channels", { method: "POST", body });
            done = `Channel ${created.name || body.name} added.`;
          }
          clear(formHolder);
          await load();
          setStatus(formStatus, done); // after the table shows the change
          notice(done, "ok");
          addButton.focus();
        } catch (err) {
          showError(errorBox, err, editing ? "Not saved: " : "Not added: ");
        }
      });
    });
    clear(formHolder, form);
    formStatus.hidden = true;
    document.getElementById(editing ? "channel-base-url" : "channel-name").focus();
    form.scrollIntoView({ block: "nearest" });
  }

  /** The JSON body from the form; for an edit only the fields that changed. */
  function channelBody(original) {
    const v = (id) => document.getElementById(id).value.trim();
    const body = {
      name: v("channel-name"),
      kind: v("channel-kind"),
      base_url: v("channel-base-url") || null,
      auth: v("channel-auth") || null,
      path_style: v("channel-path-style") || null,
      priority: v("channel-priority") === "" ? null : Number(v("channel-priority")),
      weight: v("channel-weight") === "" ? null : Number(v("channel-weight")),
      max_in_flight: intOrNull(v("channel-max-in-flight"), "Max in flight"),
      operations: v("channel-operations") || null,
      enabled: document.getElementById("channel-enabled").checked,
    };
    const num = (id, label) => {
      const raw = v(id);
      if (raw === "") return null;
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${label} must be a number of at least 0, or blank.`);
      return n;
    };
    body.timeout_s = num("channel-timeout", "Timeout");
    body.connect_timeout_s = num("channel-connect-timeout", "Connect timeout");
    body.cost_multiplier = num("channel-cost-multiplier", "Cost multiplier");
    for (const k of ["priority", "weight"]) {
      if (body[k] !== null && !Number.isInteger(body[k])) throw new Error(`${k === "priority" ? "Priority" : "Weight"} must be a whole number.`);
    }
    const key = document.getElementById("channel-key").value;
    if (!original) {
      if (!body.name) throw new Error("Name is required.");
      if (!key) throw new Error("Upstream key is required.");
      const out = { key };
      for (const [k, val] of Object.entries(body)) if (val !== null) out[k] = val;
      return out;
    }
    const was = {
      kind: original.kind, base_url: original.base_url || null, auth: original.auth || null,
      path_style: original.path_style || null, priority: original.priority ?? null, weight: original.weight ?? null,
      max_in_flight: original.max_in_flight ?? null,
      operations: original.operations_text || (original.operations ? original.operations.join(",") : null),
      enabled: original.enabled !== false,
      timeout_s: original.timeout_s ?? null, connect_timeout_s: original.connect_timeout_s ?? null,
      cost_multiplier: original.cost_multiplier ?? null,
    };
    const out = {};
    for (const k of Object.keys(was)) {
      if (body[k] !== was[k]) out[k] = body[k];
    }
    if (key) out.key = key;
    return out;
  }

  addButton.addEventListener("click", () => openForm(null));
  refreshButton.addEventListener("click", () => busy(refreshButton, load));
  await load();
  return repeat(load, 10000);  // every 10 s after the last answer; slower while the server fails
}

// ------------------------------------------------------------ accounts and keys

let selectedAccountId = null;

function keyStatusBadge(k) {
  const s = k.status || (k.revoked ? "revoked" : "active");
  return badge(s, s === "active" ? "ok" : s === "revoked" ? "error" : "muted");
}

function keyLimitFields(prefix, k, operations) {
  const ops = operations.map((o) => ({ value: o.operation, label: `${o.operation} (${o.family})` }));
  return [
    field({ id: `${prefix}-name`, label: "Name", value: k.name || "", maxlength: "200", autocomplete: "off" }),
    field({ id: `${prefix}-rpm`, label: "Requests per minute", type: "number", min: "1", step: "1", value: k.rpm ?? "",
            hint: "Blank: the server default." }),
    field({ id: `${prefix}-max-images`, label: "Max images in flight", type: "number", min: "1", step: "1",
            value: k.max_images_in_flight ?? "", hint: "Blank: the server default." }),
    field({ id: `${prefix}-spend-cap`, label: "Spend cap (USD)", inputmode: "decimal", value: k.spend_cap_usd ?? "",
            placeholder: "e.g. 25", hint: "Blank: no cap." }),
    field({ id: `${prefix}-expires`, label: "Expires", type: "datetime-local", value: isoToLocalInput(k.expires_at),
            hint: "Your local time; blank: never." }),
    field({ id: `${prefix}-operations`, label: "Allowed operations", type: "select", multiple: true, size: "6",
            options: ops, value: k.allowed_operations || [],
            hint: "Select none for all operations. Ctrl or Cmd + click selects several." }),
  ];
}

/** Key limits from a form; `original` given: only what changed (null clears a limit). */
function keyLimitsBody(prefix, original) {
  const v = (id) => document.getElementById(`${prefix}-${id}`).value.trim();
  const selected = [...document.getElementById(`${prefix}-operations`).selectedOptions].map((o) => o.value);
  const spend = v("spend-cap");
  if (spend && !/^\d+(\.\d{1,6})?$/.test(spend)) throw new Error("Spend cap must be an amount in USD such as 25 or 2.50, or blank.");
  const body = {
    name: v("name"),
    rpm: intOrNull(v("rpm"), "Requests per minute"),
    max_images_in_flight: intOrNull(v("max-images"), "Max images in flight"),
    spend_cap_usd: spend || null,
    expires_at: localInputToIso(v("expires")) || null,
    allowed_operations: selected.length ? selected : null,
  };
  if (!original) {
    const out = {};
    for (const [k, val] of Object.entries(body)) if (val !== null && val !== "") out[k] = val;
    return out;
  }
  const out = {};
  if (body.name !== (original.name || "")) out.name = body.name;
  if (body.rpm !== (original.rpm ?? null)) out.rpm = body.rpm;
  if (body.max_images_in_flight !== (original.max_images_in_flight ?? null)) out.max_images_in_flight = body.max_images_in_flight;
  if (usdToMicros(body.spend_cap_usd) !== usdToMicros(original.spend_cap_usd) || (body.spend_cap_usd === null) !== (original.spend_cap_usd == null)) {
    out.spend_cap_usd = body.spend_cap_usd;
  }
  const wasExpiry = original.expires_at ? isoToLocalInput(original.expires_at) : "";
  if (v("expires") !== wasExpiry) out.expires_at = body.expires_at;
  const wasOps = [...(original.allowed_operations || [])].sort().join(",");
  if ([...selected].sort().join(",") !== wasOps) out.allowed_operations = body.allowed_operations;
  return out;
}

async function mountAccounts(view, { op }) {
  const createStatus = statusBox("account-create-status");
  const listError = el("div", { id: "accounts-error", hidden: true });
  const listHolder = el("div", { id: "accounts-list", "aria-busy": "true" });
  const detail = el("section", { id: "account-detail", class: "card", "aria-labelledby": "account-detail-heading", hidden: true });
  view.append(pageHeader("Accounts and keys", "Prepaid accounts, their balances and their API keys."));

  let groups = { default: 1 };
  let operations = [];
  try {
    const [prices, ops] = await Promise.all([op("admin/prices"), loadOperations(op)]);
    groups = prices.groups || groups;
    operations = ops || [];
  } catch (err) {
    if (err.status === 401) return undefined;
    view.append(message(`Groups or operations could not be loaded: ${err.message}`, "error"));
  }

  // create account
  const createSubmit = el("button", { type: "submit", id: "account-create-submit" }, "Create account");
  const createForm = el("form", { id: "account-create-form", class: "card form-grid", "aria-labelledby": "account-create-heading", novalidate: true },
    el("h2", { id: "account-create-heading", class: "span-all" }, "Create an account"),
    field({ id: "account-name", label: "Name", required: true, maxlength: "200", autocomplete: "off" }),
    field({ id: "account-group", label: "Price group", type: "select", value: "default",
            options: Object.entries(groups).map(([name, mult]) => ({ value: name, label: `${name} (× ${mult})` })) }),
    field({ id: "account-unlimited", label: "Unlimited (no balance check)", type: "checkbox" }),
    el("div", { class: "span-all button-row" }, createSubmit),
    el("div", { class: "span-all" }, createStatus));
  createForm.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(createSubmit, async () => {
      const name = document.getElementById("account-name").value.trim();
      if (!name) {
        setStatus(createStatus, "Name is required.", "error");
        document.getElementById("account-name").focus();
        return;
      }
      try {
        const account = await op("admin/accounts", { method: "POST", body: {
          name, group: document.getElementById("account-group").value,
          unlimited: document.getElementById("account-unlimited").checked } });
        document.getElementById("account-name").value = "";
        document.getElementById("account-unlimited").checked = false;
        selectedAccountId = account.id;
        await loadList();
        await showAccount(account.id, false);
        // last, so that the status means "the new account's detail is on the page"
        setStatus(createStatus, `Account ${account.name} created (${account.id}).`);
        notice(`Account ${account.name} created.`, "ok");
      } catch (err) {
        showError(createStatus, err, "Not created: ");
      }
    });
  });
  view.append(createForm, listError, el("h2", null, "Accounts"), listHolder, detail);

  let accounts = [];
  async function loadList() {
    try {
      accounts = await op("admin/accounts");
      listError.hidden = true;
      clear(listHolder, table({
        id: "accounts-table", caption: "Accounts", rows: accounts, empty: "No accounts.",
        rowAttrs: (a) => ({ dataset: { accountId: a.id }, class: a.id === selectedAccountId ? "selected" : null }),
        columns: [
          { label: "Name", value: (a) => a.name },
          { label: "ID", value: (a) => el("code", null, a.id) },
          { label: "Group", value: (a) => a.group },
          { label: "Balance", className: "num", value: (a) => (a.unlimited ? `${fmtUsd(a.balance_usd)} (unlimited)` : fmtUsd(a.balance_usd)) },
          { label: "Created", value: (a) => timeEl(a.created_at) },
          { label: "Actions", value: (a) => {
            const b = el("button", { type: "button", id: `account-manage-${safeId(a.id)}`, class: "small",
                                     "aria-label": `Manage account ${a.name}` }, "Manage");
            b.addEventListener("click", () => showAccount(a.id, true));
            return b;
          } },
        ],
      }));
    } catch (err) {
      showError(listError, err, "The accounts could not be loaded: ");
    } finally {
      listHolder.setAttribute("aria-busy", "false");
    }
  }

  const beginAccount = newestOnly();
  async function showAccount(accountId, focus) {
    const current = beginAccount();  // another account may be chosen before this one answers
    selectedAccountId = accountId;
    for (const tr of listHolder.querySelectorAll("tr[data-account-id]")) {
      tr.classList.toggle("selected", tr.dataset.accountId === accountId);
    }
    detail.hidden = false;
    detail.setAttribute("aria-busy", "true");
    let account;
    let keys;
    try {
      [account, keys] = await Promise.all([
        op(`admin/accounts/${encodeURIComponent(accountId)}`),
        op("admin/keys", { query: { account_id: accountId } }),
      ]);
    } catch (err) {
      if (err.status === 401 || !current()) return;
      clear(detail, message(`Account ${accountId} could not be loaded: ${err.message}`, "error"));
      detail.setAttribute("aria-busy", "false");
      return;
    }
    if (!current()) return;
    keys = (keys || []).filter((k) => !k.account_id || k.account_id === accountId);
    renderAccount(account, keys);
    detail.setAttribute("aria-busy", "false");
    if (focus) {
      const h = document.getElementById("account-detail-heading");
      h.focus();
      detail.scrollIntoView({ block: "start" });
    }
  }

  function renderAccount(account, keys) {
    const topupStatus = statusBox("topup-status");
    const keyStatus = statusBox("key-status");
    const topupSubmit = el("button", { type: "submit", id: "topup-submit" }, "Add funds");
    const topupForm = el("form", { id: "topup-form", class: "form-grid", "aria-labelledby": "topup-heading", novalidate: true },
      el("h3", { id: "topup-heading", class: "span-all" }, "Top up"),
      field({ id: "topup-usd", label: "Amount (USD)", inputmode: "decimal", required: true, placeholder: "e.g. 10 or 2.50", autocomplete: "off" }),
      field({ id: "topup-note", label: "Note (optional)", maxlength: "200", autocomplete: "off" }),
      el("div", { class: "span-all button-row" }, topupSubmit),
      el("div", { class: "span-all" }, topupStatus));
    topupForm.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(topupSubmit, async () => {
        const usd = document.getElementById("topup-usd").value.trim();
        const note = document.getElementById("topup-note").value.trim();
        if (!/^\d+(\.\d{1,6})?$/.test(usd) || usdToMicros(usd) <= 0) {
          setStatus(topupStatus, "Enter a positive amount in USD, such as 10 or 2.50.", "error");
          document.getElementById("topup-usd").focus();
          return;
        }
        try {
          const r = await op(`admin/accounts/${encodeURIComponent(account.id)}/topup`, { method: "POST", body: note ? { usd, note } : { usd } });
          document.getElementById("account-balance").textContent = fmtUsd(r.balance_usd);
          document.getElementById("topup-usd").value = "";
          document.getElementById("topup-note").value = "";
          setStatus(topupStatus, `Added ${fmtUsd(usd)}. New balance: ${fmtUsd(r.balance_usd)}.`);
          notice(`Added ${fmtUsd(usd)} to ${account.name}.`, "ok");
          loadList();
        } catch (err) {
          showError(topupStatus, err, "Not added: ");
        }
      });
    });

    const adjustStatus = statusBox("adjust-status");
    const adjustSubmit = el("button", { type: "submit", id: "adjust-submit", class: "secondary" }, "Apply correction");
    const adjustForm = el("form", { id: "adjust-form", class: "form-grid", novalidate: true, "aria-label": "Correct the balance" },
      field({ id: "adjust-usd", label: "Correction (USD)", inputmode: "decimal", required: true, placeholder: "e.g. -1.25",
              autocomplete: "off", hint: "Negative to debit." }),
      field({ id: "adjust-note", label: "Reason", required: true, maxlength: "200", autocomplete: "off",
              hint: "Kept on the ledger." }),
      el("div", { class: "span-all button-row" }, adjustSubmit),
      el("div", { class: "span-all" }, adjustStatus));
    adjustForm.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(adjustSubmit, async () => {
        const usd = document.getElementById("adjust-usd").value.trim();
        const note = document.getElementById("adjust-note").value.trim();
        if (!/^-?\d+(\.\d{1,6})?$/.test(usd) || usdToMicros(usd) === 0) {
          setStatus(adjustStatus, "Enter a non-zero amount in USD, such as -1.25 or 3.", "error");
          document.getElementById("adjust-usd").focus();
          return;
        }
        if (!note) {
          setStatus(adjustStatus, "Give a reason: it is kept on the ledger.", "error");
          document.getElementById("adjust-note").focus();
          return;
        }
        try {
          const r = await op(`admin/accounts/${encodeURIComponent(account.id)}/adjust`, { method: "POST", body: { usd, note } });
          document.getElementById("account-balance").textContent = fmtUsd(r.balance_usd);
          document.getElementById("adjust-usd").value = "";
          document.getElementById("adjust-note").value = "";
          setStatus(adjustStatus, `Corrected by ${fmtUsd(usd)}. New balance: ${fmtUsd(r.balance_usd)}.`);
          notice(`Balance of ${account.name} corrected.`, "ok");
          loadList();
        } catch (err) {
          showError(adjustStatus, err, "Not applied: ");
        }
      });
    });

    const keyCreateSubmit = el("button", { type: "submit", id: "key-create-submit" }, "Create key");
    const keyCreateForm = el("form", { id: "key-create-form", class: "form-grid", "aria-labelledby": "key-create-heading", novalidate: true },
      el("h3", { id: "key-create-heading", class: "span-all" }, "Create a key"),
      keyLimitFields("key", {}, operations),
      el("div", { class: "span-all button-row" }, keyCreateSubmit));
    keyCreateForm.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(keyCreateSubmit, async () => {
        let body;
        try {
          body = keyLimitsBody("key", null);
        } catch (err) {
          showError(keyStatus, err);
          return;
        }
        try {
          const created = await op("admin/keys", { method: "POST", body: { ...body, account_id: account.id } });
          const secret = created.key;
          created.key = undefined;
          setStatus(keyStatus, `Key ${created.name || created.prefix} created. Its secret was shown once.`);
          notice(`Key ${created.name || created.prefix} created.`, "ok");
          await showSecretDialog("New API key", secret,
            "Copy this key now and store it safely. It is shown only once: the server keeps only a hash of it.");
          await showAccount(account.id, false);
          const again = document.getElementById("key-status");
          if (again) setStatus(again, `Key ${created.name || created.prefix} created. Its secret was shown once.`);
        } catch (err) {
          showError(keyStatus, err, "Not created: ");
        }
      });
    });

    const editHolder = el("div", { id: "key-edit-holder" });
    const keysTable = table({
      id: "keys-table", caption: `Keys of ${account.name}`, rows: keys, empty: "No keys yet.",
      rowAttrs: (k) => ({ dataset: { keyId: k.id } }),
      columns: [
        { label: "Name", value: (k) => k.name || "—" },
        { label: "Key", value: (k) => el("code", null, `${k.prefix}…`) },
        { label: "Status", value: (k) => keyStatusBadge(k) },
        { label: "RPM", className: "num", value: (k) => (k.rpm ?? "default") },
        { label: "Images in flight", className: "num", value: (k) => (k.max_images_in_flight ?? "default") },
        { label: "Spend cap", className: "num", value: (k) => (k.spend_cap_usd ? fmtUsd(k.spend_cap_usd) : "none") },
        { label: "Spent", className: "num", value: (k) => (k.spent_usd != null ? fmtUsd(k.spent_usd) : "") },
        { label: "Expires", value: (k) => (k.expires_at ? timeEl(k.expires_at) : "never") },
        { label: "Operations", value: (k) => (k.allowed_operations && k.allowed_operations.length ? k.allowed_operations.join(", ") : "all") },
        { label: "Created", value: (k) => timeEl(k.created_at) },
        { label: "Actions", value: (k) => keyActions(k) },
      ],
    });

    function keyActions(k) {
      const sid = safeId(k.id);
      const label = k.name || k.prefix;
      const revoked = k.revoked || k.status === "revoked";
      const edit = el("button", { type: "button", id: `key-edit-${sid}`, class: "small secondary", "aria-label": `Edit limits of key ${label}`,
                                  disabled: revoked }, "Edit limits");
      edit.addEventListener("click", () => openKeyEdit(k));
      const revoke = el("button", { type: "button", id: `key-revoke-${sid}`, class: "small danger", "aria-label": `Revoke key ${label}`,
                                    disabled: revoked }, "Revoke");
      revoke.addEventListener("click", async () => {
        if (!(await confirmDialog(`Revoke key ${label}? Requests with it are refused from now on. This cannot be undone.`, "Revoke key"))) return;
        try {
          await op(`admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
          notice(`Key ${label} revoked.`, "ok");
          await showAccount(account.id, false);
          const again = document.getElementById("key-status");
          if (again) setStatus(again, `Key ${label} revoked.`);
        } catch (err) {
          showError(keyStatus, err, "Not revoked: ");
        }
      });
      return el("div", { class: "button-row" }, edit, revoke);
    }

    function openKeyEdit(k) {
      const label = k.name || k.prefix;
      const save = el("button", { type: "submit", id: "key-edit-submit" }, "Save limits");
      const cancel = el("button", { type: "button", id: "key-edit-cancel", class: "secondary" }, "Cancel");
      const form = el("form", { id: "key-edit-form", class: "card form-grid", "aria-labelledby": "key-edit-heading", novalidate: true },
        el("h3", { id: "key-edit-heading", class: "span-all", tabindex: "-1" }, `Edit limits of key ${label}`),
        keyLimitFields("key-edit", k, operations),
        el("p", { class: "hint span-all" }, "A blank field clears that limit."),
        el("div", { class: "span-all button-row" }, save, cancel));
      cancel.addEventListener("click", () => clear(editHolder));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        busy(save, async () => {
          let body;
          try {
            body = keyLimitsBody("key-edit", k);
          } catch (err) {
            showError(keyStatus, err);
            return;
          }
          if (!Object.keys(body).length) {
            setStatus(keyStatus, "Nothing changed.", "info");
            clear(editHolder);
            return;
          }
          try {
            await op(`admin/keys/${encodeURIComponent(k.id)}`, { method: "PATCH", body });
            notice(`Limits of key ${label} saved.`, "ok");
            await showAccount(account.id, false);
            const again = document.getElementById("key-status");
            if (again) setStatus(again, `Limits of key ${label} saved.`);
          } catch (err) {
            showError(keyStatus, err, "Not saved: ");
          }
        });
      });
      clear(editHolder, form);
      document.getElementById("key-edit-heading").focus();
    }

    clear(detail,
      el("div", { class: "detail-header" },
        el("h2", { id: "account-detail-heading", tabindex: "-1" }, `Account ${account.name}`),
        (() => {
          const close = el("button", { type: "button", id: "account-detail-close", class: "secondary small" }, "Close");
          close.addEventListener("click", () => {
            detail.hidden = true;
            selectedAccountId = null;
            const b = document.getElementById(`account-manage-${safeId(account.id)}`);
            if (b) b.focus();
          });
          return close;
        })()),
      el("dl", { class: "facts", id: "account-facts" },
        el("dt", null, "ID"), el("dd", null, el("code", { id: "account-id" }, account.id)),
        el("dt", null, "Group"), el("dd", null, account.group),
        el("dt", null, "Balance"), el("dd", null, el("strong", { id: "account-balance" }, fmtUsd(account.balance_usd))),
        el("dt", null, "Unlimited"), el("dd", null, account.unlimited ? "yes (no balance check)" : "no"),
        el("dt", null, "Created"), el("dd", null, timeEl(account.created_at))),
      topupForm,
      el("details", { id: "adjust-details", class: "advanced" }, el("summary", null, "Correct the balance"), adjustForm),
      el("h3", null, "Keys"),
      keyStatus,
      keysTable,
      editHolder,
      keyCreateForm);
  }

  await loadList();
  if (selectedAccountId && accounts.some((a) => a.id === selectedAccountId)) await showAccount(selectedAccountId, false);
  return undefined;
}

// ------------------------------------------------------------ request log

const STATES = [{ value: "", label: "Any" }, { value: "queued", label: "queued" }, { value: "running", label: "running" },
                { value: "done", label: "done" }, { value: "failed", label: "failed" }];

function stateBadge(s) {
  return badge(s || "unknown", { done: "ok", failed: "error", queued: "muted", running: "info" }[s] || "muted");
}

function valueText(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function msBetween(a, b) {
  if (!a || !b) return null;
  const d = new Date(b).getTime() - new Date(a).getTime();
  return Number.isFinite(d) ? d : null;
}

let requestFilter = {};

async function mountRequests(view, { op, apiRoot }) {
  const filterError = el("div", { id: "requests-error", hidden: true });
  const count = el("p", { id: "requests-count", class: "hint", role: "status" });
  const listHolder = el("div", { id: "requests-list", "aria-busy": "true" });
  const more = el("button", { type: "button", id: "requests-more", class: "secondary", hidden: true }, "Load more");
  const detail = el("section", { id: "request-detail", class: "card", "aria-labelledby": "request-detail-heading", hidden: true });
  view.append(pageHeader("Request log", "Every request with its state, charge and upstream attempts. Select a row for its details."));

  let accounts = [];
  let operations = [];
  let channels = [];
  await Promise.all([
    op("admin/accounts").then((a) => { accounts = a || []; }).catch(() => {}),
    loadOperations(op).then((o) => { operations = o || []; }).catch(() => {}),
    op("admin/channels").then((c) => { channels = c || []; }).catch(() => {}),
  ]);
  const accountName = new Map(accounts.map((a) => [a.id, a.name]));

  const f = requestFilter;
  const apply = el("button", { type: "submit", id: "filter-apply" }, "Apply filters");
  const reset = el("button", { type: "button", id: "filter-reset", class: "secondary" }, "Reset");
  const form = el("form", { id: "requests-filter", class: "card form-grid filters", role: "search", "aria-label": "Filter requests", novalidate: true },
    field({ id: "filter-account", label: "Account", type: "select", value: f.account_id || "",
            options: [{ value: "", label: "Any" }, ...accounts.map((a) => ({ value: a.id, label: `${a.name} (${a.id})` }))] }),
    field({ id: "filter-key", label: "Key ID", value: f.key_id || "", autocomplete: "off" }),
    field({ id: "filter-operation", label: "Operation", type: "select", value: f.operation || "",
            options: [{ value: "", label: "Any" }, ...operations.map((o) => ({ value: o.operation, label: o.operation }))] }),
    field({ id: "filter-state", label: "State", type: "select", options: STATES, value: f.state || "" }),
    field({ id: "filter-status", label: "Status code", type: "number", min: "100", max: "599", step: "1", value: f.status_code || "" }),
    field({ id: "filter-channel", label: "Channel", value: f.channel || "", list: "filter-channel-list", autocomplete: "off" }),
    el("datalist", { id: "filter-channel-list" }, channels.map((c) => el("option", { value: c.name }))),
    field({ id: "filter-since", label: "Since", type: "datetime-local", value: isoToLocalInput(f.since) }),
    field({ id: "filter-until", label: "Until", type: "datetime-local", value: isoToLocalInput(f.until) }),
    el("div", { class: "span-all button-row" }, apply, reset));
  view.append(form, filterError, detail, count, listHolder, el("div", { class: "button-row" }, more));

  let items = [];
  let nextBefore = null;

  function readFilter() {
    const v = (id) => document.getElementById(id).value.trim();
    const status = v("filter-status");
    if (status && !/^\d{3}$/.test(status)) throw new Error("Status code must be three digits, such as 402.");
    return {
      account_id: v("filter-account"), key_id: v("filter-key"), operation: v("filter-operation"), state: v("filter-state"),
      status_code: status, channel: v("filter-channel"),
      since: localInputToIso(v("filter-since")), until: localInputToIso(v("filter-until")),
    };
  }

  const beginPage = newestOnly();
  async function load(append) {
    const current = beginPage();  // new filters make an unfinished "Load more" stale
    more.disabled = true;
    listHolder.setAttribute("aria-busy", "true");
    filterError.hidden = true;
    try {
      const page = await op("admin/requests", { query: { ...requestFilter, limit: 50, before: append ? nextBefore : null } });
      if (!current()) return;
      items = append ? items.concat(page.items || []) : page.items || [];
      nextBefore = page.next_before || null;
      renderList();
    } catch (err) {
      if (current()) showError(filterError, err, "The requests could not be loaded: ");
    } finally {
      if (current()) {
        listHolder.setAttribute("aria-busy", "false");
        more.disabled = false;
      }
    }
  }

  function renderList() {
    count.textContent = `Showing ${items.length} request${items.length === 1 ? "" : "s"}${nextBefore ? "; more are available" : ""}.`;
    more.hidden = !nextBefore;
    clear(listHolder, table({
      id: "requests-table", caption: "Requests, newest first", rows: items, empty: "No requests match these filters.",
      rowAttrs: (r) => ({ dataset: { requestId: r.id }, class: "clickable" }),
      columns: [
        { label: "Time", value: (r) => {
          const b = el("button", { type: "button", class: "link", id: `request-open-${safeId(r.id)}`,
                                   "aria-label": `Details of request ${r.id}` }, fmtTime(r.created_at));
          return b;
        } },
        { label: "Operation", value: (r) => r.operation },
        { label: "State", value: (r) => stateBadge(r.state) },
        { label: "Status", className: "num", value: (r) => (r.status_code ?? "") },
        { label: "Account", value: (r) => accountName.get(r.account_id) || r.account_id || "" },
        { label: "Key", value: (r) => (r.key_id ? el("code", null, r.key_id) : "") },
        { label: "Channel", value: (r) => r.channel || "" },
        { label: "Images", className: "num", value: (r) => (r.images ?? "") },
        { label: "Charge", className: "num", value: (r) => (r.price_usd != null ? fmtUsd(r.price_usd) : "") },
        { label: "Latency", className: "num", value: (r) => fmtMs(r.latency_ms) },
        { label: "Error", value: (r) => el("span", { class: "error-text" }, r.failure_reason || r.error || "") },
      ],
    }));
  }

  listHolder.addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-request-id]");
    if (tr) openDetail(tr.dataset.requestId);
  });

  const beginDetail = newestOnly();
  async function openDetail(id) {
    const current = beginDetail();  // another row may be opened before this one answers
    for (const tr of listHolder.querySelectorAll("tr[data-request-id]")) tr.classList.toggle("selected", tr.dataset.requestId === id);
    detail.hidden = false;
    detail.setAttribute("aria-busy", "true");
    clear(detail, el("h2", { id: "request-detail-heading", tabindex: "-1" }, `Request ${id}`), el("p", { class: "hint" }, "Loading…"));
    let r;
    try {
      r = await op(`admin/requests/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status === 401 || !current()) return;
      clear(detail, el("h2", { id: "request-detail-heading", tabindex: "-1" }, `Request ${id}`),
        message(`The request could not be loaded: ${err.message}`, "error"), closeButton(id));
      detail.setAttribute("aria-busy", "false");
      return;
    }
    if (!current()) return;
    renderDetail(r);
    detail.setAttribute("aria-busy", "false");
    document.getElementById("request-detail-heading").focus({ preventScroll: true });
    detail.scrollIntoView({ block: "start" });
  }

  function closeButton(id) {
    const close = el("button", { type: "button", id: "request-detail-close", class: "secondary small" }, "Close");
    close.addEventListener("click", () => {
      detail.hidden = true;
      clear(detail);
      const b = document.getElementById(`request-open-${safeId(id)}`);
      if (b) b.focus();
    });
    return close;
  }

  function renderDetail(r) {
    const fact = (label, value, id) => [el("dt", null, label), el("dd", { id }, value === "" || value == null ? "—" : value)];
    const params = r.params && typeof r.params === "object" ? r.params : {};
    const paramEntries = Object.entries(params);
    const hasPrompt = paramEntries.some(([k]) => k.includes("prompt"));
    const queueMs = msBetween(r.created_at, r.started_at);
    const runMs = msBetween(r.started_at, r.finished_at);
    const now = Date.now();
    const images = r.images || [];
    clear(detail,
      el("div", { class: "detail-header" },
        el("h2", { id: "request-detail-heading", tabindex: "-1" }, `Request ${r.id}`),
        closeButton(r.id)),
      el("dl", { class: "facts", id: "request-summary" },
        fact("Operation", r.operation),
        fact("State", stateBadge(r.state), "request-state"),
        fact("Status code", r.status_code != null ? String(r.status_code) : ""),
        r.failure_reason ? fact("Failure reason", r.failure_reason) : null,
        r.error ? fact("Error", el("span", { class: "error-text" }, r.error)) : null,
        fact("Charge", r.price_usd != null ? fmtUsd(r.price_usd) : "", "request-charge"),
        fact("Images", r.images_delivered ?? images.length),
        fact("Account", r.account_id ? `${accountName.get(r.account_id) || ""} (${r.account_id})`.trim() : ""),
        fact("Key", r.key_id ? el("code", null, r.key_id) : ""),
        fact("Channel", r.channel || ""),
        fact("Engine / mode", [r.engine, r.mode].filter(Boolean).join(" / ")),
        fact("Generation", r.generation_id ? el("code", null, r.generation_id) : "")),
      el("h3", null, "Timings"),
      el("dl", { class: "facts", id: "request-timings" },
        fact("Received", timeEl(r.created_at)),
        fact("Started", timeEl(r.started_at)),
        fact("Finished", timeEl(r.finished_at)),
        fact("Waiting", queueMs != null ? fmtMs(queueMs) : ""),
        fact("Running", runMs != null ? fmtMs(runMs) : ""),
        fact("Total latency", fmtMs(r.latency_ms))),
      el("h3", null, "Parameters"),
      paramEntries.length
        ? el("dl", { class: "facts params", id: "request-params" },
          paramEntries.map(([k, v]) => [el("dt", null, k), el("dd", null, el("span", { class: "param-value" }, valueText(v)))]))
        : el("p", { id: "request-params", class: "hint" }, "No parameters recorded."),
      hasPrompt ? null : el("p", { class: "hint" }, "Prompts are recorded only when log_prompts is on."),
      el("h3", null, "Upstream attempts"),
      table({ id: "request-attempts", caption: "Upstream attempts", rows: r.attempts || [], empty: "No upstream attempts (served locally or refused before).",
              columns: [
                { label: "Channel", value: (a) => a.channel || "" },
                { label: "Outcome", value: (a) => a.outcome || "" },
                { label: "Status", className: "num", value: (a) => (a.status_code ?? "") },
                { label: "Latency", className: "num", value: (a) => fmtMs(a.latency_ms) },
                { label: "Images", className: "num", value: (a) => (a.images ?? "") },
                { label: "Cost", className: "num", value: (a) => (a.cost_usd != null ? fmtUsd(a.cost_usd) : "") },
                { label: "Time", value: (a) => timeEl(a.created_at) },
              ] }),
      el("h3", null, "Images"),
      images.length
        ? el("ul", { class: "thumbs", id: "request-images" }, images.map((img, i) => {
          const expired = !img.url || (img.expires_at && new Date(img.expires_at).getTime() <= now);
          const size = img.width && img.height ? `${img.width}×${img.height}` : "";
          if (expired) {
            return el("li", { class: "thumb expired" },
              el("div", { class: "thumb-expired", role: "img", "aria-label": `Image ${i + 1}: expired` }, "expired"),
              el("span", { class: "hint" }, [size, "link expired"].filter(Boolean).join(" · ")));
          }
          const href = new URL(img.url, apiRoot).href;
          return el("li", { class: "thumb" },
            el("a", { href, target: "_blank", rel: "noopener noreferrer" },
              el("img", { src: href, alt: `Image ${i + 1} of request ${r.id}${size ? `, ${size}` : ""}`, loading: "lazy",
                          width: "160", height: img.width && img.height ? String(Math.round((160 * img.height) / img.width)) : "160",
                          referrerpolicy: "no-referrer" })),
            el("span", { class: "hint" }, [size, img.media_type, img.expires_at ? `link until ${fmtTime(img.expires_at)}` : ""].filter(Boolean).join(" · ")));
        }))
        : el("p", { id: "request-images", class: "hint" }, "No images."));
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(apply, async () => {
      try {
        requestFilter = readFilter();
      } catch (err) {
        showError(filterError, err);
        return;
      }
      detail.hidden = true;
      await load(false);
    });
  });
  reset.addEventListener("click", () => {
    requestFilter = {};
    form.reset();
    for (const id of ["filter-account", "filter-key", "filter-operation", "filter-state", "filter-status", "filter-channel", "filter-since", "filter-until"]) {
      document.getElementById(id).value = "";
    }
    detail.hidden = true;
    busy(reset, () => load(false));
  });
  more.addEventListener("click", () => busy(more, () => load(true)));
  await load(false);
  return undefined;
}

// ------------------------------------------------------------ prices

async function mountPrices(view, { op }) {
  view.append(pageHeader("Prices", "The effective price table. Read-only: prices come from the configuration file (price overrides and groups)."));
  let prices;
  try {
    prices = await op("admin/prices");
  } catch (err) {
    if (err.status !== 401) view.append(message(`The prices could not be loaded: ${err.message}`, "error"));
    return undefined;
  }
  const groups = Object.entries(prices.groups || {});
  const rows = prices.rows || [];
  const filter = field({ id: "prices-filter", label: "Filter by operation or tier", type: "search", autocomplete: "off" });
  const holder = el("div", { id: "prices-list" });
  const render = () => {
    const q = document.getElementById("prices-filter") ? document.getElementById("prices-filter").value.trim().toLowerCase() : "";
    const shown = q ? rows.filter((r) => `${r.operation} ${r.tier}`.toLowerCase().includes(q)) : rows;
    clear(holder, table({
      id: "prices-table", caption: `Prices per image (USD), ${shown.length} of ${rows.length}`, rows: shown, empty: "No prices match.",
      columns: [
        { label: "Operation", value: (r) => r.operation },
        { label: "Tier", value: (r) => r.tier },
        ...(rows.some((r) => r.character_reference !== undefined)
          ? [{ label: "Character reference", value: (r) => (r.character_reference ? "yes" : "no") }] : []),
        ...(rows.some((r) => r.upscale_factor !== undefined)
          ? [{ label: "Upscale", value: (r) => r.upscale_factor ?? "" }] : []),
        { label: "Price", className: "num", value: (r) => fmtUsd(r.usd) },
        ...groups.some(([name]) => name !== "default")
          ? groups.map(([name]) => ({ label: `Group ${name}`, className: "num", value: (r) => fmtUsd((r.by_group || {})[name] ?? r.usd) }))
          : [],
        { label: "Source", value: (r) => badge(r.source, r.source === "override" ? "info" : "muted") },
      ],
    }));
  };
  view.append(
    el("h2", null, "Groups"),
    el("p", { class: "hint" }, "An account's group multiplies every price (rounded half up to the micro-dollar, as charged)."),
    table({ id: "price-groups", caption: "Price groups", rows: groups, empty: "No groups.",
            columns: [{ label: "Group", value: ([name]) => name }, { label: "Multiplier", className: "num", value: ([, m]) => `× ${m}` }] }),
    el("h2", null, "Price table"),
    el("div", { class: "toolbar" }, filter),
    holder);
  document.getElementById("prices-filter").addEventListener("input", render);
  render();
  return undefined;
}

export const OPERATOR_ROUTES = [
  { id: "dashboard", title: "Dashboard", mount: mountDashboard },
  { id: "channels", title: "Channels", mount: mountChannels },
  { id: "accounts", title: "Accounts and keys", mount: mountAccounts },
  { id: "requests", title: "Request log", mount: mountRequests },
  { id: "prices", title: "Prices", mount: mountPrices },
];
