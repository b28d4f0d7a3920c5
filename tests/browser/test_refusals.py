"""What the sign-in page refuses, in a real browser: a wrong admin token (an error, no cookie), a
wrong or revoked API key, an operator session that expired while the page was open (back to the
sign-in page, saying so), and too many sign-in attempts (429, with the wait shown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import png_bytes

from .conftest import Browser, Console, WallClock
from .pages import (by_id, choose, click, console_cookie, fill, go, key_sign_in, open_console, operator_sign_in,
                    visible, wait_text)

pytestmark = pytest.mark.timeout(120)

SIGNIN_PER_MINUTE = 5


@pytest.fixture(scope="module")
def clock() -> WallClock:
    return WallClock()


@pytest.fixture(scope="module")
def console(start_console: Any, clock: WallClock) -> Console:
    return start_console(wall_clock=clock, console_session_hours=1.0, console_signin_per_minute=SIGNIN_PER_MINUTE)


def test_wrong_admin_token_is_refused_without_a_cookie(browser: Browser, console: Console) -> None:
    open_console(browser, console)
    fill(browser, "signin-admin-token", console.admin_token[:-4] + "xxxx")
    click(browser, "signin-operator-submit")
    text = wait_text(browser, "#signin-operator-error", bool, "the wrong-token error")
    assert "not correct" in text
    assert console_cookie(browser) is None
    assert browser.driver.find_element("id", "app-header").get_attribute("hidden") is not None
    # the field is ready for another try, and the wrong token is not echoed anywhere on the page
    assert browser.driver.switch_to.active_element.get_attribute("id") == "signin-admin-token"
    assert console.admin_token[:-4] not in browser.driver.find_element("tag name", "main").text
    browser.shot("refused-admin-token")


def test_wrong_and_revoked_api_keys_are_refused(browser: Browser, console: Console, tmp_path: Path) -> None:
    open_console(browser, console)
    fill(browser, "signin-api-key", "ideo_not-a-real-key-0123456789")
    click(browser, "signin-key-submit")
    text = wait_text(browser, "#signin-key-error", bool, "the wrong-key error")
    assert "not valid" in text
    assert console_cookie(browser) is None
    browser.shot("refused-api-key")

    account = console.admin.post("/admin/accounts", json={"name": "revoked-one"}).json()
    created = console.admin.post("/admin/keys", json={"name": "soon revoked", "account_id": account["id"]}).json()
    key_sign_in(browser, created["key"])  # works while the key is live ...
    assert console.admin.delete(f"/admin/keys/{created['id']}").status_code in (200, 204)
    click(browser, "nav-my-requests")  # ... and the next call after revoking it returns to the sign-in page
    text = wait_text(browser, "#signin-message", bool, "the revoked-key message")
    assert "revoked" in text
    visible(browser, "#signin-api-key")
    browser.shot("refused-revoked-key")
    # revoked while the playground is open: Ideogram's legacy remix answers a bad key with 403, not
    # 401, and that too ends the key holder's session
    other = console.admin.post("/admin/keys", json={"name": "revoked mid-remix", "account_id": account["id"]}).json()
    key_sign_in(browser, other["key"])
    go(browser, "playground")
    browser.wait().until(lambda d: d.find_elements("css selector", "#pg-operation option[value='/remix']"))
    choose(browser, "pg-operation", "/remix")
    picture = tmp_path / "p.png"
    picture.write_bytes(png_bytes(64, 64))
    by_id(browser, "pg-f-image_file").send_keys(str(picture))
    fill(browser, "pg-f-image_request-prompt", "the same, in winter")
    assert console.admin.delete(f"/admin/keys/{other['id']}").status_code in (200, 204)
    click(browser, "pg-submit")
    text = wait_text(browser, "#signin-message", bool, "the revoked-key message after a 403")
    assert "revoked" in text
    visible(browser, "#signin-api-key")
    fill(browser, "signin-api-key", created["key"])
    click(browser, "signin-key-submit")
    assert "not valid" in wait_text(browser, "#signin-key-error", bool)


def test_expired_session_returns_to_sign_in(browser: Browser, console: Console, clock: WallClock) -> None:
    open_console(browser, console)
    operator_sign_in(browser, console.admin_token)
    go(browser, "channels")
    cookie = console_cookie(browser)
    assert cookie is not None
    clock.advance(3600 + 60)  # console_session_hours = 1: the session is over, the page still open
    click(browser, "nav-accounts")
    text = wait_text(browser, "#signin-message", bool, "the expired-session message")
    assert "expired" in text
    visible(browser, "#signin-admin-token")
    assert browser.driver.find_element("id", "app-header").get_attribute("hidden") is not None
    browser.shot("session-expired")
    # the server agrees: that cookie signs nobody in any more, and the admin API refuses it
    r = console.http.get("/console/api/session", headers={"Cookie": f"ideohub_console={cookie['value']}"})
    assert r.status_code == 401
    r = console.http.get("/admin/accounts", headers={"Cookie": f"ideohub_console={cookie['value']}"})
    assert r.status_code == 401
    # reloading does not bring it back either
    open_console(browser, console)
    visible(browser, "#signin-admin-token")
    # signing in again works (a new session, from the moved clock's now)
    operator_sign_in(browser, console.admin_token)
    assert console_cookie(browser)["value"] != cookie["value"]
    click(browser, "signout")
    visible(browser, "#signin-admin-token")


def test_too_many_sign_in_attempts_are_slowed_down(browser: Browser, console: Console) -> None:
    open_console(browser, console)
    for _ in range(SIGNIN_PER_MINUTE + 2):
        fill(browser, "signin-admin-token", "wrong-token-wrong-token")
        click(browser, "signin-operator-submit")
        text = wait_text(browser, "#signin-operator-error", bool)
        browser.wait().until(lambda d: not d.find_element("id", "signin-operator-submit").get_attribute("disabled"))
        if "Too many" in text:
            break
    assert "Too many sign-in attempts" in text and "seconds" in text, text
    # even the right token is refused until the minute is over
    fill(browser, "signin-admin-token", console.admin_token)
    click(browser, "signin-operator-submit")
    browser.wait().until(lambda d: not d.find_element("id", "signin-operator-submit").get_attribute("disabled"))
    assert "Too many" in wait_text(browser, "#signin-operator-error", bool)
    assert console_cookie(browser) is None
    browser.shot("refused-rate-limited")


def test_no_admin_token_means_no_operator_sign_in(browser: Browser, start_console: Any) -> None:
    """A server without admin_token offers key holders only; the session API refuses outright."""
    closed = start_console(admin_token=None)
    browser.clear_cookies()
    open_console(browser, closed)
    assert "no admin_token" in visible(browser, "#operator-disabled").text
    assert not browser.driver.find_elements("id", "signin-admin-token")
    visible(browser, "#signin-api-key")
    r = closed.http.post("/console/api/session", json={"admin_token": "anything"},
                         headers={"Origin": closed.url})
    assert r.status_code == 404 and "disabled" in r.json()["detail"]
    browser.shot("operator-disabled")
