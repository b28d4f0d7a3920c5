"""The CLI on a shared data directory: a key created from the CLI works at once on a running
server, and a revoke stops it at once."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from conftest import ThreadedServer, free_port
from ideohub.api.app import create_app
from ideohub.config import load_settings


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ideohub.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_keys_create_list_revoke_against_a_running_server(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    settings = load_settings(data_dir=data, port=port)
    created = cli("keys", "create", "--name", "ci", "--data-dir", str(data))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ih_") and len(key) > 40
    with ThreadedServer(create_app(settings, engines={}), port):
        r = httpx.post(f"{settings.base_url}/v1/ideogram-v3/generate", json={"prompt": "x"}, headers={"Api-Key": key})
        assert r.status_code == 503  # authenticated; no engine configured
        listed = cli("keys", "list", env={"IDEOHUB_DATA_DIR": str(data)})  # env var works like --data-dir
        assert listed.returncode == 0 and "ci" in listed.stdout and key not in listed.stdout
        key_id = next(tok for tok in listed.stdout.split() if tok.startswith("key_"))
        revoked = cli("keys", "revoke", key_id, "--data-dir", str(data))
        assert revoked.returncode == 0, revoked.stderr
        r = httpx.post(f"{settings.base_url}/v1/ideogram-v3/generate", json={"prompt": "x"}, headers={"Api-Key": key})
        assert r.status_code == 401
    assert cli("keys", "revoke", key_id, "--data-dir", str(data)).returncode == 1


def test_keys_are_stored_hashed(tmp_path):
    import sqlite3

    data = tmp_path / "d"
    key = cli("keys", "create", "--data-dir", str(data)).stdout.strip().splitlines()[-1]
    rows = sqlite3.connect(data / "ideohub.db").execute("select key_hash, prefix from api_keys").fetchall()
    assert len(rows) == 1 and key not in rows[0][0] and len(rows[0][0]) == 64
    assert key.encode() not in (data / "ideohub.db").read_bytes()


def test_config_file_and_env_precedence(tmp_path):
    (tmp_path / "ideohub.toml").write_text('port = 9100\nurl_ttl_s = 77\n[engines]\nupscale = "local-upscaler"\n')
    s = load_settings(data_dir=tmp_path)
    assert (s.port, s.url_ttl_s, s.engines) == (9100, 77, {"upscale": "local-upscaler"})
    os.environ["IDEOHUB_PORT"] = "9200"
    try:
        assert load_settings(data_dir=tmp_path).port == 9200
        assert load_settings(data_dir=tmp_path, port=9300).port == 9300
    finally:
        del os.environ["IDEOHUB_PORT"]
