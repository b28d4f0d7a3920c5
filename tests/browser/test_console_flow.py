"""The console's whole story in a real Chromium, as a new operator and their first customer live it.

The operator signs in with the admin token, adds the (simulated) upstream as a channel and tests
it, creates an account, tops it up with $5 and creates a key, whose secret is shown once. The
customer signs in with that key, generates and inpaints with a mask painted on the canvas in the
playground, sees the images, finds both requests with their charges, and sees the balance went
down by exactly their sum; an asynchronous generation shows its status until it completes. The
operator finds the same requests in the request log. Every page is saved as a screenshot.

The steps share one browser and one server and run in order (``steps``: after a failure the rest
are skipped as blocked)."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import SIM_KEY, png_bytes

from .conftest import Browser, Console
from .pages import (by_id, capture_uploads, choose, click, console_cookie, fill, go, image_loaded, key_sign_in,
                    open_console, operator_sign_in, pick_operation, visible, wait_for_new_set, wait_text)

pytestmark = [pytest.mark.steps, pytest.mark.timeout(180)]

IMAGE_W, IMAGE_H = 256, 192  # the picture the customer inpaints
CHANNEL = "sim-upstream"


@pytest.fixture(scope="module")
def console(start_console: Any) -> Console:
    return start_console(log_prompts=True)


@pytest.fixture(scope="module")
def story() -> dict[str, Any]:
    """What one step hands to the next (the key's secret, the charges, ...)."""
    return {}


@pytest.fixture(scope="module")
def upstream(sims: list) -> Any:
    sim = sims[0]
    sim.reset()
    sim.configure(latency_s=0.0)
    return sim


def percent(text: str) -> float:
    """"Painted 3.3% of the image (256x192)." -> 3.3"""
    return float(text.split("Painted ")[1].split("%")[0])


def usd(text: str) -> Decimal:
    """"$4.88" / "Charged: $0.06" / "Charge: $0.06" -> Decimal (the console prints exact amounts)."""
    return Decimal(text.rsplit("$", 1)[1].strip().replace(",", ""))


# ---------------------------------------------------------------- the operator


def test_sign_in_page(browser: Browser, console: Console) -> None:
    open_console(browser, console)
    assert browser.driver.current_url.startswith(console.url + "/console/")  # /console -> console/
    visible(browser, "#signin-admin-token")
    visible(browser, "#signin-api-key")
    assert console_cookie(browser) is None
    browser.shot("01-sign-in")


def test_operator_signs_in(browser: Browser, console: Console) -> None:
    operator_sign_in(browser, console.admin_token)
    visible(browser, "#view[data-route='dashboard'] h1")
    browser.wait().until(lambda d: by_id(browser, "dashboard-body").get_attribute("aria-busy") == "false")
    cookie = console_cookie(browser)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert console.admin_token not in json.dumps(cookie)
    # the token is not left anywhere the page can read it back
    assert browser.driver.execute_script(
        "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie") == "{}{}"
    browser.shot("02-dashboard")


def test_operator_adds_and_tests_a_channel(browser: Browser, console: Console, upstream: Any) -> None:
    go(browser, "channels")
    click(browser, "channel-add-open")
    fill(browser, "channel-name", CHANNEL)
    choose(browser, "channel-kind", "relay")
    fill(browser, "channel-base-url", upstream.base_url)
    fill(browser, "channel-key", SIM_KEY)
    choose(browser, "channel-auth", "api-key")
    choose(browser, "channel-path-style", "official")
    browser.shot("03-channel-form")
    click(browser, "channel-submit")
    visible(browser, f"#channels-table tr[data-channel='{CHANNEL}']")
    click(browser, f"channel-test-{CHANNEL}")
    result = f"#channel-test-result-{CHANNEL}"
    browser.wait().until(lambda d: by_id(browser, result[1:]).get_attribute("data-ok") is not None,
                         "the channel test never answered")
    assert by_id(browser, result[1:]).get_attribute("data-ok") == "true", by_id(browser, result[1:]).text
    assert by_id(browser, result[1:]).text.startswith("ok")
    browser.shot("03-channels")
    # what the form stored, as the admin API reads it; the upstream key is never handed back
    listed = console.admin.get("/admin/channels").json()
    ch = next(c for c in listed if c["name"] == CHANNEL)
    assert ch["base_url"].rstrip("/") == upstream.base_url.rstrip("/")
    assert ch["auth"] == "api-key" and ch["path_style"] == "official" and ch["enabled"]
    assert SIM_KEY not in json.dumps(listed)
    assert any(r.auth_ok for r in upstream.requests), "the test never reached the upstream with its key"


def test_operator_creates_account_tops_up_and_creates_key(browser: Browser, console: Console,
                                                          story: dict[str, Any]) -> None:
    go(browser, "accounts")
    fill(browser, "account-name", "First Customer")
    click(browser, "account-create-submit")
    visible(browser, "#account-detail #account-id")
    account_id = by_id(browser, "account-id").text
    story["account_id"] = account_id
    fill(browser, "topup-usd", "5")
    fill(browser, "topup-note", "first payment")
    click(browser, "topup-submit")
    wait_text(browser, "#account-balance", lambda t: t == "$5.00", "the balance after the top-up")
    account = console.admin.get(f"/admin/accounts/{account_id}").json()
    assert Decimal(account["balance_usd"]) == Decimal("5")

    fill(browser, "key-name", "playground key")
    click(browser, "key-create-submit")
    secret_box = visible(browser, "#secret-dialog #new-key-secret")
    secret = secret_box.get_attribute("value")
    assert secret and len(secret) >= 20
    browser.shot("04-key-created")
    click(browser, "secret-close")
    browser.wait().until(lambda d: not d.find_elements("id", "secret-dialog"), "the secret dialog stayed open")
    assert secret not in browser.driver.page_source  # shown once, then gone from the page
    visible(browser, "#keys-table tbody tr[data-key-id]")
    browser.shot("04-accounts")
    keys = console.admin.get("/admin/keys", params={"account_id": account_id}).json()
    keys = keys.get("items", keys) if isinstance(keys, dict) else keys
    assert [k["name"] for k in keys] == ["playground key"] and secret not in json.dumps(keys)
    story["key"] = secret
    story["key_id"] = keys[0]["id"]


def test_operator_edits_limits_and_revokes_a_key(browser: Browser, console: Console, story: dict[str, Any]) -> None:
    """Every limit is edited from the page (and reaches the admin API as typed); a spare key is
    revoked after a confirmation."""
    kid = story["key_id"]
    click(browser, f"key-edit-{kid}")
    visible(browser, "#key-edit-form")
    fill(browser, "key-edit-rpm", "30")
    fill(browser, "key-edit-max-images", "4")
    fill(browser, "key-edit-spend-cap", "4.5")
    click(browser, "key-edit-submit")
    browser.wait().until(lambda d: not d.find_elements("id", "key-edit-form"), "the edit form stayed open")
    (key,) = [k for k in console.admin.get("/admin/keys", params={"account_id": story["account_id"]}).json()
              if k["id"] == kid]
    assert (key["rpm"], key["max_images_in_flight"], Decimal(key["spend_cap_usd"])) == (30, 4, Decimal("4.5"))

    fill(browser, "key-name", "spare key")
    click(browser, "key-create-submit")
    visible(browser, "#secret-dialog #new-key-secret")
    click(browser, "secret-close")
    browser.wait().until(lambda d: not d.find_elements("id", "secret-dialog"), "the secret dialog stayed open")
    spare = next(k for k in console.admin.get("/admin/keys", params={"account_id": story["account_id"]}).json()
                 if k["name"] == "spare key")
    click(browser, f"key-revoke-{spare['id']}")
    visible(browser, "#confirm-dialog")
    click(browser, "confirm-ok")
    browser.wait().until(lambda d: by_id(browser, f"key-revoke-{spare['id']}").get_attribute("disabled") is not None,
                         "the revoked key's buttons stayed enabled")
    statuses = {k["id"]: k["status"] for k in console.admin.get("/admin/keys", params={"account_id": story["account_id"]}).json()}
    assert statuses == {kid: "active", spare["id"]: "revoked"}
    browser.shot("04-keys-edited")


def test_operator_signs_out(browser: Browser, console: Console) -> None:
    cookie = console_cookie(browser)
    assert cookie is not None
    click(browser, "signout")
    wait_text(browser, "#signin-message", lambda t: "signed out" in t)
    assert console_cookie(browser) is None
    # the session ended on the server too: the old cookie no longer signs anybody in
    r = console.http.get("/console/api/session", headers={"Cookie": f"ideohub_console={cookie['value']}"})
    assert r.status_code == 401, r.text


# ---------------------------------------------------------------- the customer


def test_customer_signs_in_with_the_key(browser: Browser, console: Console, story: dict[str, Any]) -> None:
    key_sign_in(browser, story["key"])
    visible(browser, "#view[data-route='account'] h1")
    wait_text(browser, "#kh-balance-value", lambda t: t == "$5.00", "the customer's balance")
    visible(browser, f"#kh-keys-table tr[data-key-id='{story['key_id']}'][data-current='true']")
    assert console_cookie(browser) is None  # a key holder never gets a cookie
    assert story["key"] not in browser.driver.execute_script(
        "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    browser.shot("05-account")


def test_customer_generates_in_the_playground(browser: Browser, story: dict[str, Any]) -> None:
    go(browser, "playground")
    pick_operation(browser, "/v1/ideogram-v3/generate")
    fill(browser, "pg-f-prompt", "a lighthouse on a cliff at dawn, watercolour")
    click(browser, "pg-submit")
    result = wait_for_new_set(browser, 0)
    wait_text(browser, "#pg-status", lambda t: t.startswith("Done"))
    for img in result.find_elements("css selector", "img.pg-result-img"):
        image_loaded(browser, img)
    charge = usd(result.find_element("css selector", "p.pg-price").text)
    assert charge > 0
    story["charges"] = {"v3-generate": charge}
    # each image has a download link to the same signed URL, named for saving
    images = result.find_elements("css selector", "img.pg-result-img")
    links = result.find_elements("css selector", "a.pg-download")
    assert [a.get_attribute("href") for a in links] == [i.get_attribute("src") for i in images]
    assert all(a.get_attribute("download") for a in links)
    browser.shot("06-playground-generate")


def test_customer_inpaints_with_a_painted_mask(browser: Browser, tmp_path_factory: pytest.TempPathFactory,
                                               upstream: Any, story: dict[str, Any]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    picture = Path(tmp_path_factory.mktemp("upload")) / "harbour.png"
    picture.write_bytes(png_bytes(IMAGE_W, IMAGE_H, seed=7))
    capture_uploads(browser)
    pick_operation(browser, "/v1/ideogram-v3/edit")
    by_id(browser, "pg-f-image").send_keys(str(picture))
    canvas = visible(browser, "#pg-mask-canvas[data-width]")
    assert (canvas.get_attribute("data-width"), canvas.get_attribute("data-height")) == (str(IMAGE_W), str(IMAGE_H))
    browser.driver.execute_script("""const s = document.getElementById('pg-mask-size');
        s.value = '16'; s.dispatchEvent(new Event('input', {bubbles: true}));""")
    wait_text(browser, "#pg-mask-size-value", lambda t: t == "16 px", "the brush size")
    # one stroke with the mouse through the middle of the picture
    ActionChains(browser.driver).move_to_element(canvas).move_by_offset(-30, 0).click_and_hold() \
        .move_by_offset(20, 0).move_by_offset(20, 0).move_by_offset(20, 0).release().perform()
    browser.wait().until(lambda d: canvas.get_attribute("data-painted") == "true", "the stroke painted nothing")
    stroke = percent(wait_text(browser, "#pg-mask-status", lambda t: t.startswith("Painted")))
    # the eraser takes back the stroke's left end, and the brush is chosen again
    click(browser, "pg-mask-eraser")
    assert by_id(browser, "pg-mask-eraser").get_attribute("aria-pressed") == "true"
    ActionChains(browser.driver).move_to_element(canvas).move_by_offset(-34, 0).click_and_hold() \
        .move_by_offset(8, 0).release().perform()
    painted_text = wait_text(browser, "#pg-mask-status", lambda t: t.startswith("Painted") and percent(t) < stroke,
                             "the eraser took nothing back")
    assert percent(painted_text) > 0
    click(browser, "pg-mask-brush")
    assert by_id(browser, "pg-mask-brush").get_attribute("aria-pressed") == "true"
    fill(browser, "pg-f-prompt", "a red sailing boat on the water")
    browser.shot("07-playground-inpaint-mask")
    before = len(browser.driver.find_elements("css selector", "#pg-results .pg-set"))
    click(browser, "pg-submit")
    result = wait_for_new_set(browser, before)
    for img in result.find_elements("css selector", "img.pg-result-img"):
        image_loaded(browser, img)
    charge = usd(result.find_element("css selector", "p.pg-price").text)
    assert charge > 0
    story["charges"]["v3-edit"] = charge
    browser.shot("08-playground-inpaint-result")

    # the mask the browser sent: a PNG of the picture's size, black where the stroke went, white elsewhere
    sent = [s for s in browser.driver.execute_script("return window.__sent")
            if s["url"].endswith("/v1/ideogram-v3/edit")]
    assert len(sent) == 1, [s["url"] for s in sent]
    mask_url = sent[0]["parts"]["mask"]
    assert mask_url.startswith("data:image/png;base64,")
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask_url.split(",", 1)[1]))).convert("RGB"))
    assert mask.shape == (IMAGE_H, IMAGE_W, 3)
    assert set(np.unique(mask)) <= {0, 255}, "the mask is not pure black and white"
    black = (mask == 0).all(axis=2)
    assert black[IMAGE_H // 2, IMAGE_W // 2], "the middle of the stroke is not black"
    for y, x in ((0, 0), (0, IMAGE_W - 1), (IMAGE_H - 1, 0), (IMAGE_H - 1, IMAGE_W - 1)):
        assert not black[y, x], f"corner {(x, y)} was never painted but is black"
    share = black.mean()
    shown = percent(painted_text) / 100
    assert 0.005 < share < 0.5 and abs(share - shown) < 0.01, (share, painted_text)
    # ... and what reached the upstream: the edit with a mask of exactly the picture's size
    edits = [r for r in upstream.requests if r.operation == "v3-edit" and r.fields]
    assert len(edits) == 1, [(r.operation, r.error) for r in upstream.requests]
    assert edits[0].fields["mask"]["size"] == f"{IMAGE_W}x{IMAGE_H}"
    assert edits[0].fields["image"]["size"] == f"{IMAGE_W}x{IMAGE_H}"


def test_customer_finds_both_requests_and_their_charges(browser: Browser, console: Console,
                                                         story: dict[str, Any]) -> None:
    go(browser, "my-requests")
    browser.wait().until(lambda d: len(d.find_elements("css selector", "#kh-requests tr.kh-req-row")) >= 2,
                         "the two requests never showed in the customer's log")
    rows = browser.driver.find_elements("css selector", "#kh-requests tr.kh-req-row")
    seen = {}
    for row in rows:
        text = row.text
        op = "v3-edit" if "v3-edit" in text else "v3-generate" if "v3-generate" in text else None
        if op:
            seen[op] = usd(row.find_element("css selector", "td.kh-charge").text)
    assert seen == story["charges"], (seen, story["charges"])
    browser.shot("09-my-requests")
    # the detail of the inpainting: its charge and its (still live) image
    edit_row = next(r for r in rows if "v3-edit" in r.text)
    edit_row.find_element("css selector", "button.kh-req-open").click()
    wait_text(browser, "#kh-req-charge", lambda t: "$" in t)
    assert usd(by_id(browser, "kh-req-charge").text) == story["charges"]["v3-edit"]
    thumb = visible(browser, "#kh-req-images img.kh-req-thumb")
    image_loaded(browser, thumb)
    browser.shot("10-my-request-detail")

    # the balance went down by exactly the sum of the charges: on the page and through the API
    spent = sum(story["charges"].values(), Decimal(0))
    go(browser, "account")
    wait_text(browser, "#kh-balance-value", lambda t: t.startswith("$"))
    assert usd(by_id(browser, "kh-balance-value").text) == Decimal(5) - spent
    with console.key_client(story["key"]) as client:
        balance = client.get("/v2/account/balance").json()
        listed = client.get("/v2/account/requests").json()["items"]
    assert Decimal(balance["balance_usd"]) == Decimal(5) - spent
    assert {i["operation"]: Decimal(i["price_usd"]) for i in listed} == story["charges"]
    browser.shot("11-account-after")


def test_customer_runs_an_async_generation(browser: Browser, console: Console, upstream: Any,
                                           story: dict[str, Any]) -> None:
    upstream.configure(latency_s=1.5)  # long enough to see it pending
    try:
        go(browser, "playground")
        pick_operation(browser, "/v1/ideogram-v3/generate")
        fill(browser, "pg-f-prompt", "a paper boat in the rain")
        async_box = visible(browser, "#pg-async")
        if not async_box.is_selected():
            click(browser, "pg-async")
        before = len(browser.driver.find_elements("css selector", "#pg-results .pg-set"))
        click(browser, "pg-submit")
        row = visible(browser, "#pg-generations tr.pg-gen")
        generation_id = row.get_attribute("data-generation-id")
        assert row.get_attribute("data-status") == "pending"
        wait_text(browser, "#pg-status", lambda t: generation_id in t)
        browser.shot("12-playground-async-pending")
        browser.wait().until(lambda d: row.get_attribute("data-status") != "pending", "still pending after 15 s")
        assert row.get_attribute("data-status") == "completed", row.text
        assert row.find_element("css selector", "span.pg-gen-status").text == "completed"
        elapsed = row.find_element("css selector", "span.pg-gen-elapsed").text
        assert elapsed.endswith(" s") and float(elapsed[:-2]) > 0, elapsed
        result = wait_for_new_set(browser, before)
        assert result.get_attribute("data-generation-id") == generation_id
        for img in result.find_elements("css selector", "img.pg-result-img"):
            image_loaded(browser, img)
        charge = usd(result.find_element("css selector", "p.pg-price").text)
        assert charge > 0
        story["async_charge"] = charge
        browser.shot("13-playground-async-completed")
    finally:
        upstream.configure(latency_s=0.0)
    with console.key_client(story["key"]) as client:
        balance = Decimal(client.get("/v2/account/balance").json()["balance_usd"])
    assert balance == Decimal(5) - sum(story["charges"].values(), Decimal(0)) - charge


# ---------------------------------------------------------------- the operator again


def test_operator_finds_the_requests_in_the_log(browser: Browser, console: Console, story: dict[str, Any]) -> None:
    click(browser, "signout")
    visible(browser, "#signin-admin-token")
    operator_sign_in(browser, console.admin_token)
    go(browser, "requests")
    browser.wait().until(lambda d: len(d.find_elements("css selector", "#requests-table tr[data-request-id]")) >= 3,
                         "the three requests never showed in the request log")
    cells = browser.driver.execute_script("""
        const heads = [...document.querySelectorAll('#requests-table thead th')].map((th) => th.textContent.trim());
        return [...document.querySelectorAll('#requests-table tbody tr[data-request-id]')].map((tr) => {
          const out = {id: tr.dataset.requestId};
          [...tr.children].forEach((td, i) => { out[heads[i]] = td.textContent.trim(); });
          return out;
        });""")
    by_op: dict[str, list[Decimal]] = {}
    for c in cells:
        assert c["Account"] == "First Customer" and c["Channel"] == CHANNEL, c
        by_op.setdefault(c["Operation"], []).append(usd(c["Charge"]))
    expected = {op: [v] for op, v in story["charges"].items()}
    expected["v3-generate"] = sorted(expected["v3-generate"] + [story["async_charge"]])
    assert {k: sorted(v) for k, v in by_op.items()} == expected
    browser.shot("14-request-log")
    # the inpainting's detail: the prompt (log_prompts is on), the upstream attempt and the image
    edit = next(c for c in cells if c["Operation"] == "v3-edit")
    click(browser, f"request-open-{''.join(ch if ch.isalnum() or ch in '_-' else '_' for ch in edit['id'])}")
    wait_text(browser, "#request-charge", lambda t: "$" in t)
    assert usd(by_id(browser, "request-charge").text) == story["charges"]["v3-edit"]
    assert "a red sailing boat on the water" in by_id(browser, "request-params").text
    assert CHANNEL in by_id(browser, "request-attempts").text
    image_loaded(browser, visible(browser, "#request-images img"))
    browser.shot("15-request-detail")
    go(browser, "dashboard")
    browser.wait().until(lambda d: by_id(browser, "dashboard-body").get_attribute("aria-busy") == "false")
    browser.shot("16-dashboard-after")
    # one operation's own figures over time: the inpainting alone, charged exactly once
    choose(browser, "dash-operation", "v3-edit")
    wait_text(browser, "#dash-over-time", lambda t: "v3-edit" in t, "the dashboard never scoped to v3-edit")
    browser.wait().until(lambda d: by_id(browser, "dashboard-body").get_attribute("aria-busy") == "false")
    assert by_id(browser, "stat-requests").text.split()[-1] == "1"
    assert usd(by_id(browser, "stat-revenue").text) == story["charges"]["v3-edit"]
    assert [r.text.split()[0] for r in browser.driver.find_elements("css selector", "#dash-operations tbody tr")] == ["v3-edit"]
    browser.shot("17-dashboard-one-operation")
    choose(browser, "dash-operation", "")
    # the whole story ran in one page load: everything it fetched (scripts, styles, the API, the
    # images through their signed URLs) came from the server itself
    loaded = browser.driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert len(loaded) > 10
    assert [u for u in loaded if not u.startswith(console.url + "/") and not u.startswith(("data:", "blob:"))] == []
