"""Signed URLs, atomic storage, image serving (ETag, cache headers, 403/410) and the sweeper."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from conftest import png_bytes
from ideohub.config import Secrets, load_settings
from ideohub.domain.operations import ImageOutput, ImageResult
from ideohub.domain.sizes import Size
from ideohub.media.signing import LinkExpired, LinkForbidden, UrlSigner
from ideohub.media.storage import LocalStorage


def signer(ttl: int = 60) -> UrlSigner:
    return UrlSigner({"k1": b"a" * 32, "k2": b"b" * 32}, "k2", "https://img.example", ttl)


def parts(url: str) -> tuple[str, dict[str, str]]:
    path, _, query = url.partition("?")
    return path.rsplit("/", 1)[1], dict(p.split("=", 1) for p in query.split("&"))


def test_signed_url_round_trip_and_expiry():
    s = signer(ttl=60)
    url, exp = s.sign("img_1.png", now=1000)
    assert url.startswith("https://img.example/images/img_1.png?")
    name, q = parts(url)
    assert q["kid"] == "k2" and len(q["sig"]) == 64 and int(q["exp"]) == exp == 1060
    assert s.verify(name, q["exp"], q["kid"], q["sig"], now=1059) == 1060
    with pytest.raises(LinkExpired):
        s.verify(name, q["exp"], q["kid"], q["sig"], now=1060)


@pytest.mark.parametrize("field", ["name", "exp", "kid", "sig", "missing"])
def test_tampered_links_are_forbidden(field):
    s = signer()
    name, q = parts(s.sign("img_1.png", now=1000)[0])
    if field == "name":
        name = "img_2.png"
    elif field == "exp":
        q["exp"] = str(int(q["exp"]) + 3600)  # extending the lifetime breaks the signature
    elif field == "kid":
        q["kid"] = "k1"
    elif field == "sig":
        q["sig"] = ("0" if q["sig"][0] != "0" else "1") + q["sig"][1:]
    else:
        q.pop("sig")
    with pytest.raises(LinkForbidden):
        s.verify(name, q.get("exp"), q.get("kid"), q.get("sig"), now=1001)


def test_rotated_keys_keep_old_links_valid(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    old = Secrets.load(settings)
    old_signer = UrlSigner(old.signing_keys, old.active_kid, "http://x", 60)
    name, q = parts(old_signer.sign("img_9.png")[0])
    new_kid = Secrets.rotate(settings)
    new = Secrets.load(settings)
    assert new.active_kid == new_kid != old.active_kid
    new_signer = UrlSigner(new.signing_keys, new.active_kid, "http://x", 60)
    assert new_signer.verify(name, q["exp"], q["kid"], q["sig"])  # old link still verifies
    assert parts(new_signer.sign("img_9.png")[0])[1]["kid"] == new_kid
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0  # the master secret: not readable by others


def test_local_storage_is_atomic_and_rejects_path_tricks(tmp_path):
    st = LocalStorage(tmp_path)
    asyncio.run(st.put("img_a.png", b"data"))
    assert (tmp_path / "img_a.png").read_bytes() == b"data"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    for bad in ("../x.png", "a/b.png", "x.exe", ""):
        with pytest.raises(ValueError):
            asyncio.run(st.put(bad, b"x"))


def _store_one(running, data: bytes) -> str:
    """Store a real PNG through the service's storage path and return its signed URL."""
    from ideohub.media.signing import UrlSigner
    from ideohub.media.storage import LocalStorage
    from ideohub.store.repository import Repository

    settings = running.settings
    secrets = Secrets.load(settings)

    async def go() -> str:
        from types import SimpleNamespace

        from ideohub.stages.delivery import Delivery

        repo = Repository.connect(settings.db_url, secrets.key_pepper)
        try:
            delivery = Delivery(LocalStorage(settings.images_dir),
                                UrlSigner(secrets.signing_keys, secrets.active_kid, settings.base_url, settings.url_ttl_s))
            await repo.start_request("req_media", None, "upscale")
            out = ImageOutput(data=data, media_type="image/png", resolution=Size(8, 8), prompt="", seed=1,
                              is_image_safe=True)
            job = SimpleNamespace(request_id="req_media", output_prefix="genmedia-1-")
            delivered = await delivery.deliver(job, ImageResult([out]))  # type: ignore[arg-type]
            await repo.add_images(delivered.rows)  # what settlement records
            return delivered.images[0].url
        finally:
            await repo.close()

    return asyncio.run(go())


def test_serving_signed_images(start_server):
    srv = start_server()
    data = png_bytes(8, 8)
    url = _store_one(srv, data)
    r = srv.client.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "image/png"
    etag = r.headers["etag"]
    cache = r.headers["cache-control"]
    assert "immutable" in cache and 0 < int(cache.split("max-age=")[1].split(",")[0]) <= 86400
    assert srv.client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert srv.client.head(url).status_code == 200
    name, q = parts(url)
    tampered = url.replace(q["sig"], q["sig"][::-1])
    r = srv.client.get(tampered)
    assert r.status_code == 403 and r.json()["status"] == 403
    assert srv.client.get(url.split("?")[0]).status_code == 403


def test_expired_links_and_sweeper(start_server):
    srv = start_server(url_ttl_s=1)
    url = _store_one(srv, png_bytes(8, 8))
    assert srv.client.get(url).status_code == 200
    # the same image's link as it was signed 10 s ago (validly, so only its age is wrong), instead
    # of waiting for this one to expire
    secrets = Secrets.load(srv.settings)
    signer = UrlSigner(secrets.signing_keys, secrets.active_kid, srv.settings.base_url, srv.settings.url_ttl_s)
    expired, _exp = signer.sign(parts(url)[0], now=time.time() - 10)
    r = srv.client.get(expired)
    assert r.status_code == 410 and r.headers["content-type"] == "application/json"
    # the sweeper deletes the expired file and its row
    from ideohub.service import Service
    from ideohub.store.repository import Repository

    settings = srv.settings
    files_before = list(settings.images_dir.glob("*.png"))
    assert files_before

    async def sweep() -> int:
        repo = Repository.connect(settings.db_url, Secrets.load(settings).key_pepper)
        try:
            svc = Service(settings, repo, LocalStorage(settings.images_dir), None, {}, None)  # type: ignore[arg-type]
            return await svc.sweep(datetime.now(UTC) + timedelta(seconds=5))  # past the 1 s link lifetime
        finally:
            await repo.close()

    assert asyncio.run(sweep()) == 1
    assert not list(settings.images_dir.glob("*.png"))
