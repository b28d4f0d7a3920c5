"""Run the simulated upstream on a loopback port: in a background thread (tests) or in a
subprocess (benchmarks, so it does not share the GIL with the load generator)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from .faults import Fault
from .upstream import RecordedRequest, SimConfig, SimState, _coerce_config, create_sim_app


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, log_level: str = "warning") -> uvicorn.Config:
    """Fast and quiet: httptools + uvloop when present, no access log, short graceful shutdown."""
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:  # pragma: no cover
        http = "h11"
    return uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="on", http=http, loop="auto",
        timeout_graceful_shutdown=2, timeout_keep_alive=30, server_header=False, date_header=False,
    )


def _as_faults(items: tuple[Any, ...], params: dict[str, Any]) -> list[Fault]:
    if not items:
        return [Fault.from_dict(params)]
    out: list[Fault] = []
    for item in items:
        if isinstance(item, Fault):
            out.append(item)
        elif isinstance(item, dict):
            out.append(Fault.from_dict({**item, **params}))
        elif isinstance(item, str):
            out.append(Fault(item, **params))
        else:
            raise TypeError(f"a fault is a Fault, a dict or a kind name, not {type(item).__name__}")
    return out


class SimulatedUpstream:
    """A running simulated Ideogram upstream.

    >>> with SimulatedUpstream() as sim:
    ...     sim.faults("status", status=429, retry_after=2, count=1, path="/generate")
    ...     httpx.post(sim.base_url + "/generate", headers=sim.auth_headers(), json={...})
    ...     sim.requests[-1].fields  # what the official schema accepted (or .error: why it refused)
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 subprocess: bool = False, startup_timeout_s: float = 30.0, log_level: str = "warning") -> None:
        self.config = config if config is not None else SimConfig()
        self.host = host
        self._port = port
        self.use_subprocess = subprocess
        self.startup_timeout_s = startup_timeout_s
        self.log_level = log_level
        self.base_url = ""
        self._state: SimState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._control: httpx.Client | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def api_key(self) -> str:
        return self.config.api_keys[0] if self.config.api_keys else ""

    @property
    def port(self) -> int:
        return self._port

    def auth_headers(self, style: str = "api-key", key: str | None = None) -> dict[str, str]:
        key = self.api_key if key is None else key
        return {"Api-Key": key} if style == "api-key" else {"Authorization": f"Bearer {key}"}

    def start(self) -> "SimulatedUpstream":
        if self.use_subprocess:
            self._start_subprocess()
        else:
            self._start_thread()
        return self

    def _start_thread(self) -> None:
        app = create_sim_app(self.config)
        self._state = app.state.sim
        sock = bind_socket(self.host, self._port)
        self._port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(app, self.log_level))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"ideohub-sim:{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                sock.close()
                raise RuntimeError("the simulated upstream did not start")
            time.sleep(0.005)
        self.base_url = f"http://{self._url_host()}:{self._port}"

    def _start_subprocess(self) -> None:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "ideohub.sim", "--host", self.host, "--port", str(self._port),
               "--log-level", self.log_level, "--config-json", json.dumps(self.config.to_dict())]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.startup_timeout_s)
        if not line or not line[0].startswith("READY "):
            self._stop_subprocess()
            raise RuntimeError(f"the simulated upstream subprocess did not start ({line[0].strip() if line else 'timeout'})")
        self.base_url = line[0].split()[1].rstrip("/")
        self._port = int(self.base_url.rsplit(":", 1)[1])
        # keep draining stdout so the child can never block on a full pipe
        threading.Thread(target=lambda: [None for _ in self._proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        self._control = httpx.Client(base_url=self.base_url, timeout=30)

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            if self._state is not None:
                self._state.release()  # end hangs so the graceful shutdown is quick
            self._server.should_exit = True
            self._thread.join(timeout=15)
            self._server = None
            self._thread = None
        if self._proc is not None:
            self._stop_subprocess()

    def _stop_subprocess(self) -> None:
        if self._control is not None:
            try:
                self._control.post("/_sim/reset", timeout=2)
            except httpx.HTTPError:
                pass
            self._control.close()
            self._control = None
        proc = self._proc
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> "SimulatedUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ scripting

    @property
    def state(self) -> SimState:
        """The live state of an in-thread sim (not available with ``subprocess=True``)."""
        if self._state is None:
            raise RuntimeError("state is only available for an in-thread sim")
        return self._state

    def faults(self, *faults: Fault | dict[str, Any] | str, **params: Any) -> None:
        """Queue faults for the next matching requests. Forms:
        ``faults("status", status=503, count=2)``, ``faults(status=429, retry_after=3)``,
        ``faults(Fault("hang", hang_s=5), {"kind": "malformed_json", "path": "/generate"})``.
        Keyword parameters apply to every fault given by kind name or dict."""
        items = _as_faults(faults, params)
        if self._state is not None:
            self._state.faults.add(*items)
        else:
            self._post("/_sim/faults", {"faults": [f.to_dict() for f in items]})

    def pending_faults(self) -> list[Fault]:
        if self._state is not None:
            return self._state.faults.pending()
        return [Fault.from_dict(f) for f in self._get("/_sim/faults")["faults"]]

    def clear_faults(self) -> None:
        if self._state is not None:
            self._state.faults.clear()
        else:
            self._request("DELETE", "/_sim/faults")

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset (oldest first), API calls and downloads."""
        if self._state is not None:
            return self._state.requests()
        return [RecordedRequest.from_dict(r) for r in self._get("/_sim/requests")["requests"]]

    def api_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == "api"]

    def refused_requests(self) -> list[RecordedRequest]:
        """API requests the official schema (or a cross-field rule) refused, each with its ``error``:
        a relay test asserts this is empty to check every request we sent upstream."""
        return [r for r in self.api_requests() if r.error is not None]

    def clear_requests(self) -> None:
        if self._state is not None:
            self._state.clear_requests()
        else:
            self._request("DELETE", "/_sim/requests")

    def reset(self) -> None:
        """Clear faults and the request log and end any hang in progress (the config stays)."""
        if self._state is not None:
            self._state.reset()
        else:
            self._post("/_sim/reset", {})

    def configure(self, **changes: Any) -> None:
        """Change SimConfig fields on the running sim (e.g. ``configure(url_ttl_s=1, latency_s=0.05)``)."""
        if self._state is not None:
            self._state.configure(changes)
        else:
            payload = dict(changes)
            if isinstance(payload.get("url_secret"), bytes):
                payload["url_secret"] = payload["url_secret"].hex()
            if "faults" in payload:
                payload["faults"] = [f.to_dict() if isinstance(f, Fault) else f for f in payload["faults"]]
            self._post("/_sim/config", payload)
            for name, value in _coerce_config(changes).items():
                setattr(self.config, name, value)

    def stats(self) -> dict[str, Any]:
        if self._state is not None:
            return self._state.stats()
        return self._get("/_sim/stats")

    # ------------------------------------------------------------ control over HTTP (subprocess mode)

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self._control is None:
            raise RuntimeError("the simulated upstream is not running")
        resp = self._control.request(method, path, json=body)
        resp.raise_for_status()
        return resp.json()

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    def _post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body)
