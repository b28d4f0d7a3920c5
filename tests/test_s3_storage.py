"""Object storage (issue 9, part 4): the Storage contract on local disk and on an S3-compatible
server (moto's, on loopback), presigned URLs, the fallback to images stored on disk before the
switch, and a fleet: an image made through one instance is served by another at the same signed
URL, streamed or redirected, and the sweeper deletes the object when the image expires."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from conftest import png_bytes, sim_channel
from ideohub.config import Settings, load_settings
from ideohub.media.s3 import S3Storage, parse_storage_url
from ideohub.media.storage import FallbackStorage, LocalStorage, Storage, StorageConfigError, make_storage
from s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Bucket, fleet, s3_bucket, s3_server  # noqa: F401

BIG = bytes(range(256)) * 1100  # 281,600 bytes: several chunks when streamed
BACKENDS = ["local", "s3"]


def backend(kind: str, tmp_path, bucket: S3Bucket, prefix: str = "") -> Storage:
    if kind == "local":
        return LocalStorage(tmp_path / "images")
    return S3Storage(bucket.name, prefix, endpoint_url=bucket.server.endpoint_url, region=REGION,
                     access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)


def run(make: Callable[[], Storage], body: Callable[[Storage], Awaitable[Any]]) -> Any:
    """``body(storage)`` in one event loop (an S3 client belongs to the loop it was made in)."""
    async def go() -> Any:
        storage = make()
        try:
            return await body(storage)
        finally:
            await storage.aclose()

    return asyncio.run(go())


# ------------------------------------------------------------ the contract, on both backends


@pytest.mark.parametrize("kind", BACKENDS)
def test_storage_contract(kind, tmp_path, s3_bucket):
    async def body(st: Storage) -> None:
        await st.put("img_a.png", b"first")
        await st.put("img_a.png", b"second")  # overwrite
        await st.put("img_big.webp", BIG)
        assert await st.get("img_a.png") == b"second"
        assert await st.size("img_a.png") == 6

        stream = await st.stream("img_big.webp")
        assert stream is not None and stream.size == len(BIG)
        chunks = [c async for c in stream]
        assert len(chunks) > 1 and b"".join(chunks) == BIG

        early = await st.stream("img_big.webp")  # a reader that stops early (a 304, a client gone)
        assert early is not None
        async for _chunk in early:
            break
        await early.aclose()
        assert await st.get("img_big.webp") == BIG  # the store is still usable

        for missing in ("img_none.png",):
            assert await st.get(missing) is None
            assert await st.stream(missing) is None
            assert await st.size(missing) is None
            await st.delete(missing)  # idempotent

        await st.delete("img_a.png")
        await st.delete("img_a.png")
        assert await st.get("img_a.png") is None

        for name in ("in-gen_1-0.png", "in-gen_1-1.jpg", "in-gen_12-0.png", "in-gen_2-0.png", "img_keep.png"):
            await st.put(name, name.encode())
        assert await st.delete_prefix("in-gen_1-") == 2
        assert await st.get("in-gen_1-0.png") is None and await st.get("in-gen_1-1.jpg") is None
        assert await st.get("in-gen_12-0.png") == b"in-gen_12-0.png"  # a longer id is not the same prefix
        assert await st.delete_prefix("in-gen_1-") == 0
        assert await st.get("img_keep.png") == b"img_keep.png"

        for bad in ("../x.png", "a/b.png", "x.exe", "", ".tmp-x.png", "img.png/"):
            for call in (lambda: st.put(bad, b"x"), lambda: st.get(bad), lambda: st.stream(bad),
                         lambda: st.size(bad), lambda: st.delete(bad), lambda: st.presigned_url(bad, 60)):
                with pytest.raises(ValueError):
                    await call()
        for bad_prefix in ("", "*", "a/b", "../", "in-?", "img.png"):
            with pytest.raises(ValueError):
                await st.delete_prefix(bad_prefix)
        assert await st.sweep_partial(time.time()) == 0

    run(lambda: backend(kind, tmp_path, s3_bucket), body)


def test_s3_keys_live_under_the_prefix_and_nothing_else_is_touched(tmp_path, s3_bucket):
    s3_bucket.write("other/in-x-0.png", b"not ours")
    s3_bucket.write("ideo/hub/nested/in-x-0.png", b"not a flat key of ours")

    async def body(st: Storage) -> None:
        await st.put("in-x-0.png", b"ours")
        await st.put("img_1.png", b"ours too")
        assert await st.delete_prefix("in-x-") == 1

    run(lambda: backend("s3", tmp_path, s3_bucket, prefix="ideo/hub/"), body)
    assert s3_bucket.keys() == ["ideo/hub/img_1.png", "ideo/hub/nested/in-x-0.png", "other/in-x-0.png"]


def test_presigned_url_fetches_the_object_and_local_has_none(tmp_path, s3_bucket):
    data = png_bytes(16, 16)

    async def body(st: Storage) -> tuple[str | None, str | None]:
        await st.put("img_p.png", data)
        return await st.presigned_url("img_p.png", 120), await st.presigned_url("img_missing.png", 120)

    url, _ = run(lambda: backend("s3", tmp_path, s3_bucket), body)
    assert url and url.startswith(s3_bucket.server.endpoint_url) and "X-Amz-Expires=120" in url
    assert SECRET_ACCESS_KEY not in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "image/png" and "max-age=120" in r.headers["cache-control"]
    tampered = url.replace("img_p.png", "img_q.png")
    assert httpx.get(tampered).status_code == 403
    assert run(lambda: backend("local", tmp_path, s3_bucket), body) == (None, None)


def test_credentials_come_from_the_aws_variables_by_default(tmp_path, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-environment")
    settings = Settings(data_dir=tmp_path, storage_url=f"s3://{s3_bucket.name}/p",
                        s3_endpoint_url=s3_bucket.server.endpoint_url, s3_region=REGION)

    async def body(st: Storage) -> str | None:
        await st.put("img_e.png", b"env")
        assert await st.get("img_e.png") == b"env"
        return await st.presigned_url("img_e.png", 60)

    url = run(lambda: make_storage(settings), body)
    assert url and "AKIDFROMENVIRONMENT" in url  # signed with the variables' key
    assert s3_bucket.keys() == ["p/img_e.png"]


def test_settings_are_validated_with_errors_naming_the_setting(tmp_path):
    assert parse_storage_url("s3://my-bucket") == ("my-bucket", "")
    assert parse_storage_url("s3://my.bucket/") == ("my.bucket", "")
    assert parse_storage_url("s3://my-bucket/a/b.c/") == ("my-bucket", "a/b.c/")
    assert parse_storage_url("S3://bkt/images") == ("bkt", "images/")
    for bad in ("s3://", "s3://ab", "s3://My-Bucket", "s3://-bucket", "s3://bucket-", "s3://a..b", "s3://a_b",
                "s3://192.168.1.10", "s3://xn--bucket", "s3://bucket-s3alias", "s3://" + "a" * 64,
                "s3://bucket//x", "s3://bucket/a/../b", "s3://bucket/./b", "s3://bucket/a b", "s3://bucket/x?y=1",
                "https://bucket/x", "bucket/x"):
        with pytest.raises(StorageConfigError, match="^storage_url: "):
            parse_storage_url(bad)
    with pytest.raises(StorageConfigError, match="storage_url") as exc:
        parse_storage_url("s3://AKIDLEAKED:supersecret@bucket/x")
    assert "supersecret" not in str(exc.value) and "AKIDLEAKED" not in str(exc.value)

    with pytest.raises(StorageConfigError, match="^storage_url: unsupported"):
        make_storage(Settings(data_dir=tmp_path, storage_url="gs://bucket/x"))
    with pytest.raises(StorageConfigError, match="s3_access_key_id and s3_secret_access_key"):
        make_storage(Settings(data_dir=tmp_path, storage_url="s3://bucket", s3_access_key_id="AKID"))
    with pytest.raises(StorageConfigError, match="^s3_endpoint_url: ") as exc:
        make_storage(Settings(data_dir=tmp_path, storage_url="s3://bucket", s3_endpoint_url="http://u:pw@host"))
    assert "pw@" not in str(exc.value)
    assert isinstance(make_storage(Settings(data_dir=tmp_path)), LocalStorage)
    assert isinstance(make_storage(Settings(data_dir=tmp_path, storage_url="s3://bucket/x")), FallbackStorage)

    with pytest.raises(ValidationError, match="image_delivery"):
        Settings(image_delivery="proxy")
    assert Settings(image_delivery="redirect").image_delivery == "redirect"


def test_credentials_never_reach_logs_or_reprs(tmp_path, s3_bucket, caplog):
    caplog.set_level(logging.DEBUG)

    async def body(st: Storage) -> str:
        await st.put("img_l.png", b"x")
        await st.get("img_l.png")
        await st.presigned_url("img_l.png", 60)
        await st.delete_prefix("img_l")
        return repr(st)

    shown = run(lambda: make_storage(load_settings(data_dir=tmp_path, **s3_bucket.settings("p"))), body)
    assert SECRET_ACCESS_KEY not in shown
    assert caplog.records and SECRET_ACCESS_KEY not in caplog.text


# ------------------------------------------------------------ migration from local disk


def test_fallback_serves_images_stored_on_disk_before_the_switch(tmp_path, s3_bucket):
    settings = load_settings(data_dir=tmp_path, **s3_bucket.settings("imgs"))
    asyncio.run(LocalStorage(settings.images_dir).put("img_old.png", b"from before"))

    async def body(st: Storage) -> None:
        assert isinstance(st, FallbackStorage)
        assert await st.get("img_old.png") == b"from before"
        stream = await st.stream("img_old.png")
        assert stream is not None and stream.size == 11 and await stream.read_all() == b"from before"
        assert await st.size("img_old.png") == 11
        assert await st.presigned_url("img_old.png", 60) is None  # only this disk has it: streamed
        await st.put("img_new.png", b"after")  # writes go to the object store only
        assert await st.get("img_new.png") == b"after"
        assert (await st.presigned_url("img_new.png", 60) or "").startswith(s3_bucket.server.endpoint_url)
        await st.delete("img_old.png")
        await st.delete("img_new.png")
        assert await st.get("img_old.png") is None and await st.get("img_new.png") is None
        await LocalStorage(settings.images_dir).put("in-g-0.png", b"disk")
        await st.put("in-g-1.png", b"bucket")
        assert await st.delete_prefix("in-g-") == 2

    run(lambda: make_storage(settings), body)
    assert not list(settings.images_dir.iterdir())
    assert s3_bucket.keys() == []


# ------------------------------------------------------------ a fleet on one bucket


V3 = "/v1/ideogram-v3/generate"


def generate(srv) -> str:  # type: ignore[no-untyped-def]
    r = srv.post(V3, json={"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO"})
    assert r.status_code == 200, r.text
    return r.json()["data"][0]["url"]


def at(srv, url: str) -> str:  # type: ignore[no-untyped-def]
    """The same signed link, asked of another instance."""
    parts = urlsplit(url)
    return f"{srv.base_url}{parts.path}?{parts.query}"


def test_any_instance_serves_any_image_streamed_or_redirected(fleet, fresh, s3_bucket):
    a = fleet("a", "config", engine_config={"*": "relay"}, channels=[sim_channel("up", fresh[0])],
              **s3_bucket.settings("fleet"))
    b = fleet("b", share_with=a, **s3_bucket.settings("fleet"))
    c = fleet("c", share_with=a, **s3_bucket.settings("fleet", image_delivery="redirect"))

    url = generate(a)
    name = urlsplit(url).path.rsplit("/", 1)[1]
    assert s3_bucket.keys() == [f"fleet/{name}"]
    assert not list(a.settings.images_dir.iterdir())  # nothing on the disk of the instance that made it
    stored = s3_bucket.read(f"fleet/{name}")
    assert stored[:8] == b"\x89PNG\r\n\x1a\n"

    own = a.client.get(url)
    assert own.status_code == 200 and own.content == stored

    streamed = b.client.get(at(b, url))
    assert streamed.status_code == 200 and streamed.content == stored
    assert streamed.headers["content-type"] == "image/png"
    assert streamed.headers["content-length"] == str(len(stored))
    etag = streamed.headers["etag"]
    assert etag == f'"{name.rsplit(".", 1)[0]}"'
    assert streamed.headers["cache-control"].startswith("private, max-age=")
    assert b.client.get(at(b, url), headers={"If-None-Match": etag}).status_code == 304
    head = b.client.head(at(b, url))
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(stored))
    assert head.headers["etag"] == etag
    assert b.client.get(at(b, url).replace("sig=", "sig=A")).status_code == 403

    redirected = c.client.get(at(c, url))
    assert redirected.status_code == 302
    location = redirected.headers["location"]
    assert location.startswith(s3_bucket.server.endpoint_url) and "X-Amz-Signature=" in location
    expires = int(dict(p.split("=", 1) for p in urlsplit(location).query.split("&"))["X-Amz-Expires"])
    assert 0 < expires <= 300
    followed = httpx.get(location)
    assert followed.status_code == 200 and followed.content == stored
    assert hashlib.sha256(followed.content).digest() == hashlib.sha256(streamed.content).digest()
    assert c.client.get(at(c, url), follow_redirects=True).content == stored
    assert c.client.head(at(c, url)).status_code == 200  # answered by the instance: presigned URLs are GET-only
    assert c.client.get(at(c, url), headers={"If-None-Match": etag}).status_code == 304


def test_images_stored_on_disk_before_the_switch_stay_served(fleet, fresh, s3_bucket):
    channels = {"engine_config": {"*": "relay"}, "channels": [sim_channel("up", fresh[0])]}
    local = fleet("local", "config", **channels)
    old_url = generate(local)
    old_name = urlsplit(old_url).path.rsplit("/", 1)[1]
    old_bytes = (local.settings.images_dir / old_name).read_bytes()

    # the same data directory, now on the bucket (redirecting where it can)
    switched = fleet("switched", "config", share_with=local, same_dir=True, **channels,
                     **s3_bucket.settings(image_delivery="redirect"))
    r = switched.client.get(at(switched, old_url))
    assert r.status_code == 200 and r.content == old_bytes  # streamed from the old disk: no object to redirect to
    assert s3_bucket.keys() == []
    new_url = generate(switched)
    new_name = urlsplit(new_url).path.rsplit("/", 1)[1]
    assert s3_bucket.keys() == [new_name] and not (switched.settings.images_dir / new_name).exists()

    # an instance on another disk finds the new images in the bucket, not the old ones (see README: copy them)
    other = fleet("other", share_with=local, **s3_bucket.settings(image_delivery="redirect"))
    assert other.client.get(at(other, new_url)).status_code == 302
    assert other.client.get(at(other, old_url)).status_code == 404


def test_expired_image_objects_are_deleted_by_the_sweeper(fleet, fresh, s3_bucket):
    a = fleet("a", "config", engine_config={"*": "relay"}, channels=[sim_channel("up", fresh[0])],
              url_ttl_s=2, sweep_interval_s=0.3, **s3_bucket.settings("exp"))
    url = generate(a)
    name = urlsplit(url).path.rsplit("/", 1)[1]
    assert s3_bucket.keys() == [f"exp/{name}"]
    deadline = time.monotonic() + 30
    while s3_bucket.keys() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s3_bucket.keys() == []
    assert a.client.get(url).status_code == 410


def test_local_disk_serves_the_same_way_in_either_delivery_mode(fleet, fresh):
    a = fleet("a", "config", engine_config={"*": "relay"}, channels=[sim_channel("up", fresh[0])],
              image_delivery="redirect")  # nothing to redirect to on local disk: streamed
    url = generate(a)
    name = urlsplit(url).path.rsplit("/", 1)[1]
    data = (a.settings.images_dir / name).read_bytes()
    r = a.client.get(url)
    assert r.status_code == 200 and r.content == data and r.headers["content-length"] == str(len(data))
    head = a.client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data)) and head.content == b""
    assert a.client.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    (a.settings.images_dir / name).unlink()
    assert a.client.get(url).status_code == 404 and a.client.head(url).status_code == 404
