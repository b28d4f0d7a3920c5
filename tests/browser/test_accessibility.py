"""Accessibility and self-containment smoke tests, in a real browser: the keyboard reaches the
sign-in fields and buttons in order with a visible focus ring; every form control of every page
has a label; nothing scrolls sideways on a 390 px phone; every request a page makes goes to the
server's own origin (no CDN, no fonts or scripts from elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import png_bytes

from .conftest import DESKTOP, PHONE, Browser, Console
from .pages import by_id, choose, click, go, key_sign_in, open_console, operator_sign_in, visible

pytestmark = pytest.mark.timeout(120)

OPERATOR_ROUTES = ["dashboard", "channels", "accounts", "requests", "prices"]
EDIT_OPTION = "#pg-operation option[value='/v1/ideogram-v3/edit']"
KEYHOLDER_ROUTES = {"account": "#kh-usage-form", "my-requests": "#kh-req-filter", "playground": "#pg-operation option"}


@pytest.fixture(scope="module")
def console(start_console: Any) -> Console:
    return start_console()


@pytest.fixture(scope="module")
def key(console: Console) -> str:
    account = console.admin.post("/admin/accounts", json={"name": "a11y"}).json()
    console.admin.post(f"/admin/accounts/{account['id']}/topup", json={"usd": "1"})
    return console.admin.post("/admin/keys", json={"name": "a11y key", "account_id": account["id"]}).json()["key"]


@pytest.fixture
def desktop(browser: Browser) -> Browser:
    browser.clear_cookies()  # each test starts signed out, whatever the one before left
    browser.resize(DESKTOP)
    return browser


@pytest.fixture
def phone(browser: Browser) -> Any:
    browser.clear_cookies()
    browser.resize(PHONE)
    yield browser
    browser.resize(DESKTOP)


UNLABELLED_JS = """
return [...document.querySelectorAll('input, select, textarea')]
  .filter((e) => e.type !== 'hidden' && !e.closest('[hidden], [aria-hidden="true"]'))  // not exposed to anybody
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !(e.getAttribute('aria-labelledby') || '').split(/\\s+/)
                       .some((id) => id && document.getElementById(id)))
  .map((e) => e.outerHTML.slice(0, 160));
"""

OTHER_ORIGINS_JS = """
const own = location.origin;
return performance.getEntriesByType('resource').map((e) => e.name)
  .filter((u) => !u.startsWith(own + '/') && !u.startsWith('data:') && !u.startsWith('blob:'));
"""

SIDEWAYS_JS = """
const d = document.documentElement;
return {scroll: Math.max(d.scrollWidth, document.body.scrollWidth), width: d.clientWidth};
"""


def expected_refusal(entry: dict[str, Any]) -> bool:
    """Chromium logs every 401 as a failed load: the signed-out session check and wrong sign-ins."""
    return entry.get("source") == "network" and "status of 401" in entry["message"] and (
        "/console/api/session" in entry["message"] or "/v2/account/balance" in entry["message"])


def check_page(browser: Browser, where: str) -> None:
    d = browser.driver
    assert d.execute_script(UNLABELLED_JS) == [], f"{where}: form controls without a label"
    assert d.execute_script(OTHER_ORIGINS_JS) == [], f"{where}: requests to another origin"
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and not expected_refusal(e)]
    assert errors == [], f"{where}: errors in the browser console: {errors}"


def no_sideways_scroll(browser: Browser, where: str) -> None:
    m = browser.driver.execute_script(SIDEWAYS_JS)
    assert m["scroll"] <= m["width"], f"{where}: the page scrolls sideways at {m['width']} px ({m['scroll']} px wide)"


def test_keyboard_reaches_the_sign_in_fields_in_order(desktop: Browser, console: Console) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser = desktop
    d = browser.driver
    open_console(browser, console)
    visible(browser, "#signin-api-key")
    # start where the page itself puts focus after a message: on the heading above both forms
    d.execute_script("document.getElementById('signin-heading').focus(); window.scrollTo(0, 0)")
    order: list[str] = []
    wanted = ["signin-admin-token", "signin-operator-submit", "signin-api-key", "signin-key-submit"]
    for _ in range(12):
        ActionChains(d).send_keys(Keys.TAB).perform()
        focused = d.execute_script("""
            const e = document.activeElement, s = getComputedStyle(e);
            return {id: e.id, tag: e.tagName, visible: e.matches(':focus-visible'), outline: s.outlineStyle,
                    width: parseFloat(s.outlineWidth) || 0, shadow: s.boxShadow};""")
        order.append(focused["id"] or focused["tag"])
        if focused["id"] in wanted or focused["tag"] in ("A", "BUTTON", "INPUT"):
            ring = (focused["outline"] != "none" and focused["width"] > 0) or focused["shadow"] not in ("none", "")
            assert focused["visible"] and ring, f"no visible focus on {focused}"
        if focused["id"] == wanted[-1]:
            break
    assert [i for i in order if i in wanted] == wanted, order
    check_page(browser, "sign-in")
    # Enter in the field submits its form (a real <form>, not a click handler on a div)
    by_id(browser, "signin-admin-token").send_keys("wrong" + Keys.ENTER)
    visible(browser, "#signin-operator-error")


def operator_pages(browser: Browser, console: Console) -> Iterator[str]:
    """Sign in as the operator and open each operator page in turn, once it has loaded."""
    open_console(browser, console)
    operator_sign_in(browser, console.admin_token)
    for route in OPERATOR_ROUTES:
        go(browser, route)  # on a phone, through the folded "Menu" button
        browser.wait().until(lambda d: len(d.find_element("id", "view").find_elements("xpath", "./*")) > 1
                             and not d.find_elements("css selector", "#view [aria-busy='true']"),
                             f"{route} kept loading")
        yield route


def test_operator_pages_are_labelled_and_self_contained(desktop: Browser, console: Console, key: str) -> None:
    browser = desktop
    for route in operator_pages(browser, console):
        if route == "channels":
            click(browser, "channel-add-open")
            visible(browser, "#channel-form")
        if route == "accounts":
            click(browser, visible(browser, "#accounts-table button[id^='account-manage-']").get_attribute("id"))
            visible(browser, "#key-create-form")
        check_page(browser, f"operator {route}")
        browser.shot(f"operator-{route}")
    click(browser, "signout")
    visible(browser, "#signin-admin-token")


def test_an_operator_form_works_from_the_keyboard(desktop: Browser, console: Console, key: str) -> None:
    """Tab reaches the top-up form's controls with a visible focus, Enter submits it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser = desktop
    d = browser.driver
    account = next(a for a in console.admin.get("/admin/accounts").json() if a["name"] == "a11y")
    before = Decimal(account["balance_usd"])
    open_console(browser, console)
    operator_sign_in(browser, console.admin_token)
    go(browser, "accounts")
    click(browser, f"account-manage-{account['id']}")
    visible(browser, "#topup-form")
    d.execute_script("document.getElementById('topup-heading').setAttribute('tabindex', '-1');"
                     "document.getElementById('topup-heading').focus()")
    reached = []
    for _ in range(6):
        ActionChains(d).send_keys(Keys.TAB).perform()
        focused = d.execute_script("const e = document.activeElement; return {id: e.id, visible: e.matches(':focus-visible')}")
        reached.append(focused["id"])
        assert focused["visible"], f"no visible focus on {focused}"
        if focused["id"] == "topup-usd":
            ActionChains(d).send_keys("2.5" + Keys.ENTER).perform()
            break
    assert reached[-1] == "topup-usd", reached
    browser.wait().until(lambda _d: Decimal(console.admin.get(f"/admin/accounts/{account['id']}").json()["balance_usd"])
                         == before + Decimal("2.5"), "Enter in the amount never topped up")
    click(browser, "signout")


def test_phone_width_operator_pages(phone: Browser, console: Console, key: str) -> None:
    browser = phone
    for route in operator_pages(browser, console):
        no_sideways_scroll(browser, f"operator {route}")
        browser.shot(f"phone-operator-{route}")
    click(browser, "signout")


def edit_with_a_picture(browser: Browser, tmp_path: Path, width: int = 200, height: int = 120) -> Any:
    """In the playground: choose 3.0 edit and a picture; the mask painter's canvas, once shown."""
    browser.wait().until(lambda d: d.find_elements("css selector", EDIT_OPTION))
    choose(browser, "pg-operation", "/v1/ideogram-v3/edit")
    picture = tmp_path / f"picture-{width}x{height}.png"
    picture.write_bytes(png_bytes(width, height))
    by_id(browser, "pg-f-image").send_keys(str(picture))
    return visible(browser, "#pg-mask-canvas[data-width]")


def test_key_holder_pages_are_labelled_and_self_contained(desktop: Browser, console: Console, key: str,
                                                          tmp_path: Path) -> None:
    browser = desktop
    open_console(browser, console)
    key_sign_in(browser, key)
    for route, ready in KEYHOLDER_ROUTES.items():
        go(browser, route)
        browser.wait().until(lambda d: d.find_elements("css selector", ready), f"{route}: {ready} never showed")
        check_page(browser, f"key holder {route}")
    edit_with_a_picture(browser, tmp_path)
    browser.driver.execute_script("const m = document.getElementById('pg-more'); if (m) m.open = true;")
    check_page(browser, "playground with a mask")
    click(browser, "signout")


def test_phone_width_sign_in_and_playground(phone: Browser, console: Console, key: str, tmp_path: Path) -> None:
    browser = phone
    open_console(browser, console)
    visible(browser, "#signin-api-key")
    assert browser.driver.execute_script("return window.innerWidth") == PHONE[0]
    no_sideways_scroll(browser, "sign-in")
    browser.shot("phone-sign-in")
    key_sign_in(browser, key)
    go(browser, "playground")  # through the folded "Menu" button on a phone
    edit_with_a_picture(browser, tmp_path, 640, 360)  # wider than the phone: the canvas must scale down
    browser.driver.execute_script("const m = document.getElementById('pg-more'); if (m) m.open = true;")
    no_sideways_scroll(browser, "playground")
    canvas_width = browser.driver.execute_script(
        "return document.getElementById('pg-mask-canvas').getBoundingClientRect().width")
    assert 0 < canvas_width <= PHONE[0]
    browser.shot("phone-playground")
    for route in ("account", "my-requests"):
        go(browser, route)
        no_sideways_scroll(browser, route)
        browser.shot(f"phone-{route}")
    click(browser, "signout")


def test_a_mask_can_be_painted_from_the_keyboard(desktop: Browser, console: Console, key: str, tmp_path: Path) -> None:
    """No mouse: a rectangle given in image pixels is painted with the brush, part of it cleared
    with the eraser, and Enter in a number never submits the playground's form."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser = desktop
    d = browser.driver
    open_console(browser, console)
    key_sign_in(browser, key)
    go(browser, "playground")
    edit_with_a_picture(browser, tmp_path)
    d.execute_script("document.querySelector('#pg-mask-rect summary').focus()")
    ActionChains(d).send_keys(Keys.ENTER).perform()  # opens the <details>
    visible(browser, "#pg-mask-rect-x")

    def rect(x: int, y: int, w: int, h: int) -> str:
        for name, value in zip("xywh", (x, y, w, h)):
            field = by_id(browser, f"pg-mask-rect-{name}")
            field.clear()
            field.send_keys(str(value))
        by_id(browser, "pg-mask-rect-h").send_keys(Keys.ENTER)
        return by_id(browser, "pg-mask-status").text

    requests_before = len(d.execute_script("return performance.getEntriesByType('resource')"))
    assert rect(50, 30, 100, 60).startswith("Painted 25.0% of the image (200x120)")
    by_id(browser, "pg-mask-eraser").send_keys(Keys.SPACE)
    assert by_id(browser, "pg-mask-eraser").get_attribute("aria-pressed") == "true"
    assert rect(50, 30, 50, 60).startswith("Painted 12.5%")
    assert rect(150, 0, 500, 500).startswith("Painted 12.5%")  # clipped to the image; nothing left there
    assert not by_id(browser, "pg-error").is_displayed()
    assert len(d.execute_script("return performance.getEntriesByType('resource')")) == requests_before  # no submit
    check_page(browser, "playground, painting by numbers")
    click(browser, "signout")
