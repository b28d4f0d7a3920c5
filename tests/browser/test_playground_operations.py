"""Every operation the playground offers, tried from the browser against the simulated upstream
(which checks each request against Ideogram's official schema): the form the playground builds
from /openapi.json is filled in the way a person would (the required fields, an image where one is
needed, a mask painted on the canvas), sent with the key, and answered with images or text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import png_bytes, sim_channel

from ideohub.domain.operations import Operation

from .conftest import Browser, Console
from .pages import by_id, capture_uploads, choose, click, go, image_loaded, key_sign_in, open_console, visible

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def upstream(sims: list) -> Any:
    sim = sims[1]
    sim.reset()
    sim.configure(latency_s=0.0)
    return sim


@pytest.fixture(scope="module")
def console(start_console: Any, upstream: Any) -> Console:
    channel = sim_channel("sim-all", upstream, operations=["legacy", "3.0", "4.0", "v2"],
                          account_fields=True)  # custom models act on the upstream account: allowed here
    return start_console(channels=[channel])


@pytest.fixture(scope="module")
def key(console: Console) -> str:
    account = console.admin.post("/admin/accounts", json={"name": "tries everything", "unlimited": True}).json()
    return console.admin.post("/admin/keys", json={"name": "all ops", "account_id": account["id"]}).json()["key"]


FILL_REQUIRED_JS = """
const [picture] = arguments;
const out = [];
// the schema cannot mark every field a person must give: 4.0 takes one of text_prompt or json_prompt,
// /v2 an image file or an image_asset_identifier
const usual = ['#pg-f-prompt', '#pg-f-text_prompt', '#pg-f-image_request-prompt', '#pg-f-image', '#pg-f-image_file'];
const wanted = [...document.querySelectorAll('#pg-fields [required]'),
                ...usual.map((s) => document.querySelector(s)).filter(Boolean)];
for (const c of wanted) {
  if (c.closest('[hidden]')) continue;
  if (c.type === 'file') { out.push({id: c.id, kind: 'file'}); continue; }
  if (c.tagName === 'SELECT') {
    const o = [...c.options].find((o) => o.value);
    if (o && !c.value) { c.value = o.value; c.dispatchEvent(new Event('change', {bubbles: true})); }
    continue;
  }
  if (c.value) continue;
  if (c.type === 'number') c.value = c.min || '1';
  else if (c.classList.contains('pg-json')) c.value = '{}';
  else if (c.name.endsWith('custom_model_uri')) c.value = 'model/house-style/version/1';
  else c.value = 'a small red house by a lake';
  c.dispatchEvent(new Event('input', {bubbles: true}));
}
return out;
"""


def try_operation(browser: Browser, path: str, picture: Path) -> str:
    """Fill and run one operation; "" when it answered with a result, else what went wrong."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains

    d = browser.driver
    choose(browser, "pg-operation", path)
    if d.find_elements("id", "pg-async") and by_id(browser, "pg-async").is_selected() \
            and by_id(browser, "pg-async").is_enabled():
        click(browser, "pg-async")
    seen = set()
    for f in d.execute_script(FILL_REQUIRED_JS, str(picture)):
        if f["id"] not in seen:
            seen.add(f["id"])
            by_id(browser, f["id"]).send_keys(str(picture))
    if d.find_elements("css selector", "#pg-fields #pg-mask"):  # the painter sits under the image it paints on
        try:
            canvas = visible(browser, "#pg-mask-canvas[data-width]")
        except TimeoutException:
            fields = d.execute_script("return [...document.querySelectorAll('#pg-fields [name]')].map((e) => e.name)")
            return f"a mask field but no painter after choosing the image; fields {fields}"
        ActionChains(d).move_to_element(canvas).click_and_hold().move_by_offset(25, 5).release().perform()
        browser.wait().until(lambda drv: canvas.get_attribute("data-painted") == "true")
    click(browser, "pg-clear-results")  # the page keeps at most 20 result sets: start each run from none
    before = 0
    click(browser, "pg-submit")

    def finished(drv: Any) -> bool:
        if by_id(browser, "pg-error").is_displayed() and by_id(browser, "pg-error").text:
            return True
        rows = drv.find_elements("css selector", "#pg-generations tr.pg-gen[data-status='failed']")
        return len(drv.find_elements("css selector", "#pg-results .pg-set")) > before or bool(rows)

    try:
        browser.wait().until(finished, f"{path}: no answer")
    except TimeoutException:
        return f"no answer in 15 s; status line: {by_id(browser, 'pg-status').text!r}"
    if by_id(browser, "pg-error").is_displayed():
        return by_id(browser, "pg-error").text
    newest = d.find_element("css selector", "#pg-results .pg-set:first-child")
    try:
        browser.wait().until(lambda drv: newest.find_elements(
            "css selector", "img.pg-result-img, .pg-text-result, figure.pg-withheld"))
    except TimeoutException:
        return "answered without an image or a text result: " + newest.get_attribute("innerHTML")[:600]
    if newest.find_elements("css selector", "figure.pg-withheld"):
        return "an image was shown as withheld (safety_check is off): " + newest.text[:300]
    for img in newest.find_elements("css selector", "img.pg-result-img"):
        image_loaded(browser, img)
    return ""


ASYNC_4 = ["/v1/ideogram-v4/async/generate", "/v1/ideogram-v4/async/remix",
           "/v1/ideogram-v4/async/generate-transparent", "/v1/ideogram-v45/async/generate"]
OFFERED = [op.official_path for op in Operation] + ASYNC_4
RESOLD = {op.official_path for op in Operation if op.resold}  # other vendors' models: need a price and a channel
KNOWN_BROKEN: dict[str, str] = {}  # path → why it cannot work yet (an xfail, strict)


@pytest.fixture(scope="module")
def playground(browser: Browser, console: Console, key: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Signed in with the key, on the playground; the picture to upload."""
    picture = tmp_path_factory.mktemp("pg") / "picture.png"
    picture.write_bytes(png_bytes(320, 240, seed=3))
    browser.clear_cookies()
    open_console(browser, console)
    key_sign_in(browser, key)
    go(browser, "playground")
    browser.wait().until(lambda d: len(d.find_elements("css selector", "#pg-operation option")) > 10)
    return picture


def test_the_playground_offers_every_operation(browser: Browser, playground: Path) -> None:
    offered = browser.driver.execute_script(
        "return [...document.querySelectorAll('#pg-operation option')].map((o) => o.value)")
    assert sorted(offered) == sorted(OFFERED)


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_BROKEN[p], strict=True))
                                  if p in KNOWN_BROKEN else p for p in OFFERED])
def test_operation_runs_from_the_playground(browser: Browser, playground: Path, upstream: Any, path: str) -> None:
    upstream.clear_requests()
    problem = try_operation(browser, path, playground)
    if path in RESOLD:
        assert "another vendor's model that this server does not offer" in problem, problem
        return
    assert problem == ""
    assert [(r.path, r.error) for r in upstream.refused_requests()] == []
    if path == "/v1/ideogram-v3/generate":
        browser.shot("playground-every-operation")


def test_a_phone_photo_with_an_exif_rotation_gets_a_mask_of_its_stored_size(
        browser: Browser, playground: Path, upstream: Any, tmp_path: Path) -> None:
    """A photo stored 200x120 with EXIF orientation 6 (how phones save portraits) is shown upright,
    120x200, by browsers, and painted on that way; the picture is then sent upright too, so image
    and mask share one pixel grid and the edit is accepted."""
    import base64
    import io

    import numpy as np
    from PIL import Image, ImageOps

    stored = np.zeros((120, 200, 3), dtype=np.uint8)  # four flat quadrants: where each lands shows the rotation
    stored[:60, :100], stored[:60, 100:], stored[60:, :100], stored[60:, 100:] = (220, 30, 30), (30, 200, 40), \
        (40, 60, 210), (230, 210, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    photo = tmp_path / "portrait.jpg"
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", quality=95, exif=exif)
    photo.write_bytes(buffer.getvalue())
    shown = np.asarray(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"), dtype=np.int16)
    upstream.clear_requests()
    capture_uploads(browser)
    browser.driver.execute_script("window.__sent.length = 0")
    assert try_operation(browser, "/v1/ideogram-v3/edit", photo) == ""
    (sent,) = browser.driver.execute_script("return window.__sent")
    upright = Image.open(io.BytesIO(base64.b64decode(sent["parts"]["image"].split(",", 1)[1])))
    assert upright.getexif().get(0x0112, 1) == 1  # no rotation left to apply
    pixels = np.asarray(upright.convert("RGB"), dtype=np.int16)
    assert pixels.shape == shown.shape == (200, 120, 3)
    assert np.abs(pixels - shown).mean() < 6  # the picture as shown, not the stored grid squeezed
    canvas = browser.driver.find_element("id", "pg-mask-canvas")
    assert (canvas.get_attribute("data-width"), canvas.get_attribute("data-height")) == ("120", "200")
    assert "stored rotated" in by_id(browser, "pg-mask-status").text
    (edit,) = [r for r in upstream.requests if r.operation == "v3-edit" and r.fields]
    assert edit.fields["mask"]["size"] == edit.fields["image"]["size"] == "120x200"


def test_an_image_too_large_to_paint_on_is_refused_with_its_size(browser: Browser, playground: Path,
                                                                 tmp_path: Path) -> None:
    from PIL import Image

    huge = tmp_path / "huge.png"
    Image.new("RGB", (4200, 4100), (40, 90, 160)).save(huge)  # flat: a small file, 17 megapixels
    choose(browser, "pg-operation", "/v1/ideogram-v3/edit")
    by_id(browser, "pg-f-image").send_keys(str(huge))
    browser.wait().until(lambda d: "too large to paint" in by_id(browser, "pg-error").text, "no size refusal")
    assert "4200x4100" in by_id(browser, "pg-error").text
    assert not by_id(browser, "pg-mask").is_displayed()
