// The key holder's pages: account (balance, own keys' limits, usage), own request log, playground.
// Every call goes through ctx.keyFetch (the key as the Api-Key header, never a cookie).

import { el, table, message, fmtUsd, fmtMs, timeEl, localInputToIso, busy, newestOnly } from "./ui.js";
import { errorText } from "./api.js";
import { mount as mountPlayground } from "./playground.js";

const PAGE_SIZE = 50;
const REQUEST_STATES = ["queued", "running", "done", "failed"];

async function getJson(ctx, path) {
  let r;
  try {
    r = await ctx.keyFetch(path);
  } catch (_) {
    throw new Error("The server could not be reached.");
  }
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!r.ok) throw new Error(`${path.split("?")[0]}: ${errorText(body, r.status)}`);
  return body;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Exact sums of decimal USD strings: micro-dollars as BigInt. */
function usdToMicros(value) {
  const m = /^(-?)(\d+)(?:\.(\d{0,6})\d*)?$/.exec(String(value ?? "").trim());
  if (!m) return 0n;
  const micros = BigInt(m[2]) * 1000000n + BigInt((m[3] || "").padEnd(6, "0") || "0");
  return m[1] ? -micros : micros;
}

function microsToUsd(micros) {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  return `${neg ? "-" : ""}${abs / 1000000n}.${String(abs % 1000000n).padStart(6, "0")}`;
}

function limitText(value, unit = "") {
  return value === null || value === undefined || value === "" ? "none" : `${value}${unit}`;
}

function section(id, title, ...children) {
  return el("section", { id, class: "card kh-section", "aria-labelledby": `${id}-title` },
    el("h2", { id: `${id}-title` }, title), ...children);
}

// ------------------------------------------------------------ account

async function mountAccount(view, ctx) {
  const balanceBox = el("div", { id: "kh-balance-body" }, message("Loading...", "info"));
  const keysBox = el("div", { id: "kh-keys-body" }, message("Loading...", "info"));
  const segment = el("select", { id: "kh-usage-segment", name: "segment_by" },
    el("option", { value: "DAY" }, "Day"), el("option", { value: "HOUR" }, "Hour"));
  const days = el("input", { id: "kh-usage-days", name: "days", type: "number", min: "1", max: "366", value: "30", inputmode: "numeric" });
  const refresh = el("button", { type: "submit", id: "kh-usage-refresh" }, "Show usage");
  const usageForm = el("form", { id: "kh-usage-form", class: "kh-filters" },
    el("div", { class: "field" }, el("label", { for: "kh-usage-segment" }, "Per"), segment),
    el("div", { class: "field" }, el("label", { for: "kh-usage-days" }, "Days"), days),
    el("div", { class: "actions" }, refresh));
  const usageBox = el("div", { id: "kh-usage-body" }, message("Loading...", "info"));

  view.replaceChildren(
    el("h1", null, "Account"),
    section("kh-balance", "Balance", balanceBox),
    section("kh-keys", "API keys", el("p", { class: "hint" }, "The keys of your account and their limits. Secrets are never shown."), keysBox),
    section("kh-usage", "Usage", usageForm, usageBox));

  const loadBalance = async () => {
    try {
      const b = await getJson(ctx, "v2/account/balance");
      balanceBox.replaceChildren(el("dl", { class: "kh-dl" },
        el("dt", null, "Account"), el("dd", { id: "kh-account-name" }, b.name || b.account_id || ""),
        el("dt", null, "Account id"), el("dd", null, el("code", null, b.account_id || "")),
        el("dt", null, "Balance"),
        el("dd", { id: "kh-balance-value", class: "kh-money" }, b.unlimited ? "Unlimited" : fmtUsd(b.balance_usd)),
        b.unlimited ? [el("dt", null, "Net of charges"), el("dd", { class: "kh-money" }, fmtUsd(b.balance_usd))] : null));
    } catch (err) {
      balanceBox.replaceChildren(message(err.message, "error"));
    }
  };

  const loadKeys = async () => {
    try {
      const body = await getJson(ctx, "v2/account/api-keys");
      const keys = Array.isArray(body?.api_keys) ? body.api_keys : [];
      keysBox.replaceChildren(table({
        id: "kh-keys-table", caption: "API keys", label: "API keys of this account",
        rows: keys,
        rowAttrs: (k) => ({ dataset: { keyId: k.api_key_id, current: String(Boolean(k.current)) }, class: k.current ? "kh-current" : null }),
        columns: [
          { label: "Key", value: (k) => el("span", null, el("code", null, k.redacted_api_key || k.api_key_id || ""),
            k.current ? el("strong", { class: "kh-current-mark" }, " (this key)") : null) },
          { label: "Label", value: (k) => k.label || "" },
          { label: "Status", value: (k) => k.status || "" },
          { label: "Requests/min", value: (k) => limitText(k.limits?.rpm) },
          { label: "Images in flight", value: (k) => limitText(k.limits?.max_images_in_flight) },
          { label: "Spend cap", value: (k) => (k.limits?.spend_cap_usd ? fmtUsd(k.limits.spend_cap_usd) : "none") },
          { label: "Spent", value: (k) => fmtUsd(k.limits?.spent_usd ?? "0") },
          { label: "Expires", value: (k) => (k.limits?.expires_at ? timeEl(k.limits.expires_at) : "never") },
          { label: "Operations", value: (k) => (Array.isArray(k.limits?.allowed_operations) && k.limits.allowed_operations.length
            ? k.limits.allowed_operations.join(", ") : "all") },
          { label: "Created", value: (k) => timeEl(k.creation_time) },
        ],
        empty: "No keys.",
      }));
    } catch (err) {
      keysBox.replaceChildren(message(err.message, "error"));
    }
  };

  const loadUsage = async () => {
    const n = Math.min(366, Math.max(1, Math.round(Number(days.value) || 30)));
    days.value = String(n);
    try {
      const body = await getJson(ctx, `v2/account/usage${query({ segment_by: segment.value, days: n })}`);
      const rows = [];
      for (const seg of Array.isArray(body?.usage_segments) ? body.usage_segments : []) {
        for (const t of Array.isArray(seg.tool_usage) ? seg.tool_usage : []) rows.push({ seg, t });
      }
      let total = 0n;
      let requests = 0;
      let images = 0;
      for (const { t } of rows) {
        total += t.amount_usd !== undefined ? usdToMicros(t.amount_usd) : BigInt(Math.round(Number(t.amount?.amount || 0) * 10000));
        requests += Number(t.requests || 0);
        images += Number(t.images || 0);
      }
      const amountOf = (t) => (t.amount_usd !== undefined ? fmtUsd(t.amount_usd)
        : fmtUsd(microsToUsd(BigInt(Math.round(Number(t.amount?.amount || 0) * 10000)))));
      usageBox.replaceChildren(
        el("p", { id: "kh-usage-total", class: "kh-total" },
          `Total over ${n} day${n === 1 ? "" : "s"}: ${fmtUsd(microsToUsd(total))} · ${requests} request${requests === 1 ? "" : "s"} · ${images} image${images === 1 ? "" : "s"}`),
        table({
          id: "kh-usage-table", caption: `Usage per ${segment.value === "HOUR" ? "hour" : "day"}`, label: "Usage",
          rows,
          columns: [
            { label: "From", value: ({ seg }) => timeEl(seg.segment_start) },
            { label: "Operation", value: ({ t }) => t.full_tool_name || t.tool_type || "" },
            { label: "Key", value: ({ t }) => (t.api_key_id ? el("code", null, t.api_key_id) : "") },
            { label: "Requests", value: ({ t }) => String(t.requests ?? "") },
            { label: "Images", value: ({ t }) => String(t.images ?? "") },
            { label: "Amount", value: ({ t }) => amountOf(t), className: "kh-money" },
          ],
          empty: "No usage in this period.",
        }));
    } catch (err) {
      usageBox.replaceChildren(message(err.message, "error"));
    }
  };

  usageForm.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(refresh, loadUsage);
  });
  await Promise.all([loadBalance(), loadKeys(), loadUsage()]);
}

// ------------------------------------------------------------ requests

async function mountRequests(view, ctx) {
  const operation = el("input", { id: "kh-req-operation", name: "operation", type: "text", spellcheck: "false",
                                  placeholder: "e.g. v3-generate", autocomplete: "off" });
  const stateSel = el("select", { id: "kh-req-state", name: "state" },
    el("option", { value: "" }, "Any"), REQUEST_STATES.map((s) => el("option", { value: s }, s)));
  const since = el("input", { id: "kh-req-since", name: "since", type: "datetime-local" });
  const until = el("input", { id: "kh-req-until", name: "until", type: "datetime-local" });
  const apply = el("button", { type: "submit", id: "kh-req-apply" }, "Show");
  const filter = el("form", { id: "kh-req-filter", class: "kh-filters", "aria-label": "Filter requests" },
    el("div", { class: "field" }, el("label", { for: "kh-req-operation" }, "Operation"), operation),
    el("div", { class: "field" }, el("label", { for: "kh-req-state" }, "State"), stateSel),
    el("div", { class: "field" }, el("label", { for: "kh-req-since" }, "Since"), since),
    el("div", { class: "field" }, el("label", { for: "kh-req-until" }, "Until"), until),
    el("div", { class: "actions" }, apply));
  const listBox = el("div", { id: "kh-requests-body" });
  const more = el("button", { type: "button", id: "kh-req-more", class: "secondary", hidden: true }, "Load more");
  const detail = el("section", { id: "kh-req-detail", class: "card kh-detail", hidden: true, "aria-labelledby": "kh-req-detail-title" });

  view.replaceChildren(el("h1", null, "Requests"),
    el("p", { class: "hint" }, "Your account's requests, newest first. Choose one to see its parameters, charge and images."),
    filter, detail, listBox, el("div", { class: "actions" }, more));

  let items = [];
  let next = null;
  let filters = {};

  const render = () => {
    listBox.replaceChildren(table({
      id: "kh-requests", caption: "Requests", label: "Request log", rows: items,
      rowAttrs: (r) => ({ dataset: { requestId: r.id }, class: "kh-req-row" }),
      columns: [
        { label: "Time", value: (r) => timeEl(r.created_at) },
        { label: "Operation", value: (r) => r.operation || "" },
        { label: "Charge", value: (r) => (r.price_usd === null || r.price_usd === undefined ? "" : fmtUsd(r.price_usd)), className: "kh-charge" },
        { label: "State", value: (r) => el("span", { class: `kh-state kh-state-${r.state}` }, r.state || "") },
        { label: "Status", value: (r) => (r.status_code === null || r.status_code === undefined ? "" : String(r.status_code)) },
        { label: "Images", value: (r) => String(r.images ?? "") },
        { label: "Latency", value: (r) => fmtMs(r.latency_ms) },
        { label: "Details", value: (r) => el("button", { type: "button", class: "kh-req-open secondary", "data-request-id": r.id,
          "aria-label": `Details of request ${r.id}` }, "Details") },
      ],
      empty: "No requests match.",
    }));
    more.hidden = !next;
  };

  const beginPage = newestOnly();
  const load = async (append) => {
    const current = beginPage();  // new filters make an unfinished "Load more" stale
    more.disabled = true;
    try {
      const body = await getJson(ctx, `v2/account/requests${query({ ...filters, limit: PAGE_SIZE, before: append ? next : "" })}`);
      if (!current()) return;
      const page = Array.isArray(body?.items) ? body.items : [];
      items = append ? items.concat(page) : page;
      next = body?.next_before || null;
      render();
    } catch (err) {
      if (!current()) return;
      listBox.replaceChildren(message(err.message, "error"));
      more.hidden = true;
    } finally {
      if (current()) more.disabled = false;
    }
  };

  const beginDetail = newestOnly();
  const showDetail = async (id) => {
    const current = beginDetail();  // another row may be opened before this one answers
    detail.hidden = false;
    detail.replaceChildren(el("h2", { id: "kh-req-detail-title", tabindex: "-1" }, `Request ${id}`), message("Loading...", "info"));
    detail.querySelector("h2").focus();
    let d;
    try {
      d = await getJson(ctx, `v2/account/requests/${encodeURIComponent(id)}`);
    } catch (err) {
      if (!current()) return;
      detail.replaceChildren(el("h2", { id: "kh-req-detail-title", tabindex: "-1" }, `Request ${id}`), message(err.message, "error"));
      return;
    }
    if (!current()) return;
    const close = el("button", { type: "button", id: "kh-req-close", class: "secondary" }, "Close");
    close.addEventListener("click", () => {
      detail.hidden = true;
      const opener = listBox.querySelector(`button[data-request-id="${CSS.escape(id)}"]`);
      if (opener) opener.focus();
    });
    const facts = [
      ["Operation", d.operation], ["State", d.state], ["Status code", d.status_code], ["Mode", d.mode],
      ["Generation", d.generation_id], ["Key", d.key_id], ["Created", d.created_at ? timeEl(d.created_at) : ""],
      ["Started", d.started_at ? timeEl(d.started_at) : ""], ["Finished", d.finished_at ? timeEl(d.finished_at) : ""],
      ["Latency", fmtMs(d.latency_ms)], ["Images", typeof d.images === "number" ? d.images : (d.images || []).length],
      ["Failure", d.failure_reason], ["Error", d.error],
    ].filter(([, v]) => v !== null && v !== undefined && v !== "");
    const images = Array.isArray(d.images) ? d.images : [];
    const imageList = images.length
      ? el("ul", { id: "kh-req-images", class: "kh-thumbs" }, images.slice(0, 16).map((img, i) => el("li", { class: "kh-thumb" },
        img && img.url
          ? el("a", { href: img.url, target: "_blank", rel: "noopener" },
            el("img", { class: "kh-req-thumb", src: img.url, alt: `Image ${i + 1} of request ${id}`, loading: "lazy" }))
          : el("span", { class: "kh-expired" }, "expired"),
        el("span", { class: "hint" }, [img?.width && img?.height ? `${img.width}x${img.height}` : "", img?.media_type || ""].filter(Boolean).join(" · ")))))
      : el("p", { id: "kh-req-images", class: "hint" }, "No images.");
    detail.replaceChildren(
      el("h2", { id: "kh-req-detail-title", tabindex: "-1" }, `Request ${id}`),
      el("p", { id: "kh-req-charge", class: "kh-charge" }, `Charge: ${d.price_usd === null || d.price_usd === undefined ? "none" : fmtUsd(d.price_usd)}`),
      el("dl", { class: "kh-dl" }, facts.map(([k, v]) => [el("dt", null, k), el("dd", null, typeof v === "object" ? v : String(v))])),
      el("h3", null, "Parameters"),
      el("pre", { id: "kh-req-params", class: "kh-params" }, d.params && Object.keys(d.params).length
        ? JSON.stringify(d.params, null, 2).slice(0, 20000) : "(none recorded)"),
      el("h3", null, "Images"),
      imageList,
      el("div", { class: "actions" }, close));
    detail.querySelector("h2").focus();
  };

  filter.addEventListener("submit", (e) => {
    e.preventDefault();
    filters = {
      operation: operation.value.trim(), state: stateSel.value,
      since: localInputToIso(since.value), until: localInputToIso(until.value),
    };
    busy(apply, () => load(false));
  });
  more.addEventListener("click", () => busy(more, () => load(true)));
  listBox.addEventListener("click", (e) => {
    const button = e.target.closest("button.kh-req-open");
    const row = e.target.closest("tr.kh-req-row");
    if (button) showDetail(button.dataset.requestId);
    else if (row && !e.target.closest("a")) showDetail(row.dataset.requestId);
  });

  await load(false);
  const wanted = Array.isArray(ctx.params) && ctx.params[0];
  if (wanted) showDetail(wanted);
}

// ------------------------------------------------------------ routes

export const KEYHOLDER_ROUTES = [
  { id: "account", title: "Account", mount: mountAccount },
  { id: "my-requests", title: "Requests", mount: mountRequests },
  { id: "playground", title: "Playground", mount: mountPlayground },
];
