// Forms generated from the OpenAPI request schemas of the image operations.
//
// The server's /openapi.json is the single description of every operation's fields (enums, ranges,
// defaults, files), so the playground builds its forms from it instead of keeping its own copy that
// would drift. Everything shown comes from the document and is set with textContent / DOM properties.

import { el } from "./ui.js";

const MAX_DEPTH = 16;
const MAX_FIELDS = 80; // bound what one form renders
const MAX_SLIDER_SPAN = 10000; // wider ranges (seeds) get a number box only
const MAX_ENUM_OPTIONS = 400;
// Fields the playground drives itself ("Run asynchronously") or that make no sense from a browser tab.
const SKIPPED = new Set(["async", "webhook_url", "callback_url"]);

// ------------------------------------------------------------ schema resolution

function lookup(doc, ref) {
  if (typeof ref !== "string" || !ref.startsWith("#/")) return {};
  let node = doc;
  for (const part of ref.slice(2).split("/")) {
    const key = part.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object" || !(key in node)) return {};
    node = node[key];
  }
  return node && typeof node === "object" ? node : {};
}

function isNullSchema(s) {
  return s && (s.type === "null" || (Array.isArray(s.type) && s.type.length === 1 && s.type[0] === "null"));
}

function mergeInto(target, part) {
  for (const [k, v] of Object.entries(part)) {
    if (k === "properties") target.properties = { ...(target.properties || {}), ...v };
    else if (k === "required") target.required = [...new Set([...(target.required || []), ...v])];
    else target[k] = v;
  }
  return target;
}

/**
 * A schema with $ref followed, allOf merged, nullable unions ("type": ["x", "null"], anyOf [X, null])
 * collapsed to X. Property schemas stay unresolved (flatten them when used). Unions of several real
 * shapes keep `anyOf`/`oneOf` (rendered as a JSON field).
 */
export function flatten(doc, schema, depth = 0) {
  if (!schema || typeof schema !== "object" || depth > MAX_DEPTH) return {};
  let out = {};
  const { $ref, allOf, anyOf, oneOf, ...rest } = schema;
  if ($ref) out = mergeInto(out, flatten(doc, lookup(doc, $ref), depth + 1));
  if (Array.isArray(allOf)) for (const part of allOf) out = mergeInto(out, flatten(doc, part, depth + 1));
  for (const [key, variants] of [["anyOf", anyOf], ["oneOf", oneOf]]) {
    if (!Array.isArray(variants)) continue;
    const real = variants.filter((v) => !isNullSchema(flatten(doc, v, depth + 1)));
    if (real.length === 1) {
      out = mergeInto(out, flatten(doc, real[0], depth + 1));
      out.nullable = true;
    } else {
      out[key] = real;
    }
  }
  out = mergeInto(out, rest);
  if (Array.isArray(out.type)) {
    const types = out.type.filter((t) => t !== "null");
    if (types.length < out.type.length) out.nullable = true;
    out.type = types.length === 1 ? types[0] : types;
  }
  if (!out.type && Array.isArray(out.enum)) out.type = "string";
  return out;
}

// ------------------------------------------------------------ field model

/**
 * kind: "text" | "textarea" | "enum" | "enum-array" | "number" | "boolean" | "file" | "files" | "json" | "group"
 * A field: {name, path, kind, schema, required, default, description, enum?, min?, max?, integer?, children?}
 */
function fieldOf(doc, name, rawSchema, required, prefix, depth) {
  const s = flatten(doc, rawSchema);
  const path = prefix ? `${prefix}.${name}` : name;
  const base = { name, path, schema: s, required, default: s.default, description: s.description || "" };
  if (s.deprecated || s.readOnly) return null;
  const type = s.type;
  if (type === "string" && (s.format === "binary" || s.contentMediaType)) return { ...base, kind: "file" };
  if (type === "array") {
    const items = flatten(doc, s.items || {});
    if (items.type === "string" && (items.format === "binary" || items.contentMediaType)) {
      return { ...base, kind: "files", maxItems: s.maxItems };
    }
    if (Array.isArray(items.enum) && items.enum.length <= MAX_ENUM_OPTIONS) {
      return { ...base, kind: "enum-array", enum: items.enum.map(String) };
    }
    return { ...base, kind: "json" };
  }
  if (Array.isArray(s.enum) && (type === "string" || type === "integer" || type === "number")) {
    if (s.enum.length <= MAX_ENUM_OPTIONS) return { ...base, kind: "enum", enum: s.enum.map(String), valueType: type };
  }
  if (type === "integer" || type === "number") {
    return { ...base, kind: "number", integer: type === "integer", min: s.minimum, max: s.maximum };
  }
  if (type === "boolean") return { ...base, kind: "boolean" };
  if (type === "string") {
    const long = /prompt/.test(name) || (s.maxLength || 0) > 500;
    return { ...base, kind: long ? "textarea" : "text" };
  }
  // The legacy wrapper (image_request): a required object of fields at the top level is shown as its
  // fields and sent nested, as the schema nests it (a JSON object, or one JSON text part in multipart).
  if (type === "object" && s.properties && depth === 0 && required) {
    const children = fieldsOf(doc, s, path, depth + 1);
    return { ...base, kind: "group", children };
  }
  return { ...base, kind: "json" };
}

function fieldsOf(doc, objectSchema, prefix, depth) {
  const s = flatten(doc, objectSchema);
  const required = new Set(s.required || []);
  const out = [];
  for (const [name, prop] of Object.entries(s.properties || {})) {
    if (depth === 0 && SKIPPED.has(name)) continue;
    if (out.length >= MAX_FIELDS) break;
    const f = fieldOf(doc, name, prop, required.has(name), prefix, depth);
    if (f) out.push(f);
  }
  return out;
}

function hasFiles(fields) {
  return fields.some((f) => f.kind === "file" || f.kind === "files" || (f.kind === "group" && hasFiles(f.children)));
}

/**
 * What the form needs to know about one operation (POST path) of the document:
 * {path, summary, description, contentType, fields, bodyProps (top-level names), params (query names),
 *  maskField (the "mask" file field or null), baseImageField (the image the mask is painted on)}.
 */
export function describeOperation(doc, path) {
  const op = doc.paths?.[path]?.post;
  if (!op) return null;
  const content = op.requestBody?.content || {};
  const multipart = content["multipart/form-data"];
  const json = content["application/json"];
  let contentType;
  let schema;
  const multipartFields = multipart ? fieldsOf(doc, multipart.schema || {}, "", 0) : null;
  if (multipart && (hasFiles(multipartFields) || !json)) {
    contentType = "multipart/form-data";
    schema = multipart.schema || {};
  } else if (json) {
    contentType = "application/json";
    schema = json.schema || {};
  } else {
    contentType = "multipart/form-data";
    schema = {};
  }
  const fields = contentType === "multipart/form-data" && multipartFields ? multipartFields : fieldsOf(doc, schema, "", 0);
  const top = flatten(doc, schema);
  const params = (op.parameters || []).filter((p) => p && p.in === "query").map((p) => p.name);
  const maskField = fields.find((f) => f.kind === "file" && f.name === "mask") || null;
  const singleFiles = fields.filter((f) => f.kind === "file" && f.name !== "mask");
  const baseImageField = maskField
    ? singleFiles.find((f) => f.name === "image") || singleFiles.find((f) => f.name === "image_file") || singleFiles[0] || null
    : null;
  return {
    path, summary: op.summary || path, description: op.description || "", contentType, fields,
    bodyProps: new Set(Object.keys(top.properties || {})), params: new Set(params), maskField, baseImageField,
  };
}

// ------------------------------------------------------------ rendering

export function fieldId(path) {
  return `pg-f-${path.replace(/[^A-Za-z0-9_-]/g, "-")}`;
}

function labelText(f) {
  return f.name.replace(/_/g, " ");
}

function shortJson(value) {
  try {
    const s = JSON.stringify(value);
    return s.length > 120 ? `${s.slice(0, 117)}...` : s;
  } catch (_) {
    return "";
  }
}

function hintFor(f, extra) {
  const parts = [];
  if (f.description) parts.push(f.description.length > 400 ? `${f.description.slice(0, 397)}...` : f.description);
  if (extra) parts.push(extra);
  return parts.join(" ");
}

function wrap(f, control, hint, extras = []) {
  const id = fieldId(f.path);
  const hintId = `${id}-hint`;
  if (hint) control.setAttribute("aria-describedby", hintId);
  const label = el("label", { for: id }, labelText(f),
    f.required ? el("span", { class: "pg-required", "aria-hidden": "true" }, " *") : null,
    f.required ? el("span", { class: "pg-sr-only" }, " (required)") : null);
  return el("div", { class: `field pg-field pg-kind-${f.kind}`, "data-field": f.path },
    label, control, ...extras, hint ? el("small", { id: hintId, class: "hint" }, hint) : null);
}

function renderEnum(f) {
  const id = fieldId(f.path);
  const select = el("select", { id, name: f.path, required: f.required && f.default === undefined });
  const def = f.default === undefined || f.default === null ? undefined : String(f.default);
  if (!f.required) {
    select.appendChild(el("option", { value: "" }, def !== undefined ? `(default: ${def})` : "(not set)"));
  } else if (def === undefined) {
    select.appendChild(el("option", { value: "" }, "Choose..."));
  }
  for (const v of f.enum) {
    select.appendChild(el("option", { value: v, selected: f.required && v === def }, v));
  }
  return wrap(f, select, hintFor(f));
}

function renderEnumArray(f) {
  const id = fieldId(f.path);
  const select = el("select", { id, name: f.path, multiple: true, size: String(Math.min(6, f.enum.length)) });
  const defs = Array.isArray(f.default) ? f.default.map(String) : [];
  for (const v of f.enum) select.appendChild(el("option", { value: v, selected: defs.includes(v) }, v));
  return wrap(f, select, hintFor(f, "Choose any number (Ctrl/Cmd or Shift to pick several)."));
}

function renderNumber(f) {
  const id = fieldId(f.path);
  const hasRange = typeof f.min === "number" && typeof f.max === "number" && f.max > f.min &&
                   f.max - f.min <= MAX_SLIDER_SPAN;
  const step = f.integer ? "1" : "any";
  const def = typeof f.default === "number" ? f.default : undefined;
  const box = el("input", {
    id, name: f.path, type: "number", step, inputmode: f.integer ? "numeric" : "decimal",
    min: typeof f.min === "number" ? String(f.min) : null, max: typeof f.max === "number" ? String(f.max) : null,
    placeholder: def !== undefined ? `default: ${def}` : "", required: f.required && def === undefined,
  });
  const rangeText = typeof f.min === "number" || typeof f.max === "number"
    ? `From ${f.min ?? "-∞"} to ${f.max ?? "∞"}.` : "";
  const defText = def !== undefined ? `Default: ${def}.` : "";
  if (!hasRange) return wrap(f, box, hintFor(f, [rangeText, defText].filter(Boolean).join(" ")));
  const range = el("input", {
    id: `${id}-range`, type: "range", min: String(f.min), max: String(f.max), step: f.integer ? "1" : String((f.max - f.min) / 100),
    value: String(def ?? f.min), "aria-label": `${labelText(f)} (slider)`, class: "pg-range",
  });
  const output = el("output", { id: `${id}-value`, for: `${id}-range ${id}`, class: "pg-range-value" });
  const show = () => { output.textContent = box.value !== "" ? box.value : (def !== undefined ? `default (${def})` : "not set"); };
  range.addEventListener("input", () => { box.value = range.value; show(); });
  box.addEventListener("input", () => {
    if (box.value !== "" && Number.isFinite(Number(box.value))) range.value = box.value;
    show();
  });
  show();
  const row = el("div", { class: "pg-range-row" }, range, output, box);
  const field = wrap(f, row, hintFor(f, [rangeText, defText].filter(Boolean).join(" ")));
  return field;
}

function renderBoolean(f) {
  const id = fieldId(f.path);
  const box = el("input", { id, name: f.path, type: "checkbox", checked: f.default === true });
  const hint = hintFor(f, f.default !== undefined ? `Default: ${f.default}.` : "");
  const hintId = `${id}-hint`;
  if (hint) box.setAttribute("aria-describedby", hintId);
  return el("div", { class: "field field-check pg-field pg-kind-boolean", "data-field": f.path },
    box, el("label", { for: id }, labelText(f), f.required ? " (required)" : ""),
    hint ? el("small", { id: hintId, class: "hint" }, hint) : null);
}

function renderText(f) {
  const id = fieldId(f.path);
  const attrs = {
    id, name: f.path, required: f.required, maxlength: f.schema.maxLength ? String(f.schema.maxLength) : null,
    placeholder: f.default !== undefined ? `default: ${f.default}` : "", spellcheck: f.kind === "textarea" ? "true" : "false",
  };
  const control = f.kind === "textarea" ? el("textarea", { ...attrs, rows: "3" }) : el("input", { ...attrs, type: "text" });
  return wrap(f, control, hintFor(f, f.schema.pattern ? `Format: ${f.schema.pattern}` : ""));
}

function renderJson(f) {
  const id = fieldId(f.path);
  const example = f.schema.example !== undefined ? shortJson(f.schema.example) : "";
  const area = el("textarea", {
    id, name: f.path, rows: "3", class: "pg-json", spellcheck: "false", required: f.required,
    placeholder: example ? `e.g. ${example}` : "JSON",
  });
  return wrap(f, area, hintFor(f, "JSON."));
}

function renderFile(f, onFiles) {
  const id = fieldId(f.path);
  const multiple = f.kind === "files";
  const input = el("input", { id, name: f.path, type: "file", accept: "image/*", multiple, required: f.required && f.name !== "mask" });
  const preview = el("div", { id: `${id}-preview`, class: "pg-preview", "aria-live": "polite" });
  input.addEventListener("change", () => {
    preview.replaceChildren();
    const files = Array.from(input.files || []).slice(0, 16);
    for (const file of files) {
      const url = URL.createObjectURL(file);
      const img = el("img", { src: url, alt: `Preview of ${file.name}` });
      // a loaded picture stays shown without its URL: freed at once, whatever happens to the form later
      const free = () => URL.revokeObjectURL(url);
      img.addEventListener("load", free, { once: true });
      img.addEventListener("error", free, { once: true });
      preview.appendChild(el("figure", { class: "pg-thumb" }, img,
        el("figcaption", null, `${file.name} (${Math.ceil(file.size / 1024)} KB)`)));
    }
    if (onFiles) onFiles(f, files);
  });
  let extra = multiple && f.maxItems ? `Up to ${f.maxItems} images.` : "";
  if (f.name === "mask") extra = `${extra} Or paint it on the image below, once the image is chosen (black = area to edit).`;
  return wrap(f, input, hintFor(f, extra.trim()), [preview]);
}

function renderField(f, onFiles) {
  switch (f.kind) {
    case "enum": return renderEnum(f);
    case "enum-array": return renderEnumArray(f);
    case "number": return renderNumber(f);
    case "boolean": return renderBoolean(f);
    case "file":
    case "files": return renderFile(f, onFiles);
    case "json": return renderJson(f);
    case "group": {
      const box = el("fieldset", { class: "pg-group", "data-field": f.path },
        el("legend", null, `${f.name}${f.required ? " (required)" : ""}`),
        f.description ? el("p", { class: "hint" }, f.description) : null);
      for (const child of f.children) box.appendChild(renderField(child, onFiles));
      return box;
    }
    default: return renderText(f);
  }
}

function isMain(f) {
  return f.required || f.kind === "file" || f.kind === "group" || /prompt$/.test(f.name) ||
    f.kind === "enum" || f.kind === "number" || f.kind === "boolean" || f.kind === "enum-array";
}

/**
 * Render the operation's fields into `container`: the main fields, then optional text and JSON
 * fields inside a collapsed "More options". `onFiles(field, files)` is called when a file is chosen.
 */
export function renderFields(container, spec, onFiles) {
  container.replaceChildren();
  const main = spec.fields.filter(isMain);
  const more = spec.fields.filter((f) => !isMain(f));
  for (const f of main) container.appendChild(renderField(f, onFiles));
  if (more.length) {
    const details = el("details", { class: "pg-more", id: "pg-more" }, el("summary", null, `More options (${more.length})`));
    for (const f of more) details.appendChild(renderField(f, onFiles));
    container.appendChild(details);
  }
}

// ------------------------------------------------------------ reading the values back

export class FieldError extends Error {
  constructor(path, rule) {
    super(`${path}: ${rule}`);
    this.path = path;
  }
}

function control(form, f) {
  return form.querySelector(`#${fieldId(f.path)}`);
}

function numberValue(f, raw) {
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new FieldError(f.path, "must be a number");
  if (f.integer && !Number.isInteger(n)) throw new FieldError(f.path, "must be a whole number");
  if (typeof f.min === "number" && n < f.min) throw new FieldError(f.path, `must be at least ${f.min}`);
  if (typeof f.max === "number" && n > f.max) throw new FieldError(f.path, `must be at most ${f.max}`);
  return n;
}

/** The value of one field (undefined: not sent), typed as the JSON body wants it. */
function valueOf(form, f) {
  const c = control(form, f);
  switch (f.kind) {
    case "group": {
      const obj = {};
      for (const child of f.children) {
        const v = valueOf(form, child);
        if (v !== undefined) obj[child.name] = v;
      }
      return Object.keys(obj).length || f.required ? obj : undefined;
    }
    case "file":
    case "files": {
      const files = Array.from(c?.files || []);
      if (!files.length) return undefined;
      return f.kind === "file" ? files[0] : files;
    }
    case "boolean": {
      if (!c) return undefined;
      const def = f.default === true;
      return f.required || c.checked !== def ? c.checked : undefined;
    }
    case "enum-array": {
      const picked = Array.from(c?.selectedOptions || []).map((o) => o.value);
      return picked.length ? picked : undefined;
    }
    case "enum": {
      if (!c || c.value === "") {
        if (f.required) throw new FieldError(f.path, "is required: choose a value");
        return undefined;
      }
      return f.valueType === "integer" || f.valueType === "number" ? Number(c.value) : c.value;
    }
    case "number": {
      if (!c || c.value.trim() === "") {
        if (f.required && f.default === undefined) throw new FieldError(f.path, "is required");
        return undefined;
      }
      return numberValue(f, c.value.trim());
    }
    case "json": {
      const text = c ? c.value.trim() : "";
      if (!text) {
        if (f.required) throw new FieldError(f.path, "is required (JSON)");
        return undefined;
      }
      try {
        return JSON.parse(text);
      } catch (_) {
        throw new FieldError(f.path, "is not valid JSON");
      }
    }
    default: {
      const text = c ? c.value : "";
      if (text === "") {
        if (f.required) throw new FieldError(f.path, "is required");
        return undefined;
      }
      return text;
    }
  }
}

/** {name: value} of the top-level fields that are set (files as File / File[]). Throws FieldError. */
export function collectValues(form, spec) {
  const out = {};
  for (const f of spec.fields) {
    const v = valueOf(form, f);
    if (v !== undefined) out[f.name] = v;
  }
  return out;
}

function textPart(value) {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value); // arrays and objects: one JSON text part (what every endpoint reads)
}

/** The request body: FormData for multipart (files as Blobs), else a JSON string. */
export function encodeBody(spec, values) {
  if (spec.contentType === "application/json") return JSON.stringify(values);
  const fd = new FormData();
  for (const [name, value] of Object.entries(values)) {
    if (value instanceof Blob) {
      fd.append(name, value, value.name || `${name}.png`);
    } else if (Array.isArray(value) && value.length && value.every((v) => v instanceof Blob)) {
      for (const file of value) fd.append(name, file, file.name || `${name}.png`);
    } else {
      fd.append(name, textPart(value));
    }
  }
  return fd;
}
