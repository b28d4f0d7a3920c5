"""The data directory is private to the server's user: after a server ran and stored images,
nothing in it (directories, database with its -wal/-shm, the master secret, images) has a
group or other permission bit; an existing directory with loose modes is tightened; the
operator's config file is left as it is."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from ideohub.config import Secrets, load_settings
from ideohub.sim.runner import SimulatedUpstream
from ideohub.sim.upstream import SimConfig
from ideohub.store import db

SIM_KEY = "sim-datadir-key-0123456789"


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """What most shells have: files 0644, directories 0755 unless we say otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def loose(root: Path, skip: set[Path] = frozenset()) -> list[str]:  # type: ignore[assignment]
    found = []
    for path in [root, *root.rglob("*")]:
        if path in skip:
            continue
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(root)}: {oct(stat.S_IMODE(mode))}")
    return found


def test_nothing_in_the_data_dir_is_readable_by_others_after_a_server_run(start_server, loose_umask, tmp_path):
    with SimulatedUpstream(SimConfig(api_keys=(SIM_KEY,))) as sim:
        channel = {"name": "up", "kind": "relay", "base_url": sim.base_url, "key": SIM_KEY, "auth": "api-key",
                   "path_style": "official", "timeout_s": 5.0}
        srv = start_server("config", engine_config={"*": "relay"}, channels=[channel])
        data = srv.settings.data_dir
        urls = []
        for n in (1, 2):
            r = srv.post("/v1/ideogram-v3/generate", json={"prompt": "a lighthouse", "num_images": n})
            assert r.status_code == 200, r.text
            urls += [item["url"] for item in r.json()["data"]]
        assert all(httpx.get(u, timeout=30).status_code == 200 for u in urls)
        names = {p.name for p in data.rglob("*")}
        assert {"ideohub.db", "secret.key", "images"} <= names
        assert "ideohub.db-wal" in names  # WAL mode: the server holds it open
        assert len(list((data / "images").iterdir())) >= 3
        assert loose(data) == []


def test_an_existing_loose_data_dir_is_tightened_and_the_config_left_alone(loose_umask, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    config = data / "ideohub.toml"
    config.write_text("url_ttl_s = 60\n")
    os.chmod(config, 0o644)
    settings = load_settings(data_dir=data)
    Secrets.load(settings)
    os.chmod(data / "secret.key", 0o644)  # as a careless copy left it
    (data / "images").mkdir(exist_ok=True)
    os.chmod(data / "images", 0o755)
    sqlite = Path(make_url(settings.db_url).database)
    sqlite.touch()
    os.chmod(sqlite, 0o644)

    Secrets.load(settings)
    db.upgrade(settings.db_url)
    assert stat.S_IMODE(config.stat().st_mode) == 0o644  # the operator's file
    assert loose(data, skip={config}) == []
    assert settings.url_ttl_s == 60


def test_a_new_database_file_is_private_before_sqlite_opens_it(loose_umask, tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'x.db'}"
    db.upgrade(url)
    assert loose(tmp_path / "new") == []
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
