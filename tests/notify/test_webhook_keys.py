"""The webhook-signing key ring: created with the other secrets (in the database), rotated (the
previous key retired, published 7 more days, then gone), re-read by a running process, never
showing a private key; the JWKS it publishes is Ideogram's ``WebhookSigningJwks``; the signature
matches what a verifier written from the spec expects."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from openapi import _validator

from ideohub import spec
from ideohub.config import Secrets, load_settings
from ideohub.notify import signing
from ideohub.notify.keys import RETIRED_PUBLISHED_S
from ideohub.store import db
from ideohub.store.secrets import open_secrets
from notify.verifier import NotAuthentic, verify

DAY = 24 * 3600


def loaded(tmp_path):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "data")
    return settings, Secrets.load(settings)


def private_hexes(secrets) -> list[str]:  # type: ignore[no-untyped-def]
    return [k.private.private_bytes_raw().hex() for k in secrets.webhook_ring.keys]


def test_created_with_the_secrets_kept_private_and_published_as_jwks(tmp_path):
    settings, secrets = loaded(tmp_path)
    ring = secrets.webhook_key_source.current()
    assert [k.kid for k in ring.keys] == ["wh1"]
    jwks = ring.jwks(ring.active.created)
    _validator(spec.MID_2026, "WebhookSigningJwks").validate(jwks)
    [jwk] = jwks["keys"]
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "wh1", "x": jwk["x"]}
    assert len(jwk["x"]) == 43 and "=" not in jwk["x"]  # 32 bytes, base64url without padding
    [secret] = private_hexes(secrets)
    assert secret not in json.dumps(jwks) and secret not in repr(ring)
    again = Secrets.load(settings).webhook_key_source.current()  # a second process reads the same ring
    assert again.active.kid == "wh1" and again.active.public_raw == ring.active.public_raw


def test_rotation_retires_the_previous_key_for_seven_days(tmp_path):
    settings, _secrets = loaded(tmp_path)
    t0 = 1_800_000_000.0
    assert Secrets.rotate_webhook(settings, now=t0 + 100) == "wh2"
    ring = Secrets.load(settings).webhook_ring
    assert ring.active.kid == "wh2"
    assert [k["kid"] for k in ring.jwks(t0 + 100)["keys"]] == ["wh2", "wh1"]  # the signing key first
    assert [k["kid"] for k in ring.jwks(t0 + 100 + RETIRED_PUBLISHED_S - 1)["keys"]] == ["wh2", "wh1"]
    assert [k["kid"] for k in ring.jwks(t0 + 100 + RETIRED_PUBLISHED_S)["keys"]] == ["wh2"]
    # the next rotation forgets keys no longer published (and keeps wh2, retired now)
    assert Secrets.rotate_webhook(settings, now=t0 + 100 + 8 * DAY) == "wh3"
    assert [k.kid for k in Secrets.load(settings).webhook_ring.keys] == ["wh2", "wh3"]


def test_a_running_process_sees_a_rotation_within_its_recheck_interval(tmp_path):
    settings, _secrets = loaded(tmp_path)

    async def go() -> None:
        now = [0.0]
        engine = db.create_engine_async(settings.db_url)
        try:
            running = await open_secrets(settings, engine, recheck_s=1.0, clock=lambda: now[0])
            source = running.webhook_key_source
            assert source.current().active.kid == "wh1"
            Secrets.rotate_webhook(settings)  # the CLI
            await running.check()
            assert source.current().active.kid == "wh1"  # not re-read before the interval
            now[0] += 1.0
            await running.check()
            assert source.current().active.kid == "wh2"
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_concurrent_rotations_all_land_and_other_secrets_survive(tmp_path):
    settings, before = loaded(tmp_path)
    threads = [threading.Thread(target=Secrets.rotate_webhook, args=(settings,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Secrets.rotate(settings)  # the URL-signing key ring's own rotation keeps the webhook keys
    after = Secrets.load(settings)
    assert [k.kid for k in after.webhook_ring.keys] == ["wh1", "wh2", "wh3", "wh4", "wh5"]
    assert [k.retired is None for k in after.webhook_ring.keys] == [False, False, False, False, True]
    assert after.key_pepper == before.key_pepper and after.channel_key == before.channel_key
    assert private_hexes(after)[0] == private_hexes(before)[0]


def test_the_signature_is_what_a_spec_verifier_checks(tmp_path):
    _settings, secrets = loaded(tmp_path)
    ring = secrets.webhook_key_source.current()
    body = b'{"generation_id":"abc","data":[]}'
    headers = signing.headers(ring, "abc", signing.user_id("acct_1"), 1_700_000_000, body)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify(lower, body, ring.jwks(1_700_000_000)) == "wh1"
    with pytest.raises(NotAuthentic, match="no key"):
        verify(lower, body.replace(b"abc", b"abd"), ring.jwks(1_700_000_000))
    with pytest.raises(NotAuthentic, match="no key"):
        verify({**lower, "x-ideogram-webhook-timestamp": "1700000001"}, body, ring.jwks(1_700_000_000))


def test_user_ids_are_stable_url_safe_and_per_account():
    a, b = signing.user_id("acct_default"), signing.user_id("acct_other")
    assert a == signing.user_id("acct_default") and a != b
    assert len(a) == 22 and all(c.isalnum() or c in "-_" for c in a)
    assert "acct" not in a
