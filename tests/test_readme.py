"""Every shell block in the README runs as printed (issue 7: "every README example that can run
here runs as printed"), in order, in a fresh working directory, against a real ``ideohub serve``
started there with its defaults (``./ideohub-data``, SQLite, the local upscaler). The relay examples
talk to the simulated upstream: the only change made to a block is the base URL swap below, the
server's port for ``127.0.0.1:8000`` and the simulated upstream for ``https://relay.example``.

A block that cannot run here starts with ``# illustration:`` and says why. Every TOML block must
load as settings, with no key the settings do not know.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from ideohub.config import Settings
from ideohub.sim import SimConfig, SimulatedUpstream

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
RELAY_KEY = "relay-example-key"


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == kind]


def runnable() -> list[str]:
    return [b for b in blocks("sh") if not b.startswith("# illustration:")]


def test_the_readme_has_runnable_examples_and_labels_the_rest():
    assert len(runnable()) >= 5
    for block in blocks("sh"):
        if block.startswith("# illustration:"):
            assert len(block.splitlines()[0]) > len("# illustration: ") + 10, "say why it cannot run here"


def test_toml_examples_are_valid_settings():
    known = set(Settings.model_fields)
    for block in blocks("toml"):
        values = tomllib.loads(block)
        assert set(values) <= known, set(values) - known
        Settings(**values)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A directory laid out as the README assumes (``.venv/bin/python``, ``.venv/bin/ideohub``), a
    running server with the README's defaults, and the simulated reseller."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, command in (("python", ""), ("ideohub", " -m ideohub.cli")):  # this interpreter, with its packages
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}"{command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    ideohub = bin_dir / "ideohub"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    env.update(IDEOHUB_PORT=str(port), IDEOHUB_CHANNEL_RELOAD_S="0.2", RELAY_KEY=RELAY_KEY)
    with SimulatedUpstream(SimConfig(api_keys=(RELAY_KEY,))) as sim:
        server = subprocess.Popen([str(ideohub), "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            key = server.stdout.readline().strip()  # printed on first start, alone on its line
            assert key.startswith("ih_"), server.stderr.read() if server.poll() is not None else key
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None, server.stderr.read()
                subprocess.run(["sleep", "0.1"])  # polling a starting subprocess: there is no event to wait on
            env["KEY"] = key
            yield tmp_path, env, f"{base}|{sim.base_url}"
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_every_runnable_block_runs_as_printed(workdir):
    cwd, env, urls = workdir
    base, sim_url = urls.split("|")
    for block in runnable():
        script = block.replace("http://127.0.0.1:8000", base).replace("https://relay.example", sim_url)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"README block failed:\n{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        if "8000/upscale" in block:  # the legacy upscale examples (not /v2/image/upscale)
            assert '"upscaled_resolution":"256x256"' in done.stdout and '"seed":7' in done.stdout, done.stdout
        if "# legacy generate" in block:  # every endpoint answered through the channel, with our signed URLs
            assert done.stdout.count('"data":[') >= 10 and sim_url not in done.stdout, done.stdout
            assert base + "/images/" in done.stdout
        if "/v2/image/" in block:  # the 2026 families through their channel, the quote, a reused result
            assert '"billing_identifier":"v4_generate_default"' in done.stdout, done.stdout
            assert done.stdout.count('"data":[') >= 3 and sim_url not in done.stdout, done.stdout
