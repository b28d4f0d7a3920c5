// The console shell: one sign-in page for both kinds of user (operator: admin token -> session
// cookie; key holder: API key kept only in this module's memory), the nav, a hash router
// ("#/<route id>") and sign-out.

import * as ui from "./ui.js";
import * as api from "./api.js";
import { OPERATOR_ROUTES } from "./operator.js";

const { el, clear } = ui;

// The key-holder pages come from keyholder.js (another module's job). Loaded on its own so a
// missing or broken file cannot take the operator side down with it; the failure is shown on the
// sign-in page and in the browser console, never hidden.
const keyholderRoutes = import("./keyholder.js").then((m) => {
  if (!Array.isArray(m.KEYHOLDER_ROUTES) || !m.KEYHOLDER_ROUTES.length) {
    throw new Error("keyholder.js does not export a non-empty KEYHOLDER_ROUTES array");
  }
  return m.KEYHOLDER_ROUTES;
});
keyholderRoutes.catch((err) => console.error("ideohub console: the key-holder pages (keyholder.js) failed to load:", err));

const state = {
  config: { operator_enabled: true },
  role: null, // "operator" | "keyholder" | null (signed out)
  routes: [],
  keyFetch: null, // the key itself lives only inside this closure (api.keyFetcher)
  who: "",
  cleanup: null,
  routeToken: 0,
  wantedHash: null, // the route asked for before signing in
};

/** After a sign-in: go to the page that was asked for, if this kind of user has it. */
function restoreWantedRoute() {
  const wanted = state.wantedHash;
  state.wantedHash = null;
  if (!wanted) return;
  let id = wanted.slice(2).split("/")[0] || "";
  try { id = decodeURIComponent(id); } catch (_) { /* kept as typed */ }
  if (routeById(id)) history.replaceState(null, "", wanted);
}

function routeById(id) {
  return state.routes.find((r) => r.id === id);
}

// ------------------------------------------------------------ sign-in page

function showSignIn(messageText) {
  state.role = null;
  state.routes = [];
  state.keyFetch = null;
  state.routeToken++; // a page still loading is stale now: its cleanup runs as soon as it mounts
  runCleanup();
  const header = document.getElementById("app-header");
  header.hidden = true;
  clear(header);
  document.title = "Sign in · ideohub console";
  if (location.hash) {
    // a deep link (e.g. a bookmarked #/requests) is kept for after the sign-in
    if (location.hash.startsWith("#/")) state.wantedHash = location.hash;
    history.replaceState(null, "", location.pathname + location.search);
  }

  const operatorEnabled = state.config.operator_enabled !== false;
  const opError = el("p", { id: "signin-operator-error", class: "msg msg-error", role: "alert", hidden: true });
  const keyError = el("p", { id: "signin-key-error", class: "msg msg-error", role: "alert", hidden: true });

  let operatorSection;
  if (operatorEnabled) {
    const tokenField = ui.field({ id: "signin-admin-token", label: "Admin token", type: "password", required: true,
                                  autocomplete: "current-password", spellcheck: "false" });
    const submit = el("button", { type: "submit", id: "signin-operator-submit" }, "Sign in as operator");
    // a hidden user name, so password managers file the token under "operator"
    const user = el("input", { type: "text", name: "username", autocomplete: "username", value: "operator", hidden: true });
    const form = el("form", { id: "signin-operator-form", novalidate: true }, user, tokenField, submit, opError);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const input = document.getElementById("signin-admin-token");
      const token = input.value.trim();
      opError.hidden = true;
      if (!token) {
        opError.textContent = "Enter the admin token.";
        opError.hidden = false;
        input.focus();
        return;
      }
      await ui.busy(submit, async () => {
        try {
          const session = await api.createSession(token);
          input.value = "";
          startOperator(session);
        } catch (err) {
          opError.textContent = err.message;
          opError.hidden = false;
          if (err.status === 404) state.config.operator_enabled = false;
          input.focus();
        }
      });
    });
    operatorSection = el("section", { class: "card signin-card", "aria-labelledby": "signin-operator-heading", id: "signin-operator" },
      el("h2", { id: "signin-operator-heading" }, "Operator"),
      el("p", { class: "hint" }, "Manage channels, accounts, keys and prices with the server's admin token."),
      form);
  } else {
    operatorSection = el("section", { class: "card signin-card", "aria-labelledby": "signin-operator-heading", id: "signin-operator" },
      el("h2", { id: "signin-operator-heading" }, "Operator"),
      el("p", { id: "operator-disabled", class: "msg msg-warn" },
        "The operator console is disabled: this server has no admin_token configured. Key holders can still sign in."));
  }

  const keyField = ui.field({ id: "signin-api-key", label: "API key", type: "password", required: true,
                              autocomplete: "off", spellcheck: "false",
                              hint: "Kept only in this page's memory: reloading or closing the page signs you out." });
  const keySubmit = el("button", { type: "submit", id: "signin-key-submit" }, "Sign in with API key");
  const keyForm = el("form", { id: "signin-key-form", novalidate: true }, keyField, keySubmit, keyError);
  const keyholderProblem = el("p", { id: "keyholder-unavailable", class: "msg msg-error", role: "alert", hidden: true });
  keyholderRoutes.catch((err) => {
    keyholderProblem.textContent = `The key-holder pages could not be loaded (keyholder.js): ${err.message}`;
    keyholderProblem.hidden = false;
  });
  keyForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = document.getElementById("signin-api-key");
    const key = input.value.trim();
    keyError.hidden = true;
    if (!key) {
      keyError.textContent = "Enter your API key.";
      keyError.hidden = false;
      input.focus();
      return;
    }
    await ui.busy(keySubmit, async () => {
      try {
        const balance = await api.checkKey(key);
        const routes = await keyholderRoutes.catch((err) => {
          throw new Error(`The key-holder pages could not be loaded (keyholder.js): ${err.message}`);
        });
        input.value = "";
        startKeyholder(key, balance, routes);
      } catch (err) {
        keyError.textContent = err.message;
        keyError.hidden = false;
        input.focus();
      }
    });
  });
  const keySection = el("section", { class: "card signin-card", "aria-labelledby": "signin-key-heading", id: "signin-key" },
    el("h2", { id: "signin-key-heading" }, "API key"),
    el("p", { class: "hint" }, "See your balance, keys, usage and requests, and try the image API."),
    keyholderProblem,
    keyForm);

  const main = document.getElementById("main");
  clear(main,
    el("div", { class: "signin" },
      el("h1", { id: "signin-heading", tabindex: "-1" }, "Sign in to the ideohub console"),
      messageText ? el("p", { id: "signin-message", class: "msg msg-warn", role: "alert" }, messageText) : null,
      el("div", { class: "signin-grid" }, operatorSection, keySection)));
  const first = operatorEnabled ? document.getElementById("signin-admin-token") : document.getElementById("signin-api-key");
  if (messageText) document.getElementById("signin-heading").focus();
  else if (first) first.focus();
}

// ------------------------------------------------------------ signed in

function startOperator(session) {
  api.setCsrfToken(session.csrf_token);
  state.role = "operator";
  state.routes = OPERATOR_ROUTES;
  state.who = "Operator";
  restoreWantedRoute();
  renderShell();
  route();
}

function startKeyholder(key, balance, routes) {
  state.role = "keyholder";
  state.routes = routes;
  state.keyFetch = api.keyFetcher(key);
  state.who = balance && balance.name ? `Key holder · ${balance.name}` : "Key holder";
  restoreWantedRoute();
  renderShell();
  route();
}

async function signOut(messageText) {
  const wasOperator = state.role === "operator";
  history.replaceState(null, "", location.pathname + location.search); // a new sign-in starts at the first page
  state.role = null;
  if (wasOperator) await api.deleteSession();
  api.setCsrfToken(null);
  ui.clearNotice();
  showSignIn(typeof messageText === "string" ? messageText : "You are signed out.");
}

api.setUnauthorizedHandler((messageText) => {
  if (state.role === null) return; // already on the sign-in page
  state.role = null;
  api.setCsrfToken(null);
  ui.clearNotice();
  showSignIn(messageText);
});

function renderShell() {
  const header = document.getElementById("app-header");
  const navId = "main-nav";
  const toggle = el("button", { type: "button", id: "nav-toggle", class: "nav-toggle secondary", "aria-expanded": "false",
                                "aria-controls": navId }, "Menu");
  const nav = el("nav", { id: navId, class: "main-nav", "aria-label": "Console sections" },
    el("ul", null, state.routes.map((r) =>
      el("li", null, el("a", { href: `#/${r.id}`, id: `nav-${r.id}`, dataset: { route: r.id } }, r.title)))));
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    nav.classList.toggle("open", open);
  });
  nav.addEventListener("click", (e) => {
    if (e.target.closest("a")) {
      toggle.setAttribute("aria-expanded", "false");
      nav.classList.remove("open");
    }
  });
  const signOutButton = el("button", { type: "button", id: "signout", class: "secondary" }, "Sign out");
  signOutButton.addEventListener("click", () => signOut("You are signed out."));
  clear(header,
    el("div", { class: "header-bar" },
      el("span", { class: "brand" }, "ideohub console"),
      toggle,
      el("span", { id: "signed-in-as", class: "who" }, state.who),
      signOutButton),
    nav);
  header.hidden = false;
}

function runCleanup() {
  const fn = state.cleanup;
  state.cleanup = null;
  if (typeof fn === "function") {
    try { fn(); } catch (err) { console.error(err); }
  }
}

/** Show the route named by the hash ("#/<id>/<rest>"); an unknown or empty hash goes to the first route. */
async function route() {
  if (!state.role) return;
  const hash = location.hash;
  if (hash && !hash.startsWith("#/")) return; // an in-page anchor, not a route
  const decode = (part) => { try { return decodeURIComponent(part); } catch (_) { return part; } };
  const [id, ...rest] = hash.slice(2).split("/");
  let r = routeById(decode(id || ""));
  if (!r) {
    r = state.routes[0];
    history.replaceState(null, "", `#/${r.id}`);
  }
  runCleanup();
  ui.clearNotice();
  const token = ++state.routeToken;
  for (const a of document.querySelectorAll("#main-nav a")) {
    if (a.dataset.route === r.id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${r.title} · ideohub console`;
  const main = document.getElementById("main");
  const view = el("div", { id: "view", class: `view view-${r.id}`, dataset: { route: r.id } });
  clear(main, view);
  const ctx = {
    apiRoot: api.apiRoot,
    ui,
    signOut: () => signOut("You are signed out."),
    role: state.role,
    params: rest.map(decode),
  };
  if (state.role === "keyholder") ctx.keyFetch = state.keyFetch;
  if (state.role === "operator") ctx.op = api.opJson;
  try {
    const cleanup = await r.mount(view, ctx);
    if (token !== state.routeToken) {
      if (typeof cleanup === "function") cleanup();
      return;
    }
    state.cleanup = cleanup;
  } catch (err) {
    if (token !== state.routeToken || !state.role) return;
    console.error(err);
    view.appendChild(ui.message(`This page failed to load: ${err.message}`, "error"));
  }
  if (token === state.routeToken && document.activeElement === document.body) {
    const h1 = view.querySelector("h1");
    if (h1) { h1.setAttribute("tabindex", "-1"); h1.focus({ preventScroll: true }); }
  }
}

window.addEventListener("hashchange", () => {
  route();
  const h1 = document.querySelector("#view h1");
  if (h1) { h1.setAttribute("tabindex", "-1"); h1.focus({ preventScroll: true }); }
});

document.addEventListener("click", (e) => {
  const skip = e.target.closest(".skip-link");
  if (skip) {
    e.preventDefault();
    document.getElementById("main").focus();
  }
});

async function boot() {
  state.config = await api.getConfig();
  const session = state.config.operator_enabled !== false ? await api.getSession() : null;
  if (session && session.csrf_token) startOperator(session);
  else showSignIn(null);
}

boot();
