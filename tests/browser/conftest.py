"""Browser tests: a real Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium)
against a real ideohub server on loopback, with the simulated upstream as its channel.

Chromium is shared by the whole session (starting it costs a second or two); each module gets its
own server and data directory. Cookies are per host, not per port, so every server's console
cookie would reach every other loopback server: ``browser`` clears them before each test module.
Screenshots of every page go to ``$IDEOHUB_SCREENSHOTS`` (default ``build/screenshots``)."""

from __future__ import annotations

import base64
import io
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from conftest import ThreadedServer, free_port

from ideohub.api.app import create_app
from ideohub.config import Settings, load_settings
from ideohub.store import db

CHROMIUM = Path(os.environ.get("IDEOHUB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("IDEOHUB_CHROMEDRIVER", "/usr/bin/chromedriver"))
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 15.0  # the longest any single wait may take
DESKTOP = (1280, 900)
PHONE = (390, 844)


def _required() -> bool:
    return os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1"


def screenshot_dir() -> Path:
    path = Path(os.environ.get("IDEOHUB_SCREENSHOTS") or REPO / "build" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def shots_dir() -> Path:
    """Emptied once per session so a stale screenshot never passes for a fresh one."""
    path = screenshot_dir()
    for old in path.glob("*.png"):
        old.unlink()
    return path


def check_png(path: Path) -> Image.Image:
    """A decodable PNG of the window's size with something drawn on it (not one flat colour)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.width >= 300 and img.height >= 300, f"{path.name} is {img.size}"
    colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 8, f"{path.name} is (almost) blank: {len(colours or [])} colours"
    return img


@dataclass
class Browser:
    """The Selenium driver plus the helpers every browser test uses."""

    driver: Any
    shots: Path
    taken: list[str] = field(default_factory=list)

    def shot(self, name: str, full_page: bool = True) -> Path:
        """Save the current page as ``<name>.png`` (the whole page, up to 6000 CSS pixels tall,
        not just the window) and check it is a real picture."""
        path = self.shots / f"{name}.png"
        if full_page:
            m = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = m.get("cssContentSize") or m["contentSize"]
            width = max(int(size["width"]), self.driver.execute_script("return window.innerWidth"))
            height = min(max(int(size["height"]), 300), 6000)
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
            path.write_bytes(base64.b64decode(shot["data"]))
        else:
            assert self.driver.save_screenshot(str(path)), f"screenshot {name} failed"
        check_png(path)
        self.taken.append(name)
        return path

    def wait(self, timeout: float = WAIT_S):  # type: ignore[no-untyped-def]
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05)

    def clear_cookies(self) -> None:
        """Every cookie of every host (WebDriver's delete_all_cookies only reaches the current one)."""
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})

    def resize(self, size: tuple[int, int]) -> None:
        self.driver.set_window_size(*size)


def _start_chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-default-apps", "--disable-component-update", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    return driver


@pytest.fixture(scope="session")
def chromium_driver(shots_dir: Path) -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        msg = f"browser tests need {', '.join(missing)}; .ci/run installs Debian's chromium and chromium-driver"
        if _required():
            pytest.fail(msg)
        pytest.skip(msg)
    driver = _start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser(chromium_driver: Any, shots_dir: Path) -> Iterator[Browser]:
    """The session's Chromium with no cookies from another module's server, at desktop size."""
    b = Browser(chromium_driver, shots_dir)
    b.clear_cookies()
    b.resize(DESKTOP)
    yield b
    b.clear_cookies()
    b.resize(DESKTOP)


# ---------------------------------------------------------------- the server


@dataclass
class Console:
    """A running ideohub with the operator console enabled."""

    url: str  # server root, no trailing slash
    settings: Settings
    admin_token: str
    admin: httpx.Client  # Authorization: Bearer <admin_token>
    http: httpx.Client  # no credentials

    @property
    def console_url(self) -> str:
        return self.url + "/console/"

    def key_client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Api-Key": key}, timeout=30)


class WallClock:
    """Real time plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(scope="module")
def start_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Console]]:
    """``start_console(**settings)``: a real server (the one ``ideohub serve`` runs) on a free
    loopback port, its own data directory, the relay engine for every operation, no channels."""
    servers: list[ThreadedServer] = []
    clients: list[httpx.Client] = []

    def start(wall_clock: Callable[[], float] | None = None, **overrides: Any) -> Console:
        """``wall_clock``: the server's "now" in unix seconds (console session expiry), for tests
        that move time instead of waiting."""
        port = free_port()
        token = secrets.token_urlsafe(24)
        values: dict[str, Any] = dict(data_dir=tmp_path_factory.mktemp("console"), port=port, admin_token=token,
                                      engines={"*": "relay"}, channel_reload_s=0.2, safety_check=False,
                                      relay_cooldown_s=0.5)
        values.update(overrides)
        settings = load_settings(**values)
        db.upgrade(settings.db_url)
        app = create_app(settings, engines=None)
        if wall_clock is not None:
            app.state.wall_clock = wall_clock
        server = ThreadedServer(app, settings.port).__enter__()  # a test may name the port (a proxy in front)
        servers.append(server)
        admin = httpx.Client(base_url=settings.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        http = httpx.Client(base_url=settings.base_url, timeout=30)
        clients.extend((admin, http))
        return Console(settings.base_url, settings, token, admin, http)

    yield start
    for c in clients:
        c.close()
    for s in reversed(servers):
        s.__exit__(None, None, None)



# ---------------------------------------------------------------- another origin


class Attacker:
    """Plain HTTP servers on other loopback origins serving pages a test writes: 127.0.0.2 is
    another *site* (SameSite=Strict keeps the console cookie home), 127.0.0.1 on another port is
    the same site but another *origin* (the cookie goes along; the server must refuse by Origin)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.servers = [http.server.ThreadingHTTPServer((host, 0), Handler) for host in ("127.0.0.2", "127.0.0.1")]
        for s in self.servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()

    @property
    def cross_site(self) -> str:
        return "http://127.0.0.2:%d" % self.servers[0].server_address[1]

    @property
    def same_site(self) -> str:
        return "http://127.0.0.1:%d" % self.servers[1].server_address[1]

    def close(self) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    a = Attacker()
    yield a
    a.close()


# ---------------------------------------------------------------- ordered steps


_FAILED_STEP: dict[str, str] = {}  # module -> the first step that failed


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:  # type: ignore[type-arg]
    """In a module marked ``steps`` the tests are one story told in order: once a step fails, the
    later ones are skipped as blocked instead of failing with confusing secondary errors."""
    if (call.excinfo is not None and call.when in ("setup", "call") and item.get_closest_marker("steps")
            and not call.excinfo.errisinstance(pytest.skip.Exception)):
        _FAILED_STEP.setdefault(item.module.__name__, item.name)  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("steps"):
        failed = _FAILED_STEP.get(item.module.__name__)  # type: ignore[attr-defined]
        if failed:
            pytest.skip(f"blocked: the earlier step {failed} failed")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "steps: the module's tests are ordered steps of one story")
