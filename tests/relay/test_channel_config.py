"""Channels: one defaults table for the config file and the CLI, validated numbers, base-URL
credentials masked in listings, and `channels list` showing health that the engine persists
(migration 0004) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ideohub.config import Secrets, load_settings
from ideohub.engines.relay.channel_store import ChannelStore
from ideohub.engines.relay.channels import (
    COMMON_DEFAULTS,
    KIND_DEFAULTS,
    Channel,
    ChannelHealth,
    SecretBox,
    channel_from_options,
    mask_url,
)
from ideohub.store import db
from ideohub.store.repository import Repository

KEY = "upstream-secret-key-0123456789"


def cli(data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ideohub.cli", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)


def with_store(db_url: str, data: Path, fn):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=data, database_url=db_url)
    db.upgrade(settings.db_url)
    secrets = Secrets.load(settings)

    async def go():  # type: ignore[no-untyped-def]
        repo = Repository.connect(settings.db_url, secrets.key_pepper)
        try:
            return await fn(ChannelStore(repo.session, SecretBox(secrets.channel_key)))
        finally:
            await repo.close()

    return asyncio.run(go())


def sqlite_url(data: Path) -> str:
    return f"sqlite:///{(data / 'ideohub.db').resolve()}"


# ---------------------------------------------------------------- one defaults table


@pytest.mark.parametrize("kind", ["relay", "ideogram"])
def test_the_table_gives_each_kind_its_defaults(kind):
    options = {"name": "c", "kind": kind, "key": KEY}
    if kind == "relay":
        options["base_url"] = "https://relay.example"
    channel = channel_from_options(options)
    expected = {**COMMON_DEFAULTS, **KIND_DEFAULTS[channel.kind]}
    for option, value in expected.items():
        assert getattr(channel, option) == value, option
    assert (channel.auth.value, channel.path_style.value) == (
        ("api-key", "official") if kind == "ideogram" else ("bearer", "ideogram"))


def test_relay_without_base_url_is_refused():
    with pytest.raises(ValueError, match="base_url is required"):
        channel_from_options({"name": "c", "kind": "relay", "key": KEY})


def test_cli_and_config_file_give_the_same_channel(tmp_path):
    """`channels add` with only the required options stores exactly what a [[channels]] table with
    the same options becomes (the config file's channels go through channel_from_options)."""
    data = tmp_path / "data"
    assert cli(data, "channels", "add", "r", "--base-url", "https://relay.example", "--key", KEY).returncode == 0
    added = cli(data, "channels", "add", "o", "--kind", "ideogram", "--key", KEY)
    assert added.returncode == 0, added.stderr
    stored = {c.name: c for c in with_store(sqlite_url(data), data, lambda s: s.list())}
    from_config = {
        "r": channel_from_options({"name": "r", "base_url": "https://relay.example", "key": KEY}),
        "o": channel_from_options({"name": "o", "kind": "ideogram", "key": KEY}),
    }
    for name, channel in from_config.items():
        assert stored[name].public() == channel.public()
        assert stored[name].key == KEY


BAD = [
    ({"weight": 0}, "weight"), ({"weight": 1.5}, "weight"), ({"weight": True}, "weight"),
    ({"priority": 10 ** 9}, "priority"),
    ({"max_in_flight": 0}, "max_in_flight"), ({"max_in_flight": "10"}, "max_in_flight"),
    ({"timeout_s": math.nan}, "timeout_s"), ({"timeout_s": math.inf}, "timeout_s"), ({"timeout_s": -1}, "timeout_s"),
    ({"timeout_s": 0}, "timeout_s"), ({"connect_timeout_s": 0}, "connect_timeout_s"),
    ({"cost_multiplier": -0.5}, "cost_multiplier"), ({"cost_multiplier": math.nan}, "cost_multiplier"),
    ({"auth": "basic"}, "auth"), ({"path_style": "v9"}, "path_style"), ({"kind": "openai"}, "kind"),
    ({"name": "has space"}, "name"), ({"name": "x" * 65}, "name"), ({"key": "a\r\nX: y"}, "key"), ({"key": ""}, "key"),
    ({"base_url": "ftp://relay.example"}, "base URL"), ({"base_url": "https://relay.example/?q=1"}, "base URL"),
    ({"base_url": "https://relay.example:99999"}, "base URL"), ({"operations": "v9-generate"}, "operations"),
    ({"enabled": "yes"}, "enabled"), ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize("change,named", BAD, ids=[f"{k}={v!r}"[:40] for (c, _n) in BAD for k, v in c.items()])
def test_invalid_options_are_refused_naming_the_option(change, named):
    with pytest.raises(ValueError, match=named):
        channel_from_options({"name": "c", "base_url": "https://relay.example", "key": KEY, **change})


def test_cli_refuses_invalid_numbers_with_the_rule(tmp_path):
    out = cli(tmp_path / "data", "channels", "add", "r", "--base-url", "https://relay.example", "--key", KEY,
              "--weight", "0")
    assert out.returncode == 2 and "weight must be an integer from 1 to 1000" in out.stderr


# ---------------------------------------------------------------- listings: masked, with health


def test_base_url_credentials_are_masked():
    channel = Channel(name="c", base_url="https://user:hunter2@relay.example:8443/v1", key=KEY)
    assert channel.public()["base_url"] == "https://***@relay.example:8443/v1"
    assert mask_url("https://relay.example") == "https://relay.example"
    assert str(channel.origin) == "https://relay.example:8443"  # the guard's trusted origin, without them
    assert "hunter2" not in repr(channel) and KEY not in repr(channel)


def test_channels_list_shows_health_and_hides_secrets(tmp_path):
    data = tmp_path / "data"
    now = datetime.now(UTC)

    async def setup(store: ChannelStore) -> None:
        for name in ("fine", "cool", "fail", "off"):  # a short operations list: the health column fits one line
            await store.upsert(channel_from_options({"name": name, "key": KEY, "operations": "generate,v3-generate",
                                                     "base_url": "https://user:hunter2@relay.example"}))
        await store.record_ok("fine", now)
        await store.record_failure("cool", 3, now + timedelta(hours=1), "upstream answered 503")
        await store.record_failure("fail", 2, now - timedelta(minutes=1), "timed out after 180s\x00")
        await store.set_enabled("off", False)

    with_store(sqlite_url(data), data, setup)
    listed = cli(data, "channels", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 3}
    assert "healthy" in rows["fine"]
    assert "cooling until" in rows["cool"] and "3 failures" in rows["cool"] and "503" in rows["cool"]
    assert "failing" in rows["fail"] and "timed out" in rows["fail"]
    assert "disabled" in rows["off"]
    assert "hunter2" not in listed.stdout and KEY not in listed.stdout and "***@relay.example" in listed.stdout


def health_round_trip(db_url: str, data: Path) -> dict[str, ChannelHealth | None]:
    at = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    async def go(store: ChannelStore) -> dict[str, ChannelHealth | None]:
        await store.upsert(channel_from_options({"name": "a", "key": KEY, "base_url": "https://relay.example"}))
        await store.record_failure("a", 1, at + timedelta(seconds=5), "upstream answered 500")
        first = (await store.get("a")).health  # type: ignore[union-attr]
        await store.upsert(channel_from_options({"name": "a", "key": KEY, "base_url": "https://relay.example"}))
        kept = (await store.get("a")).health  # type: ignore[union-attr]
        await store.record_ok("a", at + timedelta(seconds=9))
        return {"failing": first, "after upsert": kept, "ok": (await store.get("a")).health}  # type: ignore[union-attr]

    return with_store(db_url, data, go)


def check_round_trip(result: dict[str, ChannelHealth | None]) -> None:
    at = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert result["failing"] == ChannelHealth(1, at + timedelta(seconds=5), "upstream answered 500", None)
    assert result["after upsert"] == result["failing"]  # re-adding a channel keeps its health
    assert result["ok"] == ChannelHealth(0, None, "upstream answered 500", at + timedelta(seconds=9))


def test_health_persists_on_sqlite(tmp_path):
    check_round_trip(health_round_trip(sqlite_url(tmp_path / "data"), tmp_path / "data"))


def test_health_persists_on_postgresql(pg_url, tmp_path):
    check_round_trip(health_round_trip(pg_url, tmp_path / "data"))


def test_operations_take_family_shorthands_and_listings_fold_them_back():
    from ideohub.domain.operations import Operation
    from ideohub.engines.relay.channels import (
        LEGACY_V3_OPERATIONS,
        channel_from_options,
        describe_operations,
    )

    ch = channel_from_options({"name": "r", "base_url": "https://relay.example", "key": "k",
                               "operations": "legacy,4.0,v2-generate-nano-banana-2"})
    assert Operation.GENERATE in ch.operations and Operation.V4_GENERATE in ch.operations
    assert Operation.V3_GENERATE not in ch.operations and Operation.V2_GENERATE_IDEOGRAM_4 not in ch.operations
    assert Operation.V2_GENERATE_NANO_BANANA_2 in ch.operations  # a resold model: by name only
    assert describe_operations(ch.operations) == "legacy,4.0,v2-generate-nano-banana-2"
    assert describe_operations(LEGACY_V3_OPERATIONS) == "legacy,3.0" and describe_operations(None) == "all"
    v2 = channel_from_options({"name": "v", "base_url": "https://relay.example", "key": "k", "operations": ["v2"]})
    assert not any(op.resold for op in v2.operations)  # a family never includes another vendor's models
    with pytest.raises(ValueError, match="operations: unknown operation 'v5'"):
        channel_from_options({"name": "x", "base_url": "https://relay.example", "key": "k", "operations": "v5"})
