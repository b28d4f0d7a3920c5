"""What the tests know about the console's pages: every DOM hook (ids, labels, messages) lives here,
so a change in the frontend is a change in one file. The hooks are the ones the frontend documents
(/tmp/h/console-dom.md during development; the README's console section)."""

from __future__ import annotations

from typing import Any

from .conftest import Browser, Console


def fetch_json(browser: Browser, path: str, method: str = "GET", body: Any = None,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``fetch`` from the page currently shown (its origin, its cookies): {status, body}."""
    return browser.driver.execute_async_script(
        """
        const [path, method, body, headers, done] = arguments;
        const init = {method, headers: headers || {}, credentials: 'same-origin'};
        if (body !== null) { init.body = JSON.stringify(body); init.headers['Content-Type'] = 'application/json'; }
        fetch(path, init).then(async r => {
          const text = await r.text();
          let parsed = null; try { parsed = JSON.parse(text); } catch (e) { parsed = text; }
          done({status: r.status, body: parsed});
        }, e => done({status: 0, body: String(e)}));
        """, path, method, body, headers)


def api_sign_in(browser: Browser, console: Console) -> dict[str, Any]:
    """Sign the browser in as the operator through the session API (for tests about other things)."""
    browser.driver.get(console.url + "/console/api/config")
    r = fetch_json(browser, "/console/api/session", "POST", {"admin_token": console.admin_token})
    assert r["status"] == 200, r
    return r["body"]


# ---------------------------------------------------------------- driving the console

def by_id(browser: Browser, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.driver.find_element(By.ID, element_id)


def visible(browser: Browser, css: str, timeout: float | None = None) -> Any:
    """Wait until an element matching ``css`` is displayed; return it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = browser.wait() if timeout is None else browser.wait(timeout)
    return wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)), f"{css} never became visible")


def wait_text(browser: Browser, css: str, predicate: Any, what: str = "") -> str:
    """Wait until the text of ``css`` satisfies ``predicate``; return it."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def check(driver: Any) -> str | bool:
        try:
            text = driver.find_element(By.CSS_SELECTOR, css).text
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return text if predicate(text) else False

    return browser.wait().until(check, what or f"the text of {css}")


def fill(browser: Browser, element_id: str, text: str) -> None:
    el = visible(browser, f"#{element_id}")
    el.clear()
    el.send_keys(text)


def choose(browser: Browser, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(visible(browser, f"#{element_id}")).select_by_value(value)


def click(browser: Browser, element_id: str) -> None:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.common.by import By

    el = browser.wait().until(ec.element_to_be_clickable((By.ID, element_id)), f"#{element_id} is not clickable")
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    el.click()


def open_console(browser: Browser, console: Console) -> None:
    """``/console`` (redirected to ``/console/``) until the sign-in page or a signed-in shell shows."""
    browser.driver.get(console.url + "/console")
    browser.wait().until(lambda d: d.execute_script(
        "return !!document.getElementById('signin-heading') || !document.getElementById('app-header').hidden"),
        "the console never finished loading")


def operator_sign_in(browser: Browser, token: str) -> None:
    fill(browser, "signin-admin-token", token)
    click(browser, "signin-operator-submit")
    visible(browser, "#signout")
    browser.wait().until(lambda d: d.find_elements("id", "nav-dashboard"), "no operator nav")


def key_sign_in(browser: Browser, key: str) -> None:
    fill(browser, "signin-api-key", key)
    click(browser, "signin-key-submit")
    visible(browser, "#signout")
    browser.wait().until(lambda d: d.find_elements("id", "nav-playground"), "no key-holder nav")


def go(browser: Browser, route: str) -> Any:
    """Follow the nav link to ``#/<route>`` and wait until its view is mounted."""
    if not browser.driver.find_element("id", f"nav-{route}").is_displayed():
        click(browser, "nav-toggle")  # the phone layout folds the nav behind "Menu"
    click(browser, f"nav-{route}")
    return visible(browser, f"#view[data-route='{route}'] h1")


def console_cookie(browser: Browser) -> dict[str, Any] | None:
    """The console session cookie as the browser holds it (HttpOnly: only WebDriver sees it)."""
    cookies = browser.driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    return next((c for c in cookies if c["name"] == "ideohub_console"), None)


def image_loaded(browser: Browser, img: Any) -> None:
    """The <img> finished loading real pixels (its signed URL answered with a decodable image).
    Scrolled into view first: result images are ``loading="lazy"``."""
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    browser.wait().until(lambda d: d.execute_script(
        "const i = arguments[0]; return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0", img),
        f"image {img.get_attribute('src')} never loaded")


def pick_operation(browser: Browser, path: str) -> None:
    browser.wait().until(lambda d: d.find_elements("css selector", f"#pg-operation option[value='{path}']"),
                         f"the playground never offered {path}")
    choose(browser, "pg-operation", path)


def wait_for_new_set(browser: Browser, count_before: int) -> Any:
    """The newest result set once it holds its images and its charge."""
    browser.wait().until(lambda d: len(d.find_elements("css selector", "#pg-results .pg-set")) > count_before
                         or (by_id(browser, "pg-error").is_displayed() and by_id(browser, "pg-error").text),
                         "no result and no error")
    assert not by_id(browser, "pg-error").is_displayed(), by_id(browser, "pg-error").text
    first = "#pg-results .pg-set:first-child"
    visible(browser, f"{first} img.pg-result-img")
    visible(browser, f"{first} p.pg-price")
    return browser.driver.find_element("css selector", first)


def capture_uploads(browser: Browser) -> None:
    """Record every multipart body the page sends (files as data: URLs) in window.__sent, to check
    the mask the browser actually sent (the simulated upstream records sizes, not pixels)."""
    browser.driver.execute_script("""
        if (window.__sent) return;
        window.__sent = [];
        const original = window.fetch;
        const asUrl = (blob) => new Promise((resolve) => {
          const r = new FileReader(); r.onload = () => resolve(r.result); r.readAsDataURL(blob); });
        window.fetch = async function (input, init) {
          if (init && init.body instanceof FormData) {
            const parts = {};
            for (const [name, value] of init.body.entries()) {
              parts[name] = value instanceof Blob ? await asUrl(value) : value;
            }
            window.__sent.push({url: String(input), parts});
          }
          return original.apply(this, arguments);
        };
    """)
