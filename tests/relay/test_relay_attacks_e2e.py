"""Hostile callers and upstreams against a real server and the simulated upstream (real HTTP):
an upstream on 127.0.0.1 cannot make us connect to another port of that host, a key in an
upstream's error text never reaches our answer or our records, and one user's malformed
requests never take relaying away from another user."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ideohub.sim.runner import SimulatedUpstream
from ideohub.sim.upstream import SimConfig

SIM_KEY = "sim-secret-key-0123456789"
V3 = "/v1/ideogram-v3/generate"
GOOD = {"prompt": "a lighthouse at dusk", "rendering_speed": "TURBO"}


class CountingListener:
    """A plain TCP listener on 127.0.0.1 that counts connections (standing in for Redis or
    PostgreSQL on the upstream's host)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def sim():
    upstream = SimulatedUpstream(SimConfig(api_keys=(SIM_KEY,))).start()
    yield upstream
    upstream.stop()


def relay(start_server, sim: SimulatedUpstream, **channel_options):  # type: ignore[no-untyped-def]
    channel = {"name": "a", "kind": "relay", "base_url": sim.base_url, "key": SIM_KEY, "auth": "bearer",
               "path_style": "official", "timeout_s": 10.0, **channel_options}
    return start_server("config", engine_config={"*": "relay"}, channels=[channel], relay_cooldown_s=30)


def stored_error(srv, request_id: str) -> str | None:  # type: ignore[no-untyped-def]
    path = srv.settings.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # SQLite's own connection: the server's locks stay intact
        row = db.execute("SELECT error FROM requests WHERE id = ?", (request_id,)).fetchone()
    return row[0] if row else None


def test_image_links_to_another_port_of_the_upstreams_host_are_never_fetched(start_server, sim):
    listener = CountingListener()
    try:
        srv = relay(start_server, sim)
        assert srv.post(V3, json=GOOD).status_code == 200  # links on the channel's own origin are fine
        sim.configure(base_url=f"http://127.0.0.1:{listener.port}")  # now they point at the "Redis" port
        r = srv.post(V3, json=GOOD)
        assert r.status_code == 502, r.text
        assert r.json()["detail"] == "a: could not download the generated images from the upstream"
        assert str(listener.port) not in r.text
        assert listener.connections == 0
    finally:
        listener.close()


@pytest.mark.parametrize("status", [400, 422])
def test_a_key_quoted_in_an_upstream_error_is_neither_answered_nor_stored(start_server, sim, status):
    srv = relay(start_server, sim)
    quoted = (f"invalid request. Received headers: Authorization: Bearer {SIM_KEY}\r\n"
              f"Content-Type: application/json; echo: {SIM_KEY}")
    sim.faults("status", status=status, count=1, body=json.dumps({"detail": quoted, "error": quoted}))
    r = srv.post(V3, json=GOOD)
    assert r.status_code == status and SIM_KEY not in r.text
    assert "invalid request" in r.text
    error = stored_error(srv, r.headers["x-request-id"])
    assert error is not None and SIM_KEY not in error


JSON = {"Content-Type": "application/json"}
MALFORMED = [
    {"json": {"prompt": "x", "num_images": 99}},
    {"json": {"prompt": "x", "rendering_speed": "WARP"}},
    {"content": b'{"prompt": "a \\ud800 cat", "rendering_speed": "TURBO"}', "headers": JSON},
    {"content": b'{"prompt": "\\udfff"}', "headers": JSON},
    {"content": b'{"prompt": "ok", "negative_prompt": "\\ud83d"}', "headers": JSON},
]


def test_one_users_malformed_requests_never_affect_another_users_relaying(start_server, sim):
    srv = relay(start_server, sim)
    _b_id, key_b = srv.create_key()

    def good() -> int:
        return srv.post(V3, json=GOOD).status_code

    def bad(i: int) -> int:
        kwargs = dict(MALFORMED[i % len(MALFORMED)])
        headers = {"Api-Key": key_b, **kwargs.pop("headers", {})}
        return srv.client.post(V3, headers=headers, **kwargs).status_code

    def legacy_bad() -> int:
        body = b'{"image_request": {"prompt": "\\ud800", "model": "V_2"}}'
        return srv.client.post("/generate", headers={"Api-Key": key_b, "Content-Type": "application/json"},
                               content=body).status_code

    statuses_a, statuses_b = [], []
    for i in range(10):  # interleaved, one by one
        statuses_b.append(bad(i))
        statuses_a.append(good())
        statuses_b.append(legacy_bad())
    with ThreadPoolExecutor(6) as pool:  # and at once
        futures_b = [pool.submit(bad, i) for i in range(15)]
        futures_a = [pool.submit(good) for _ in range(9)]
        statuses_a += [f.result() for f in futures_a]
        statuses_b += [f.result() for f in futures_b]
    assert statuses_a == [200] * len(statuses_a)
    assert all(400 <= s < 500 for s in statuses_b), statuses_b
    assert len(sim.api_requests()) == len(statuses_a)  # B's requests never reached the upstream
    metrics = srv.client.get("/metrics").text
    assert 'ideohub_channel_cooldown{channel="a"} 1.0' not in metrics
    assert 'outcome="failed"' not in metrics and 'outcome="error"' not in metrics
