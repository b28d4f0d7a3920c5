"""``python -m ideohub.sim --port 8790 --key sim-key``: the simulated upstream on its own.

Prints ``READY http://HOST:PORT`` on stdout once it accepts connections (``--port 0`` picks a
free port), then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import uvicorn

from .runner import bind_socket, uvicorn_config
from .upstream import SimConfig, create_sim_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ideohub.sim", description="Simulated Ideogram upstream")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8790, help="0 picks a free port (see the READY line)")
    p.add_argument("--key", action="append", dest="keys", help="an accepted API key (repeatable; default sim-key)")
    p.add_argument("--no-auth", action="store_true", help="accept any or no key")
    p.add_argument("--ttl", type=int, help="image link lifetime in seconds (default 3600)")
    p.add_argument("--latency-s", type=float, help="added latency per API request")
    p.add_argument("--base-url", help="prefix of image links (default: the request's host)")
    p.add_argument("--no-record", action="store_true", help="keep no request log")
    p.add_argument("--config-json", help="SimConfig fields as a JSON object (flags above override it)")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SimConfig:
    data = json.loads(args.config_json) if args.config_json else {}
    if args.keys:
        data["api_keys"] = args.keys
    if args.no_auth:
        data["require_auth"] = False
    if args.ttl is not None:
        data["url_ttl_s"] = args.ttl
    if args.latency_s is not None:
        data["latency_s"] = args.latency_s
    if args.base_url:
        data["base_url"] = args.base_url
    if args.no_record:
        data["record_requests"] = False
    return SimConfig.from_dict(data)


async def serve(config: SimConfig, host: str, port: int, log_level: str) -> None:
    sock = bind_socket(host, port)
    server = uvicorn.Server(uvicorn_config(create_sim_app(config), log_level))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise SystemExit("the simulated upstream did not start")
        await asyncio.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    print(f"READY http://{shown}:{sock.getsockname()[1]}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = config_from_args(args)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config, args.host, args.port, args.log_level))


if __name__ == "__main__":
    sys.exit(main())
