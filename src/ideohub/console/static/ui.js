// DOM helpers for the console. Every piece of data reaches the page through textContent or a DOM
// property, never through innerHTML: prompts, account names and upstream errors are hostile text.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(node, c);
  } else if (child instanceof Node) {
    node.appendChild(child);
  } else {
    node.appendChild(document.createTextNode(String(child)));
  }
}

function applyAttrs(node, attrs, isSvg) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") {
      node.textContent = String(value);
    } else if (key === "class") {
      node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    } else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (!isSvg && (key === "value" || key === "checked" || key === "selected" || key === "disabled" ||
                          key === "hidden" || key === "multiple" || key === "required")) {
      node[key] = value;
    } else if (key === "for") {
      node.setAttribute("for", value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** el("button", {id: "x", onclick: fn}, "Label", child, ...) -> HTMLElement. Strings become text nodes. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  applyAttrs(node, attrs, false);
  append(node, children);
  return node;
}

/** The same for SVG elements (charts). */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  applyAttrs(node, attrs, true);
  append(node, children);
  return node;
}

/** Replace every child of `node` with `children`. */
export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

let uid = 0;
/** A page-unique id with a readable prefix (for label/for pairs that need no stable test hook). */
export function uniqueId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/**
 * table({caption, columns: [{label, value: row => string|Node, className?}], rows, empty, id, rowAttrs})
 * A real <table> inside a horizontally scrolling, keyboard-focusable region.
 */
export function table({ caption, columns, rows, empty = "Nothing to show.", id, rowAttrs, label }) {
  const thead = el("thead", null, el("tr", null, columns.map((c) => el("th", { scope: "col", class: c.className }, c.label))));
  const tbody = el("tbody");
  for (const row of rows) {
    const tr = el("tr", rowAttrs ? rowAttrs(row) : null);
    for (const c of columns) {
      const v = c.value(row);
      tr.appendChild(el("td", { class: c.className, "data-label": c.label }, v === null || v === undefined ? "" : v));
    }
    tbody.appendChild(tr);
  }
  if (!rows.length) {
    tbody.appendChild(el("tr", { class: "empty" }, el("td", { colspan: String(columns.length) }, empty)));
  }
  const t = el("table", { id }, caption ? el("caption", null, caption) : null, thead, tbody);
  return el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": label || caption || "Table" }, t);
}

let liveRegion = null;
let toastTimer = null;

/** Announce a message in the page's aria-live region (#notice, a toast; the inline status next to the
 * action stays). kind: "info" | "ok" | "error". */
export function notice(message, kind = "info") {
  liveRegion = liveRegion || document.getElementById("notice");
  if (!liveRegion) return;
  liveRegion.className = `notice notice-${kind}`;
  liveRegion.textContent = message;
  liveRegion.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { liveRegion.hidden = true; liveRegion.textContent = ""; }, kind === "error" ? 15000 : 6000);
}

/** Clear the live region (on navigation). */
export function clearNotice() {
  liveRegion = liveRegion || document.getElementById("notice");
  if (liveRegion) { liveRegion.hidden = true; liveRegion.textContent = ""; }
}

/** An inline message box placed next to the thing it is about (role=status or alert). */
export function message(text, kind = "info", attrs = {}) {
  return el("p", { class: `msg msg-${kind}`, role: kind === "error" ? "alert" : "status", ...attrs }, text);
}

/**
 * field({id, label, type, value, hint, options, required, ...}) -> <div class="field"> with a <label for>.
 * type "select" takes options [{value, label}] (or strings); "checkbox" puts the box before its label;
 * "textarea" gives a textarea. Extra keys become attributes of the control.
 */
export function field({ id, label, type = "text", hint, options, value, checked, ...rest }) {
  let control;
  const hintId = hint ? `${id}-hint` : null;
  const common = { id, name: rest.name || id, "aria-describedby": hintId, ...rest };
  if (type === "select") {
    control = el("select", common, (options || []).map((o) => {
      const opt = typeof o === "string" ? { value: o, label: o } : o;
      return el("option", { value: opt.value, selected: value !== undefined && String(value) === String(opt.value) }, opt.label);
    }));
    if (rest.multiple && Array.isArray(value)) {
      for (const opt of control.options) opt.selected = value.includes(opt.value);
    }
  } else if (type === "textarea") {
    control = el("textarea", common);
    if (value !== undefined && value !== null) control.value = String(value);
  } else {
    control = el("input", { type, ...common });
    if (type === "checkbox") control.checked = Boolean(checked);
    else if (value !== undefined && value !== null) control.value = String(value);
  }
  const hintEl = hint ? el("small", { id: hintId, class: "hint" }, hint) : null;
  if (type === "checkbox") {
    return el("div", { class: "field field-check" }, control, el("label", { for: id }, label), hintEl);
  }
  return el("div", { class: "field" }, el("label", { for: id }, label), control, hintEl);
}

/** A badge: a short state word with a colour class. The word itself carries the meaning. */
export function badge(text, kind) {
  return el("span", { class: `badge badge-${kind || text}` }, text);
}

/** Button that disables itself while `action` runs (no double submits). */
export async function busy(button, action) {
  const before = button.disabled;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = before;
    button.removeAttribute("aria-busy");
  }
}

let dialogReturnFocus = null;

/**
 * After a dialog: focus what opened it; if the page re-rendered it meanwhile (a poll, a refreshed
 * list), the new element with the same id; else the page's heading, never <body>.
 */
function restoreFocus() {
  const before = dialogReturnFocus;
  dialogReturnFocus = null;
  let target = before && document.contains(before) ? before : null;
  if (!target && before && before.id) target = document.getElementById(before.id);
  if (!target) {
    target = document.querySelector("#view h1");
    if (target) target.setAttribute("tabindex", "-1");
  }
  if (target) target.focus();
}

/**
 * An in-page modal (<dialog>) asking to confirm a destructive action. Resolves true or false.
 * Buttons: #confirm-ok and #confirm-cancel; the question is in #confirm-message.
 */
export function confirmDialog(question, okLabel = "Confirm") {
  return new Promise((resolve) => {
    const ok = el("button", { type: "button", id: "confirm-ok", class: "danger" }, okLabel);
    const cancel = el("button", { type: "button", id: "confirm-cancel", class: "secondary" }, "Cancel");
    const dialog = el("dialog", { id: "confirm-dialog", "aria-labelledby": "confirm-message" },
      el("p", { id: "confirm-message" }, question),
      el("div", { class: "actions" }, cancel, ok));
    const done = (value) => {
      dialog.close();
      dialog.remove();
      restoreFocus();
      resolve(value);
    };
    ok.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    dialogReturnFocus = document.activeElement;
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** Copy text to the clipboard; falls back to selecting a field's text (pages not served over https). */
export async function copyText(text, fallbackInput) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (_) { /* fall through */ }
  if (fallbackInput) {
    fallbackInput.focus();
    fallbackInput.select();
    try { return document.execCommand("copy"); } catch (_) { return false; }
  }
  return false;
}

/**
 * Show a secret once, in a modal: #secret-dialog with the value in the read-only input #new-key-secret,
 * a Copy button #copy-secret and a Close button #secret-close. Resolves when closed.
 */
export function showSecretDialog(title, secret, warning) {
  return new Promise((resolve) => {
    const input = el("input", { id: "new-key-secret", type: "text", readonly: true, value: secret, class: "secret",
                                "aria-describedby": "secret-warning", spellcheck: "false", autocomplete: "off" });
    const status = el("span", { id: "copy-status", role: "status", class: "hint" });
    const copy = el("button", { type: "button", id: "copy-secret" }, "Copy");
    const close = el("button", { type: "button", id: "secret-close", class: "secondary" }, "I have stored it, close");
    const dialog = el("dialog", { id: "secret-dialog", "aria-labelledby": "secret-title" },
      el("h2", { id: "secret-title" }, title),
      el("p", { id: "secret-warning", class: "msg msg-warn" }, warning),
      el("label", { for: "new-key-secret" }, "Secret"),
      el("div", { class: "secret-row" }, input, copy),
      status,
      el("div", { class: "actions" }, close));
    copy.addEventListener("click", async () => {
      const ok = await copyText(secret, input);
      status.textContent = ok ? "Copied to the clipboard." : "Select the text and copy it by hand.";
    });
    const done = () => {
      input.value = "";
      dialog.close();
      dialog.remove();
      restoreFocus();
      resolve();
    };
    close.addEventListener("click", done);
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(); });
    dialogReturnFocus = document.activeElement;
    document.body.appendChild(dialog);
    dialog.showModal();
    input.focus();
    input.select();
  });
}

// ------------------------------------------------------------ formatting

/** "2026-12-03 22:04:05" in the browser's local time; "" for empty. */
export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A <time> element with the ISO value in datetime and the local time as text. */
export function timeEl(iso) {
  if (!iso) return "";
  return el("time", { datetime: iso, title: iso }, fmtTime(iso));
}

/** "$1.25" from a decimal USD string, trimming trailing zeros beyond cents. */
export function fmtUsd(value) {
  if (value === null || value === undefined || value === "") return "";
  const s = String(value);
  const neg = s.startsWith("-");
  const body = neg ? s.slice(1) : s;
  let [int, frac = ""] = body.split(".");
  frac = frac.replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return `${neg ? "-" : ""}$${int}.${frac}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  const n = Number(ms);
  if (n >= 10000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.round(n)} ms`;
}

export function fmtPercent(ratio) {
  if (ratio === null || ratio === undefined) return "";
  return `${(Number(ratio) * 100).toFixed(1)}%`;
}

/** A datetime-local input's value as an ISO 8601 UTC string ("" stays ""). */
export function localInputToIso(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** An ISO string as a datetime-local input's value (local time). */
export function isoToLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * newestOnly() -> begin(): call begin() as a load starts; it returns isCurrent(), true until a
 * later load begins. A slow answer to an earlier choice (a period, a filter, a row) then never
 * overwrites the answer to the newer one.
 */
export function newestOnly() {
  let latest = 0;
  return function begin() {
    const mine = ++latest;
    return () => mine === latest;
  };
}

/**
 * repeat(load, everyMs, maxMs) -> stop(): run `load` (which resolves true on success) again
 * `everyMs` after the previous run ended, never two at once, skipping ticks while the tab is
 * hidden; after failures the wait doubles up to `maxMs`, so a server that is down is not hammered.
 */
export function repeat(load, everyMs, maxMs = 60000) {
  let timer = null;
  let stopped = false;
  let wait = everyMs;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      const ok = await load().catch(() => false);
      wait = ok ? everyMs : Math.min(wait * 2, maxMs);
    }
    if (!stopped) timer = setTimeout(tick, wait);
  };
  timer = setTimeout(tick, everyMs);
  return () => { stopped = true; clearTimeout(timer); };
}
