"""The webhook-signing key ring: created on first use in secrets.json, rotated (the previous key
retired, published 7 more days, then gone), re-read by a running process, never showing a
private key; the JWKS it publishes is Ideogram's ``WebhookSigningJwks``; the signature matches
what a verifier written from the spec expects."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
from openapi import _validator

from ideohub import spec
from ideohub.config import Secrets, load_settings
from ideohub.notify import keys, signing
from ideohub.notify.keys import RETIRED_PUBLISHED_S, WebhookKeyFile
from notify.verifier import NotAuthentic, verify

DAY = 24 * 3600


def secrets_file(tmp_path):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "data")
    Secrets.load(settings)
    return settings, settings.secrets_file


def private_hexes(path) -> list[str]:  # type: ignore[no-untyped-def]
    return [k["private"] for k in json.loads(path.read_text())[keys.FIELD]]


def test_created_on_first_use_kept_private_and_published_as_jwks(tmp_path):
    _settings, path = secrets_file(tmp_path)
    assert keys.FIELD not in json.loads(path.read_text())
    ring = WebhookKeyFile(path).current()
    assert [k.kid for k in ring.keys] == ["wh1"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    jwks = ring.jwks(ring.active.created)
    _validator(spec.MID_2026, "WebhookSigningJwks").validate(jwks)
    [jwk] = jwks["keys"]
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "wh1", "x": jwk["x"]}
    assert len(jwk["x"]) == 43 and "=" not in jwk["x"]  # 32 bytes, base64url without padding
    [secret] = private_hexes(path)
    assert secret not in json.dumps(jwks) and secret not in repr(ring)
    assert WebhookKeyFile(path).current().active.kid == "wh1"  # a second process reads the same ring


def test_rotation_retires_the_previous_key_for_seven_days(tmp_path):
    _settings, path = secrets_file(tmp_path)
    t0 = 1_800_000_000.0
    keys.ensure(path, now=t0)
    assert keys.rotate(path, now=t0 + 100) == "wh2"
    ring = keys.ring_from(json.loads(path.read_text()))
    assert ring.active.kid == "wh2"
    assert [k["kid"] for k in ring.jwks(t0 + 100)["keys"]] == ["wh2", "wh1"]  # the signing key first
    assert [k["kid"] for k in ring.jwks(t0 + 100 + RETIRED_PUBLISHED_S - 1)["keys"]] == ["wh2", "wh1"]
    assert [k["kid"] for k in ring.jwks(t0 + 100 + RETIRED_PUBLISHED_S)["keys"]] == ["wh2"]
    # the next rotation forgets keys no longer published (and keeps wh2, retired now)
    assert keys.rotate(path, now=t0 + 100 + 8 * DAY) == "wh3"
    assert [e["kid"] for e in json.loads(path.read_text())[keys.FIELD]] == ["wh2", "wh3"]


def test_a_running_process_sees_a_rotation_within_its_recheck_interval(tmp_path):
    _settings, path = secrets_file(tmp_path)
    now = [0.0]
    ring_file = WebhookKeyFile(path, recheck_s=1.0, clock=lambda: now[0])
    assert ring_file.current().active.kid == "wh1"
    keys.rotate(path)
    assert ring_file.current().active.kid == "wh1"  # not re-read before the interval
    now[0] += 1.0
    assert ring_file.current().active.kid == "wh2"


def test_concurrent_rotations_both_land_and_other_secrets_survive(tmp_path):
    settings, path = secrets_file(tmp_path)
    keys.ensure(path)
    before = json.loads(path.read_text())
    threads = [threading.Thread(target=keys.rotate, args=(path,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Secrets.rotate(settings)  # the URL-signing key ring's own rotation keeps the webhook keys
    after = json.loads(path.read_text())
    assert [e["kid"] for e in after[keys.FIELD]] == ["wh1", "wh2", "wh3", "wh4", "wh5"]
    assert [e["retired"] is None for e in after[keys.FIELD]] == [False, False, False, False, True]
    assert after["key_pepper"] == before["key_pepper"] and after["channel_key"] == before["channel_key"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_signature_is_what_a_spec_verifier_checks(tmp_path):
    _settings, path = secrets_file(tmp_path)
    ring = WebhookKeyFile(path).current()
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
