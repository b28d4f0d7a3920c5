"""Cross-site request forgery against a signed-in operator, in a real browser.

A page on another origin makes the operator's browser post to the admin API: an ordinary form,
a ``text/plain`` form whose body is valid JSON (the classic JSON CSRF), a no-cors ``fetch`` with
credentials, and a ``DELETE`` (which needs a CORS preflight the server never grants). Each is
tried from another site (127.0.0.2: SameSite=Strict keeps the cookie home, so the request has no
credentials at all) and from the same site on another port (the cookie *is* sent; the server must
refuse it by Origin/CSRF header). Afterwards nothing changed, and the operator is still signed in."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from .conftest import Attacker, Browser, Console
from .pages import api_sign_in, fetch_json

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def console(start_console: Any) -> Console:
    return start_console()


@pytest.fixture(scope="module")
def victim(console: Console) -> dict[str, Any]:
    """An account with a balance and a key: what the forged requests try to change."""
    acct = console.admin.post("/admin/accounts", json={"name": "victim"})
    assert acct.status_code in (200, 201), acct.text
    account = acct.json()
    r = console.admin.post(f"/admin/accounts/{account['id']}/topup", json={"usd": "5", "note": "seed"})
    assert r.status_code == 200, r.text
    key = console.admin.post("/admin/keys", json={"name": "victim-key", "account_id": account["id"]})
    assert key.status_code in (200, 201), key.text
    return {"account": account, "key": key.json()}


def snapshot(console: Console, victim: dict[str, Any]) -> dict[str, Any]:
    accounts = console.admin.get("/admin/accounts").json()
    accounts = accounts.get("items", accounts) if isinstance(accounts, dict) else accounts
    account = console.admin.get(f"/admin/accounts/{victim['account']['id']}").json()
    keys = console.admin.get("/admin/keys").json()
    keys = keys.get("items", keys) if isinstance(keys, dict) else keys
    return {"accounts": sorted(a["id"] for a in accounts),
            "balance": {k: v for k, v in account.items() if "balance" in k},
            "keys": sorted((k["id"], k.get("revoked"), k.get("status")) for k in keys)}


def form_page(action: str, fields: dict[str, str], enctype: str | None = None) -> str:
    inputs = "".join(f"<input type=hidden name='{html.escape(k, quote=True)}' value='{html.escape(v, quote=True)}'>"
                     for k, v in fields.items())
    enc = f" enctype='{enctype}'" if enctype else ""
    return (f"<!doctype html><title>win a prize</title><form id=f method=post action='{html.escape(action)}'{enc}>"
            f"{inputs}</form><script>document.getElementById('f').submit()</script>")


def json_form_page(action: str, body: dict[str, Any]) -> str:
    """``enctype=text/plain`` sends ``name=value``: split a JSON text so the ``=`` lands inside a string."""
    text = json.dumps({**body, "pad": "PAD"})
    name, value = text.split("PAD")
    return form_page(action, {name: value}, "text/plain")


def fetch_page(url: str, method: str, body: str | None) -> str:
    init = {"method": method, "credentials": "include", "mode": "no-cors" if method == "POST" else "cors",
            "headers": {"Content-Type": "text/plain"}}
    if body is not None:
        init["body"] = body
    return (f"<!doctype html><title>fetch</title><script>window.outcome = null;"
            f"fetch({json.dumps(url)}, {json.dumps(init)}).then(r => {{ window.outcome = 'answered:' + r.type; }},"
            f" e => {{ window.outcome = 'blocked:' + e.name; }});</script>")


def navigation_status(browser: Browser, target: str) -> tuple[int, str]:
    """Wait until the forged form's answer is the page shown; its status and text."""
    d = browser.driver
    browser.wait().until(lambda drv: drv.current_url.startswith(target)
                         and drv.execute_script("return document.readyState") == "complete")
    status = d.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                              " return n ? n.responseStatus : null")
    return int(status), d.execute_script("return document.body ? document.body.innerText : ''")


@pytest.mark.parametrize("origin", ["cross_site", "same_site"])
def test_forged_posts_are_refused_and_change_nothing(browser: Browser, console: Console, attacker: Attacker,
                                                     victim: dict[str, Any], origin: str) -> None:
    d = browser.driver
    api_sign_in(browser, console)
    before = snapshot(console, victim)
    account_id = victim["account"]["id"]
    key_id = victim["key"]["id"]
    base = getattr(attacker, origin)
    target = console.url + "/admin/"
    attacks = {
        "/form-account": form_page(console.url + "/admin/accounts", {"name": "evil"}),
        "/json-account": json_form_page(console.url + "/admin/accounts", {"name": "evil"}),
        "/json-topup": json_form_page(f"{console.url}/admin/accounts/{account_id}/topup",
                                      {"usd": "1000", "note": "gift"}),
        "/json-key": json_form_page(console.url + "/admin/keys", {"name": "evil", "account_id": account_id}),
        "/form-session": form_page(console.url + "/console/api/session", {"admin_token": "guess"}),
    }
    attacker.pages.update(attacks)
    for path in attacks:
        d.get(base + path)
        expect = console.url + ("/console/api/session" if path == "/form-session" else "/admin/")
        status, text = navigation_status(browser, expect if path == "/form-session" else target)
        if origin == "same_site" or path == "/form-session":
            # the cookie went along (same site), or the sign-in itself was forged: the Origin /
            # Sec-Fetch-Site rule refuses it before anything else is looked at
            assert status == 403, (path, status, text)
        else:
            # another site: SameSite=Strict kept the cookie home, so the request had no credentials
            assert status == 401, (path, status, text)
        assert "evil" not in text and console.admin_token not in text
        browser.shot(f"csrf-{origin.replace('_', '-')}{path.replace('/', '-')}")

    # script-made requests: a no-cors POST (no preflight, cookie included) and a DELETE (preflight refused)
    attacker.pages["/fetch-post"] = fetch_page(console.url + "/admin/accounts", "POST", json.dumps({"name": "evil"}))
    attacker.pages["/fetch-delete"] = fetch_page(f"{console.url}/admin/keys/{key_id}", "DELETE", None)
    for path in ("/fetch-post", "/fetch-delete"):
        d.get(base + path)
        outcome = browser.wait().until(lambda drv: drv.execute_script("return window.outcome"))
        if path == "/fetch-delete":
            assert outcome.startswith("blocked:"), outcome  # no Access-Control-Allow-* for another origin

    # the positive control: from the console's own origin the cookie works, yet a write without
    # the X-CSRF-Token header (what a same-origin injection that cannot read the token would send) is 403
    d.get(console.url + "/console/api/config")
    r = fetch_json(browser, "/admin/accounts", "POST", {"name": "evil"})
    assert r["status"] == 403 and "CSRF" in json.dumps(r["body"]).upper(), r
    r = fetch_json(browser, "/admin/accounts", "POST", {"name": "evil"}, {"X-CSRF-Token": "0" * 43})
    assert r["status"] == 403, r
    assert fetch_json(browser, "/admin/accounts")["status"] == 200  # reads need no CSRF header

    assert snapshot(console, victim) == before
    # the operator is still signed in: the refusals were the server's (or the browser's), not a logout
    d.get(console.url + "/console/api/session")
    status, text = navigation_status(browser, console.url + "/console/api/session")
    assert status == 200, text
    assert "csrf_token" in text
