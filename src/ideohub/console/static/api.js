// Fetch wrappers. Every URL is relative to apiRoot, computed from the page's own address, so the
// console works under a path prefix behind a reverse proxy (the page lives at <root>/console/).

/** Absolute URL of the server root, ending "/": "../" from <root>/console/. */
export const apiRoot = new URL("../", location.href.split("#")[0]).href;

/** An API answer that was not 2xx. `message` is the server's detail (hostile text: display with textContent). */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The human text of an error body: RFC 7807 detail, FastAPI's list of problems, or {"error"}. */
export function errorText(body, status) {
  if (body && typeof body === "object") {
    const d = body.detail;
    if (typeof d === "string" && d) return d;
    if (Array.isArray(d)) {
      return d.map((p) => (p && typeof p === "object" ? `${(p.loc || []).join(".")}: ${p.msg || ""}` : String(p))).join("; ");
    }
    if (typeof body.error === "string" && body.error) return body.error;
    if (typeof body.message === "string" && body.message) return body.message;
  }
  // a body that is no problem JSON (a reverse proxy's own page, say): say what the status means
  const meaning = {
    413: "the request is too large (a file, or the whole upload, is over the limit)",
    429: "too many requests: wait a little and try again",
    502: "the server could not be reached through its proxy",
    503: "the server is busy or not ready: try again shortly",
    504: "the server took too long to answer",
  }[status];
  if (meaning) return `The server answered ${status}: ${meaning}.`;
  return status ? `The server answered ${status}.` : "The server could not be reached.";
}

export async function readBody(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (_) {
    return text;
  }
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === null || v === undefined || v === "") continue;
    params.append(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}${path.includes("?") ? "&" : "?"}${qs}` : path;
}

// ------------------------------------------------------------ operator (session cookie + CSRF)

let csrfToken = null;
let onUnauthorized = () => {};

/** The shell registers what a 401 does (back to the sign-in page with a message). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function setCsrfToken(token) {
  csrfToken = token || null;
}

/**
 * Operator request: the session cookie (same-origin only) and X-CSRF-Token on every non-GET.
 * Returns the parsed JSON body (null for 204); throws ApiError otherwise. A 401 ends the session.
 */
export async function opJson(path, { method = "GET", body, query } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(new URL(withQuery(path, query), apiRoot), {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "The server could not be reached.", null);
  }
  const data = await readBody(response);
  if (!response.ok) {
    const error = new ApiError(response.status, errorText(data, response.status), data);
    if (response.status === 401) onUnauthorized("Your operator session expired or was ended. Sign in again.");
    throw error;
  }
  return data;
}

// ------------------------------------------------------------ console session

export async function getConfig() {
  try {
    const r = await fetch(new URL("console/api/config", apiRoot), { credentials: "same-origin", cache: "no-store" });
    if (r.ok) return await r.json();
  } catch (_) { /* the defaults below */ }
  return { operator_enabled: true, session_hours: null };
}

/** The current operator session, or null (no cookie, expired, or ended). */
export async function getSession() {
  try {
    const r = await fetch(new URL("console/api/session", apiRoot), { credentials: "same-origin", cache: "no-store",
                                                                      headers: { Accept: "application/json" } });
    if (!r.ok) return null;
    return await r.json();
  } catch (_) {
    return null;
  }
}

/** Sign in as the operator. Returns the session body or throws ApiError (401 wrong token, 404 disabled, 429). */
export async function createSession(adminToken) {
  let r;
  try {
    r = await fetch(new URL("console/api/session", apiRoot), {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ admin_token: adminToken }),
    });
  } catch (_) {
    throw new ApiError(0, "The server could not be reached.", null);
  }
  const data = await readBody(r);
  if (!r.ok) {
    let text = errorText(data, r.status);
    if (r.status === 401) text = "That admin token is not correct.";
    if (r.status === 429) text = `Too many sign-in attempts. Try again in ${r.headers.get("Retry-After") || "a few"} seconds.`;
    throw new ApiError(r.status, text, data);
  }
  return data;
}

export async function deleteSession() {
  try {
    await fetch(new URL("console/api/session", apiRoot), {
      method: "DELETE", credentials: "same-origin", cache: "no-store",
      headers: csrfToken ? { "X-CSRF-Token": csrfToken } : {},
    });
  } catch (_) { /* signed out locally anyway */ }
  csrfToken = null;
}

// ------------------------------------------------------------ key holder (Api-Key header, never a cookie)

/**
 * keyFetcher(key) -> keyFetch(path, init): fetch relative to apiRoot with the key as the Api-Key header.
 * Cookies are never sent (credentials "omit"), so the operator session cannot leak into key-holder calls.
 * A 401 (revoked or expired key) returns to the sign-in page; so does a 403 when the key itself is
 * no longer valid (Ideogram's legacy remix and upscale answer a bad key with 403, which also means
 * "this key may not use this operation": the key is checked again to tell them apart).
 * The Response is still handed back.
 */
export function keyFetcher(key) {
  const revoked = "Your API key was not accepted (revoked or expired). Sign in again.";
  return async function keyFetch(path, init = {}) {
    const headers = new Headers(init.headers || {});
    headers.set("Api-Key", key);
    if (!headers.has("Accept")) headers.set("Accept", "application/json");
    const response = await fetch(new URL(path, apiRoot), { ...init, headers, credentials: "omit", cache: "no-store" });
    if (response.status === 401) onUnauthorized(revoked);
    else if (response.status === 403 && !(await keyStillValid(key))) onUnauthorized(revoked);
    return response;
  };
}

/** False only when the server says the key is not valid (401); a network error proves nothing. */
async function keyStillValid(key) {
  try {
    const r = await fetch(new URL("v2/account/balance", apiRoot), {
      headers: { "Api-Key": key, Accept: "application/json" }, credentials: "omit", cache: "no-store",
    });
    return r.status !== 401;
  } catch (_) {
    return true;
  }
}

/** Check an API key: GET v2/account/balance. Returns the balance body or throws ApiError. */
export async function checkKey(key) {
  let r;
  try {
    r = await fetch(new URL("v2/account/balance", apiRoot), {
      headers: { "Api-Key": key, Accept: "application/json" }, credentials: "omit", cache: "no-store",
    });
  } catch (_) {
    throw new ApiError(0, "The server could not be reached.", null);
  }
  const data = await readBody(r);
  if (!r.ok) {
    let text = errorText(data, r.status);
    if (r.status === 401) text = "That API key is not valid (unknown, revoked or expired).";
    throw new ApiError(r.status, text, data);
  }
  return data;
}
