"""The console behind a reverse proxy under a path prefix (``/hub``), in Chromium, as an operator
who publishes ideohub at ``https://example.com/hub/`` runs it: the operator signs in and sees the
channels, a customer generates in the playground and the image loads through the proxy, and
``/docs`` renders. Every request the pages make stays under the prefix on the proxy's origin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import SIM_KEY, free_port
from prefix_proxy import PrefixProxy

from .conftest import Browser, Console
from .pages import (click, fill, go, image_loaded, key_sign_in, open_console, operator_sign_in, pick_operation,
                    visible, wait_for_new_set, wait_text)

pytestmark = [pytest.mark.steps, pytest.mark.timeout(120)]

LOADED_JS = "return performance.getEntriesByType('resource').map((e) => e.name)"


@pytest.fixture(scope="module")
def proxied(start_console: Any, sims: list) -> Iterator[tuple[Console, PrefixProxy]]:
    port = free_port()  # the proxy starts first: public_base_url names it
    proxy = PrefixProxy(f"http://127.0.0.1:{port}")
    try:
        console = start_console(port=port, public_base_url=proxy.url + "/hub", trusted_proxies=["127.0.0.1"])
        assert console.url == proxy.url + "/hub"  # the admin client and every link go through the proxy
        r = console.admin.post("/admin/channels", json={"name": "sim", "base_url": sims[0].base_url, "key": SIM_KEY,
                                                        "auth": "api-key", "path_style": "official"})
        assert r.status_code == 201, r.text
        yield console, proxy
    finally:
        proxy.close()


def only_under_the_prefix(browser: Browser, proxy: PrefixProxy, at_least: int = 6) -> None:
    loaded = browser.driver.execute_script(LOADED_JS)
    assert len(loaded) >= at_least, loaded
    assert [u for u in loaded if not u.startswith(proxy.url + "/hub/") and not u.startswith(("data:", "blob:"))] == []


def test_the_operator_signs_in_under_the_prefix(browser: Browser, proxied: tuple[Console, PrefixProxy]) -> None:
    console, proxy = proxied
    open_console(browser, console)
    assert browser.driver.current_url == proxy.url + "/hub/console/"
    operator_sign_in(browser, console.admin_token)
    go(browser, "channels")
    visible(browser, "#channels-table tr[data-channel='sim']")
    browser.shot("proxy-channels")
    only_under_the_prefix(browser, proxy)
    click(browser, "signout")
    wait_text(browser, "#signin-message", lambda t: "signed out" in t)


def test_a_customer_generates_through_the_proxy(browser: Browser, proxied: tuple[Console, PrefixProxy]) -> None:
    console, proxy = proxied
    account = console.admin.post("/admin/accounts", json={"name": "Proxied Customer"}).json()
    console.admin.post(f"/admin/accounts/{account['id']}/topup", json={"usd": "1"})
    key = console.admin.post("/admin/keys", json={"account_id": account["id"], "name": "proxied"}).json()["key"]
    key_sign_in(browser, key)
    go(browser, "playground")
    pick_operation(browser, "/v1/ideogram-v3/generate")
    fill(browser, "pg-f-prompt", "a harbour at night")
    click(browser, "pg-submit")
    result = wait_for_new_set(browser, 0)
    img = result.find_element("css selector", "img.pg-result-img")
    image_loaded(browser, img)
    assert img.get_attribute("src").startswith(proxy.url + "/hub/images/")  # signed for the public address
    browser.shot("proxy-playground")
    only_under_the_prefix(browser, proxy)
    click(browser, "signout")


def test_the_api_docs_render_under_the_prefix(browser: Browser, proxied: tuple[Console, PrefixProxy]) -> None:
    _console, proxy = proxied
    browser.driver.get(proxy.url + "/hub/docs")
    title = visible(browser, ".swagger-ui .info .title")
    assert "ideohub" in title.text.lower()
    visible(browser, ".swagger-ui .opblock")  # the operations, read from /hub/openapi.json
    only_under_the_prefix(browser, proxy, at_least=4)  # its script, style, icon and openapi.json
    browser.shot("proxy-docs", full_page=False)
