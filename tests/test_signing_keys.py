"""The URL-signing key ring: the newest key by creation order (``k10`` after ``k9``), old
secrets.json files imported in that order, concurrent rotations all kept, and a running server that
signs with a key added by `ideohub rotate-signing-key` within seconds, without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ideohub.config import Secrets, load_settings
from ideohub.media.signing import LinkForbidden, UrlSigner
from ideohub.sim.runner import SimulatedUpstream
from ideohub.sim.upstream import SimConfig
from ideohub.store import db
from ideohub.store.secrets import SecretsError, open_secrets

SIM_KEY = "sim-signing-key-0123456789"


def kid_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["kid"][0]


def query(url: str) -> tuple[str, str, str, str]:
    q = parse_qs(urlsplit(url).query)
    return urlsplit(url).path.rsplit("/", 1)[1], q["exp"][0], q["kid"][0], q["sig"][0]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_eleven_rotations_make_k12_the_newest_and_new_links_use_it(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    first = Secrets.load(settings)
    assert first.active_kid == "k1"
    kids = [Secrets.rotate(settings) for _ in range(11)]
    assert kids == [f"k{n}" for n in range(2, 13)]
    loaded = Secrets.load(settings)
    assert loaded.active_kid == "k12"  # a string sort picked k9
    signer = UrlSigner(loaded.signing_key_source, None, "http://x", 60)
    url, _exp = signer.sign("img_a.png")
    assert kid_of(url) == "k12"
    # every older key still verifies its links
    for kid in ("k1", "k9", "k10", "k11"):
        old = UrlSigner(loaded.signing_keys, kid, "http://x", 60)
        assert signer.verify(*query(old.sign("img_a.png")[0])) > time.time()
    assert list(loaded.signing_ring.order) == [f"k{n}" for n in range(1, 13)]


def test_an_old_secrets_file_is_imported_in_key_number_order(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    data = {"key_pepper": os.urandom(32).hex(),  # no order recorded, as the oldest versions wrote it
            "signing_keys": {kid: os.urandom(32).hex() for kid in ("k10", "k2", "k9", "k1")}}
    settings.secrets_file.write_text(json.dumps(data))
    assert Secrets.load(settings).active_kid == "k10"
    assert list(Secrets.load(settings).signing_ring.order) == ["k1", "k2", "k9", "k10"]
    assert Secrets.rotate(settings) == "k11"
    assert Secrets.load(settings).active_kid == "k11"


def test_signing_key_id_still_pins_a_key(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    Secrets.load(settings)
    for _ in range(3):
        Secrets.rotate(settings)
    pinned = load_settings(data_dir=tmp_path, signing_key_id="k2")
    assert Secrets.load(pinned).active_kid == "k2"
    signer = UrlSigner(Secrets.load(pinned).signing_key_source, None, "http://x", 60)
    Secrets.rotate(settings)
    assert kid_of(signer.sign("img_a.png")[0]) == "k2"
    with pytest.raises(SecretsError, match="k99"):
        Secrets.load(load_settings(data_dir=tmp_path, signing_key_id="k99"))


def test_the_ring_follows_the_database_at_most_once_per_recheck_interval(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    Secrets.load(settings)

    async def go() -> None:
        clock = Clock()
        engine = db.create_engine_async(settings.db_url)
        try:
            secrets = await open_secrets(settings, engine, recheck_s=1.0, clock=clock)
            signer = UrlSigner(secrets.signing_key_source, None, "http://x", 60)
            assert kid_of(signer.sign("img_a.png")[0]) == "k1"
            assert Secrets.rotate(settings) == "k2"
            clock.t += 0.5
            await secrets.check()
            assert kid_of(signer.sign("img_a.png")[0]) == "k1"  # not looked at yet
            clock.t += 0.6
            await secrets.check()
            assert kid_of(signer.sign("img_a.png")[0]) == "k2"

            # a link signed by another process with a key this one has not seen yet verifies at once
            assert Secrets.rotate(settings) == "k3"
            other = UrlSigner(Secrets.load(settings).signing_key_source, None, "http://x", 60)
            other_url = other.sign("img_b.png")[0]
            assert kid_of(other_url) == "k3"
            assert signer.verify(*query(other_url)) > time.time()  # clock not advanced: verify looked again
            assert other.verify(*query(other_url)) > time.time()
            name, exp, kid, sig = query(other_url)
            with pytest.raises(LinkForbidden):
                signer.verify(name, exp, "k404", sig)
            with pytest.raises(LinkForbidden):
                signer.verify(name, "9" * 5000, kid, sig)  # int() of 4,300+ digits raised ValueError (a 500)
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_concurrent_rotations_all_land(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    Secrets.load(settings)
    with ThreadPoolExecutor(8) as pool:
        kids = list(pool.map(lambda _: Secrets.rotate(settings), range(8)))
    assert sorted(kids, key=lambda k: int(k[1:])) == [f"k{n}" for n in range(2, 10)]
    assert set(Secrets.load(settings).signing_keys) == {f"k{n}" for n in range(1, 10)}


@pytest.fixture(scope="module")
def sim():
    s = SimulatedUpstream(SimConfig(api_keys=(SIM_KEY,))).start()
    yield s
    s.stop()


def test_a_running_server_signs_with_a_key_rotated_by_the_cli(start_server, sim):
    channel = {"name": "up", "kind": "relay", "base_url": sim.base_url, "key": SIM_KEY, "auth": "api-key",
               "path_style": "official", "timeout_s": 5.0}
    srv = start_server("config", engine_config={"*": "relay"}, channels=[channel])

    def generate() -> str:
        r = srv.post("/v1/ideogram-v3/generate", json={"prompt": "a lighthouse", "rendering_speed": "TURBO"})
        assert r.status_code == 200, r.text
        return r.json()["data"][0]["url"]

    old_url = generate()
    assert kid_of(old_url) == "k1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    rotated = subprocess.run([sys.executable, "-m", "ideohub.cli", "rotate-signing-key", "--data-dir",
                              str(srv.settings.data_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip().splitlines()[-1] == "k2"

    new_url = old_url
    deadline = time.monotonic() + 15  # the server looks at the database's key ring about once a second
    while kid_of(new_url) != "k2" and time.monotonic() < deadline:
        time.sleep(0.2)
        new_url = generate()
    assert kid_of(new_url) == "k2", "the running server still signs with the old key"
    for url in (old_url, new_url):  # links signed before and after the rotation both work
        r = httpx.get(url, timeout=30)
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
