// The playground: every image operation of the server's /openapi.json, a form generated from its
// request schema, sent with the key holder's API key (Api-Key header, never a cookie). Results are
// shown as an image grid with download links, or as text (describe, magic prompt). Asynchronous
// runs answer {generation_id} and are polled at /v1 (or /v2) generations until they finish.

import { el, fmtUsd } from "./ui.js";
import { errorText, readBody } from "./api.js";
import { FieldError, collectValues, describeOperation, encodeBody, fieldId, renderFields } from "./forms.js";
import { MaskPainter } from "./mask.js";

const FAMILIES = ["Legacy", "3.0", "4.0", "v2"];
const LEGACY = new Set(["/generate", "/edit", "/remix", "/reframe", "/replace-background", "/upscale", "/describe"]);
const POLL_FIRST_MS = 1000;
const POLL_MAX_MS = 5000;
const POLL_GIVE_UP_MS = 30 * 60 * 1000;
const MAX_RESULT_SETS = 20; // older result sets are dropped from the page

let documentCache = null; // {root, promise}
let lastPath = null; // the operation chosen last, kept across visits to the page

/** The family an image operation belongs to, or null for paths the playground does not list. */
export function familyOf(path) {
  if (LEGACY.has(path)) return "Legacy";
  if (path.startsWith("/v1/ideogram-v3/")) return "3.0";
  if (path.startsWith("/v1/ideogram-v4/") || path.startsWith("/v1/ideogram-v45/")) return "4.0";
  if (path.startsWith("/v2/image/")) return "v2";
  return null; // /ideogram/* aliases, admin, account, generations, tasks
}

function loadDocument(apiRoot) {
  if (!documentCache || documentCache.root !== apiRoot) {
    const promise = fetch(new URL("openapi.json", apiRoot), { credentials: "omit", cache: "no-store" })
      .then(async (r) => {
        if (!r.ok) throw new Error(`openapi.json: the server answered ${r.status}`);
        return r.json();
      });
    documentCache = { root: apiRoot, promise };
    promise.catch(() => { documentCache = null; });
  }
  return documentCache.promise;
}

/** [{family, ops: [{path, summary}]}] of the document's image operations. */
export function listOperations(doc) {
  const groups = new Map(FAMILIES.map((f) => [f, []]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    const family = familyOf(path);
    if (!family || !item || !item.post) continue;
    groups.get(family).push({ path, summary: item.post.summary || path });
  }
  return FAMILIES.map((family) => ({ family, ops: groups.get(family) })).filter((g) => g.ops.length);
}

function pollPath(opPath, generationId) {
  const version = opPath.startsWith("/v2/") ? "v2" : "v1";
  return `${version}/generations/${encodeURIComponent(generationId)}`;
}

function microsToUsd(micros) {
  const n = Number(micros);
  if (!Number.isFinite(n)) return "";
  return fmtUsd((n / 1e6).toFixed(6));
}

function extensionOf(url) {
  try {
    const m = /\.([a-z0-9]{3,4})$/i.exec(new URL(url).pathname);
    return m ? m[1].toLowerCase() : "png";
  } catch (_) {
    return "png";
  }
}

function problemText(body, status) {
  let text = errorText(body, status);
  if (body && typeof body === "object" && typeof body.reject_reason === "string") text += ` (${body.reject_reason})`;
  if (body && typeof body === "object" && body.code !== undefined && typeof body.message === "string") {
    text = `${body.code}: ${body.message}`; // the task dialect's envelope
  }
  return text;
}

export function mount(view, ctx) {
  const state = { spec: null, doc: null, painter: new MaskPainter("pg-mask"), timers: new Set() };
  const alive = () => view.isConnected;

  const picker = el("select", { id: "pg-operation", name: "operation", "aria-describedby": "pg-operation-hint" });
  const opHint = el("small", { id: "pg-operation-hint", class: "hint" });
  const fields = el("div", { id: "pg-fields", class: "pg-fields" });
  const asyncBox = el("input", { type: "checkbox", id: "pg-async", name: "async" });
  const asyncRow = el("div", { class: "field field-check", id: "pg-async-row", hidden: true },
    asyncBox, el("label", { for: "pg-async" }, "Run asynchronously"),
    el("small", { id: "pg-async-hint", class: "hint" }, "Answers at once with a generation id; the status is polled below."));
  asyncBox.setAttribute("aria-describedby", "pg-async-hint");
  const submit = el("button", { type: "submit", id: "pg-submit" }, "Run");
  const quote = el("button", { type: "button", id: "pg-quote", class: "secondary", hidden: true }, "Quote price");
  const status = el("p", { id: "pg-status", class: "hint", role: "status", "aria-live": "polite" });
  // the running seconds: seen, not announced (a live region re-read every second is noise)
  const elapsed = el("span", { id: "pg-elapsed", class: "hint", "aria-hidden": "true" });
  const errorBox = el("div", { id: "pg-error", class: "msg msg-error pg-error", role: "alert", hidden: true });
  const form = el("form", { id: "pg-form", class: "pg-form", novalidate: false, "aria-labelledby": "pg-title" },
    el("div", { class: "field" }, el("label", { for: "pg-operation" }, "Operation"), picker, opHint),
    fields, state.painter.root, asyncRow,
    el("div", { class: "actions pg-actions" }, submit, quote, elapsed), status, errorBox);
  const gensBody = el("tbody", { id: "pg-generations-rows" });
  const gens = el("section", { id: "pg-generations", class: "pg-generations", hidden: true, "aria-labelledby": "pg-gens-title" },
    el("h2", { id: "pg-gens-title" }, "Generations"),
    el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": "Asynchronous generations" },
      el("table", { id: "pg-generations-table" },
        el("thead", null, el("tr", null, ["Generation", "Operation", "Status", "Elapsed"].map((t) => el("th", { scope: "col" }, t)))),
        gensBody)));
  const clearResults = el("button", { type: "button", id: "pg-clear-results", class: "secondary" }, "Clear results");
  const results = el("div", { id: "pg-results", class: "pg-results" }); // #pg-status announces each outcome in a line
  const resultsSection = el("section", { class: "pg-results-section", "aria-labelledby": "pg-results-title" },
    el("div", { class: "pg-results-head" }, el("h2", { id: "pg-results-title" }, "Results"), clearResults),
    results);

  view.replaceChildren(
    el("h1", { id: "pg-title" }, "Playground"),
    el("p", { class: "hint" }, "Every image operation, sent with your API key. Runs are charged like any other request."),
    el("div", { class: "pg-layout" }, form, el("div", { class: "pg-output" }, gens, resultsSection)));

  clearResults.addEventListener("click", () => results.replaceChildren());

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function setTimer(fn, ms) {
    const t = setTimeout(() => { state.timers.delete(t); if (alive()) fn(); }, ms);
    state.timers.add(t);
    return t;
  }

  // -------------------------------------------------------- choosing an operation

  async function onFiles(field, files) {
    if (state.spec && state.spec.baseImageField && field.path === state.spec.baseImageField.path) {
      try {
        await state.painter.setImage(files[0] || null);
      } catch (err) {
        showError(err.message);
      }
    }
  }

  function choose(path) {
    const spec = describeOperation(state.doc, path);
    state.spec = spec;
    lastPath = path;
    showError("");
    status.textContent = "";
    state.painter.setImage(null);
    if (!spec) {
      fields.replaceChildren(el("p", { class: "msg msg-error" }, `Unknown operation ${path}.`));
      return;
    }
    opHint.textContent = `POST ${path} · ${spec.contentType}${spec.path.includes("/async/") ? " · always asynchronous" : ""}`;
    renderFields(fields, spec, onFiles);
    if (spec.baseImageField) { // the painter sits right under the image it paints on
      const spots = [spec.baseImageField, spec.maskField]
        .map((f) => fields.querySelector(`[data-field="${CSS.escape(f.path)}"]`)).filter(Boolean);
      const at = spots.sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1)).pop();
      if (at) at.after(state.painter.root);
    }
    const alwaysAsync = path.includes("/async/");
    const canAsync = alwaysAsync || spec.params.has("async") || spec.bodyProps.has("async");
    asyncRow.hidden = !canAsync;
    asyncBox.checked = alwaysAsync;
    asyncBox.disabled = alwaysAsync;
    quote.hidden = !spec.params.has("dry_run");
  }

  picker.addEventListener("change", () => choose(picker.value));

  // -------------------------------------------------------- results

  function addSet(title, generationId) {
    const set = el("section", { class: "pg-set", "data-generation-id": generationId || "" },
      el("h3", null, title));
    results.prepend(set);
    while (results.children.length > MAX_RESULT_SETS) results.lastElementChild.remove();
    return set;
  }

  /** One column (phones): the results sit under the long form, so bring a new result into view. */
  function revealOnNarrow(set) {
    if (!window.matchMedia("(max-width: 60rem)").matches) return;
    const r = set.getBoundingClientRect();
    if (r.top > window.innerHeight || r.bottom < 0) set.scrollIntoView({ block: "start", behavior: "smooth" });
  }

  function renderImages(set, data, generationId) {
    const grid = el("div", { class: "pg-grid" });
    data.slice(0, 16).forEach((item, i) => {
      const meta = [];
      if (item && item.resolution) meta.push(item.resolution);
      else if (item && item.width && item.height) meta.push(`${item.width}x${item.height}`);
      if (item && item.seed !== undefined && item.seed !== null) meta.push(`seed ${item.seed}`);
      if (item && typeof item.url === "string" && item.url) {
        const name = `ideohub-${generationId || "image"}-${i + 1}.${extensionOf(item.url)}`;
        grid.appendChild(el("figure", { class: "pg-result" },
          el("a", { href: item.url, target: "_blank", rel: "noopener" },
            el("img", { class: "pg-result-img", src: item.url, alt: item.prompt ? `Result ${i + 1}: ${item.prompt.slice(0, 200)}` : `Result ${i + 1}`, loading: "lazy" })),
          el("figcaption", null, meta.join(" · "), " ",
            el("a", { class: "pg-download", href: item.url, download: name }, `Download image ${i + 1}`))));
      } else {
        grid.appendChild(el("figure", { class: "pg-result pg-withheld" },
          el("p", null, item.is_image_safe === false
            ? "Withheld: this image did not pass the safety check (not charged)."
            : `No link for this image${item.asset_id ? ` (asset ${item.asset_id})` : ""}.`),
          el("figcaption", null, meta.join(" · "))));
      }
    });
    set.appendChild(grid);
  }

  function renderText(set, answer) {
    if (Array.isArray(answer.descriptions)) {
      set.appendChild(el("ol", { class: "pg-descriptions" },
        answer.descriptions.slice(0, 20).map((d) => el("li", { class: "pg-text-result" }, d && typeof d === "object" ? String(d.text ?? "") : String(d)))));
    }
    if (answer.json_prompt !== undefined) {
      if (answer.aspect_ratio) set.appendChild(el("p", null, `Aspect ratio: ${answer.aspect_ratio}`));
      set.appendChild(el("pre", { class: "pg-text-result pg-json-result" }, JSON.stringify(answer.json_prompt, null, 2)));
    }
  }

  /** Render a final answer (synchronous, or a completed generation's). */
  function renderAnswer(set, answer, generationId) {
    if (answer && typeof answer === "object") {
      if (Array.isArray(answer.data)) {
        renderImages(set, answer.data, generationId);
        if (answer.seed !== undefined) set.appendChild(el("p", { class: "hint" }, `Seed: ${answer.seed}`));
      }
      if (Array.isArray(answer.descriptions) || answer.json_prompt !== undefined) renderText(set, answer);
      if (!Array.isArray(answer.data) && !Array.isArray(answer.descriptions) && answer.json_prompt === undefined) {
        set.appendChild(el("pre", { class: "pg-text-result" }, JSON.stringify(answer, null, 2).slice(0, 20000)));
      }
      if (answer.usage_cost_usd_micros !== undefined) {
        set.appendChild(el("p", { class: "pg-price" }, `Charged: ${microsToUsd(answer.usage_cost_usd_micros)}`));
      }
    } else {
      set.appendChild(el("pre", { class: "pg-text-result" }, String(answer ?? "").slice(0, 20000)));
    }
  }

  /** The charge of a finished synchronous run, read from its generation record (one cheap poll). */
  async function addPrice(set, opPath, generationId) {
    if (!generationId) return;
    try {
      const r = await ctx.keyFetch(pollPath(opPath, generationId));
      if (!r.ok) return;
      const g = await r.json();
      if (g && g.usage_cost_usd_micros !== undefined && alive()) {
        set.appendChild(el("p", { class: "pg-price" }, `Charged: ${microsToUsd(g.usage_cost_usd_micros)}`));
      }
    } catch (_) { /* the price line is a courtesy */ }
  }

  // -------------------------------------------------------- asynchronous generations

  function track(opPath, generationId) {
    gens.hidden = false;
    const started = performance.now();
    const statusCell = el("span", { class: "pg-gen-status", id: `pg-gen-status-${generationId}` }, "pending");
    const elapsedCell = el("span", { class: "pg-gen-elapsed" }, "0 s");
    const row = el("tr", { id: `pg-gen-${generationId}`, class: "pg-gen", "data-status": "pending", "data-generation-id": generationId },
      el("td", null, el("code", null, generationId)), el("td", null, opPath), el("td", null, statusCell), el("td", null, elapsedCell));
    gensBody.prepend(row);
    let done = false;
    const tick = () => {
      if (done || !alive()) return;
      elapsedCell.textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
      setTimer(tick, 200);
    };
    tick();
    const finish = (finalStatus, text) => {
      done = true;
      elapsedCell.textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
      row.dataset.status = finalStatus;
      statusCell.textContent = text;
    };
    let delay = POLL_FIRST_MS;
    const poll = async () => {
      if (!alive()) return;
      if (performance.now() - started > POLL_GIVE_UP_MS) {
        finish("unknown", "still pending: stopped polling");
        return;
      }
      let wait = delay;
      try {
        const r = await ctx.keyFetch(pollPath(opPath, generationId));
        const body = await readBody(r);
        if (r.status === 429) {
          const after = Number(r.headers.get("Retry-After"));
          wait = Number.isFinite(after) && after > 0 ? after * 1000 : POLL_MAX_MS;
        } else if (!r.ok) {
          if (r.status === 404 || r.status === 401 || r.status === 403) {
            finish("failed", `error ${r.status}: ${problemText(body, r.status)}`);
            return;
          }
        } else if (body && body.status === "completed") {
          finish("completed", "completed");
          const set = addSet(`${opPath} · ${generationId}`, generationId);
          renderAnswer(set, body, generationId);
          return;
        } else if (body && body.status === "failed") {
          finish("failed", `failed${body.failure_reason ? `: ${body.failure_reason}` : ""}`);
          return;
        } else if (body && body.status) {
          statusCell.textContent = body.status;
        }
      } catch (_) {
        statusCell.textContent = "pending (connection problem, retrying)";
      }
      delay = Math.min(POLL_MAX_MS, Math.round(delay * 1.25));
      setTimer(poll, wait);
    };
    setTimer(poll, POLL_FIRST_MS);
  }

  // -------------------------------------------------------- submitting

  async function buildRequest(dryRun) {
    const spec = state.spec;
    const values = collectValues(form, spec);
    if (spec.maskField && !values[spec.maskField.name]) {
      const baseName = spec.baseImageField ? spec.baseImageField.name : null;
      if (baseName && values[baseName] && state.painter.width) {
        if (!state.painter.painted) throw new FieldError("mask", "paint the area to edit on the image first (or choose a mask file)");
        values[spec.maskField.name] = new File([await state.painter.toBlob()], "mask.png", { type: "image/png" });
        const upright = await state.painter.uprightImage(); // a photo stored rotated goes as it was shown
        if (upright) values[baseName] = upright;
      } else if (spec.maskField.required) {
        throw new FieldError("mask", "choose the image first, then paint the area to edit");
      }
    }
    const query = new URLSearchParams();
    const wantsAsync = !dryRun && asyncBox.checked && !asyncRow.hidden && !spec.path.includes("/async/");
    if (wantsAsync) {
      if (spec.bodyProps.has("async")) values.async = true;
      else query.set("async", "true");
    }
    if (dryRun) query.set("dry_run", "true");
    const qs = query.toString();
    const init = { method: "POST", body: encodeBody(spec, values) };
    if (spec.contentType === "application/json") init.headers = { "Content-Type": "application/json" };
    return { url: `${spec.path.replace(/^\//, "")}${qs ? `?${qs}` : ""}`, init, wantsAsync };
  }

  async function run(dryRun) {
    const spec = state.spec;
    if (!spec) return;
    showError("");
    if (!dryRun && !form.reportValidity()) return;
    if (submit.disabled) return; // one run at a time from this form
    submit.disabled = true;
    quote.disabled = true;
    let request;
    try {
      request = await buildRequest(dryRun);
    } catch (err) {
      submit.disabled = false;
      quote.disabled = false;
      if (err instanceof FieldError) {
        showError(err.message);
        const c = document.getElementById(fieldId(err.path));
        if (c) c.focus();
        else if (err.path === "mask" && !state.painter.root.hidden) state.painter.brushBtn.focus();
        return;
      }
      showError(String(err.message || err));
      return;
    }
    const button = dryRun ? quote : submit;
    button.setAttribute("aria-busy", "true");
    const started = performance.now();
    let waiting = true;
    status.textContent = `${dryRun ? "Quoting" : "Running"} ${spec.path}...`;
    const tick = () => {
      if (!waiting || !alive()) {
        elapsed.textContent = "";
        return;
      }
      elapsed.textContent = `${((performance.now() - started) / 1000).toFixed(0)} s`;
      setTimer(tick, 500);
    };
    tick();
    try {
      const r = await ctx.keyFetch(request.url, request.init);
      const body = await readBody(r);
      waiting = false;
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      if (!r.ok) {
        status.textContent = `Failed after ${secs} s.`;
        showError(`Error ${r.status}: ${problemText(body, r.status)}`);
        return;
      }
      const generationId = r.headers.get("X-Ideohub-Generation-Id") || (body && body.generation_id) || "";
      if (body && body.object === "price_quote") {
        status.textContent = `Quote: ${microsToUsd(body.usd_micros)} for ${body.quantity} (${body.billing_identifier}).`;
        return;
      }
      const isAck = body && typeof body === "object" && typeof body.generation_id === "string" && !Array.isArray(body.data) &&
        body.descriptions === undefined && body.json_prompt === undefined;
      if (isAck) {
        status.textContent = `Submitted: generation ${body.generation_id}.`;
        track(spec.path, body.generation_id);
        return;
      }
      if (body && body.task_id && body.status) { // the task dialect envelope cannot happen here (no callback_url)
        status.textContent = "Submitted.";
        return;
      }
      status.textContent = `Done in ${secs} s.`;
      const set = addSet(`${spec.path}${generationId ? ` · ${generationId}` : ""}`, generationId);
      renderAnswer(set, body, generationId);
      addPrice(set, spec.path, generationId);
      revealOnNarrow(set);
    } catch (err) {
      waiting = false;
      status.textContent = "";
      showError(`The request could not be sent: ${err.message || err}`);
    } finally {
      waiting = false;
      elapsed.textContent = "";
      submit.disabled = false;
      quote.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); run(false); });
  quote.addEventListener("click", () => run(true));

  // -------------------------------------------------------- start

  status.textContent = "Loading the operations...";
  submit.disabled = true;
  loadDocument(ctx.apiRoot).then((doc) => {
    if (!alive()) return;
    state.doc = doc;
    const groups = listOperations(doc);
    picker.replaceChildren(...groups.map((g) => el("optgroup", { label: g.family === "Legacy" ? "Legacy" : `Ideogram ${g.family}` },
      g.ops.map((o) => el("option", { value: o.path }, `${o.path} — ${o.summary}`)))));
    const paths = groups.flatMap((g) => g.ops.map((o) => o.path));
    const first = paths.includes(lastPath) ? lastPath : paths.includes("/v1/ideogram-v3/generate") ? "/v1/ideogram-v3/generate" : paths[0];
    if (first) {
      picker.value = first;
      choose(first);
    }
    status.textContent = "";
    submit.disabled = false;
  }).catch((err) => {
    if (!alive()) return;
    status.textContent = "";
    showError(`The list of operations could not be loaded: ${err.message || err}`);
  });

  return () => {
    for (const t of state.timers) clearTimeout(t);
    state.timers.clear();
    state.painter.dispose();
  };
}
