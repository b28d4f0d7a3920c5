"""What one request of each API family costs ideohub: 3.0, 4.0 and /v2 generate, relayed side by side.

One operation = a generate request (JSON body, one image, resolution 1536x512, the same fixed seed)
plus a ``GET`` of the image URL it returns, sent to ``ideohub serve``, which relays it to the
simulated upstream, downloads and stores the image and answers with its own signed ``/images/...``
URL. The families:

* ``3.0``    ``POST /v1/ideogram-v3/generate``       (hand-written parser; bench/relay.py's request)
* ``4.0``    ``POST /v1/ideogram-v4/generate``       ``{"text_prompt", "rendering_speed": "TURBO", ...}``
* ``v2/i4``  ``POST /v2/image/generate/ideogram-4``  ``{"prompt", "rendering_speed": "turbo", ...}``
* ``v2/i3``  ``POST /v2/image/generate/ideogram-3``  the same, on the 3.0 model's /v2 path

4.0 and /v2 go through the one schema-driven dialect (``api.dialects.spec``: the body validated with
jsonschema against the official request schema of its path); the sim validates every request
against the official schema too. 1536x512 is in both ``ResolutionV3`` and ``ResolutionV4`` and the
sim picks the picture by size and seed, so every family downloads the same 13,575-byte PNG (checked):
the families differ only in the request path through ideohub (and the sim).

Set-up: bench/relay.py's, imported from its path (its sim in a subprocess, its ``IdeohubServer``,
keep-alive client, /proc CPU accounting and percentile); the only change is the channel, which lists
the families it serves (``"operations": ["legacy", "3.0", "4.0", "v2"]``, relay kind, official paths,
``Api-Key`` auth), because a relay channel without a list serves only legacy and 3.0. SQLite,
``IDEOHUB_LOG_LEVEL=WARNING``, loopback, no injected latency.

Method: a warm-up of every family, then ``--rounds`` rounds; each measures ``--ops`` operations at
concurrency 1 (one worker, one persistent connection) for every family, the order of the families
reversing every round (A B C D, D C B A, ...) to cancel drift on a shared, noisy machine. Figures are
medians over rounds: p50/p99 of the per-operation latency (generate + image GET), ideohub's user +
system CPU time (``/proc/<pid>/stat``) over the phase divided by the operations done, and "x 3.0",
the median over rounds of the per-round ratio to 3.0's figure (each round measures every family,
so the ratio cancels what the round shares). ``X-Ideohub-Overhead-Ms`` is ideohub's own figure for a
generate request (time not spent waiting on the upstream), its median over all operations.

Last, "dialect parse" times the parser alone, in this process: each family's body (JSON already
decoded) through the function its path uses in ideohub (``v3.parse_generate``; ``spec.parse``), the
best of 5 runs of ``--parse-loops`` parses.

Run:  .venv/bin/python bench/families.py            (about 2 minutes; --quick: ~25 s)
      .venv/bin/python bench/families.py --families 3.0,v2/i4    (a subset, in this order)

RESULTS, ``python bench/families.py`` on the development machine (2 vCPUs of an AMD EPYC under KVM,
shared: other jobs ran at the same time; 1-min load average 1.9 before and after; 106 s measured):

                                      3.0   x3.0        4.0   x3.0      v2/i4   x3.0      v2/i3   x3.0
    latency p50 (ms)                16.12  x1.00      15.95  x0.99      17.29  x1.10      17.14  x1.09
    latency p99 (ms)                34.85             29.44             30.92             30.14
    CPU ms/op: ideohub              13.36  x1.00      13.36  x1.01      14.44  x1.08      14.44  x1.07
    CPU ms/op: sim                   1.80              1.84              2.08              2.12
    CPU ms/op: client                0.56              0.48              0.56              0.48
    X-Ideohub-Overhead-Ms median     7.21              7.43              8.23              8.14
    CPU x3.0, quartiles/rounds         1.00-1.00         0.93-1.06         0.97-1.15         0.97-1.18
    dialect parse, in-process (us)   13.8              39.1              59.7              62.4

Reading it: a 4.0 generate costs ideohub what a 3.0 one does (CPU x1.01; x1.03 and x1.05 in two
earlier runs, 6 x 250 and 12 x 125 ops), a /v2 generate about 5-10 % more (x1.07-x1.08 here,
x1.02-x1.07 in the earlier runs), i.e. about +1 ms of CPU on ~13-14 ms. ideohub's own overhead figure
agrees (medians over 1,500 requests each: 4.0 +0.2 ms, /v2 +0.9-1.0 ms here; +0.3-0.5 and +0.5-0.7
in the earlier runs). The schema-driven dialect is not where it goes: validating a body with
jsonschema costs 40-60 us (up to 90 in a noisier run) against 14-21 us for the hand-written 3.0
parser, under 0.1 ms of the difference; the rest is elsewhere in the /v2 request path (not profiled
here). The sim also spends ~0.3 ms more on a /v2 request (its schema validation and answer filling).
Per-round ratios spread by about +-8 % (quartiles) on this shared machine, so differences under ~5 %
are within noise; compare figures from one run. p99 over 125 operations is their second-slowest.
The absolute CPU per operation is the relay cost bench/relay.py measures for 3.0, per-request
bookkeeping common to every family.

"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


def _load_relay():  # type: ignore[no-untyped-def]
    """bench/relay.py as a module (it is a script in a folder without ``__init__``): importing it puts
    this checkout's src on sys.path and defines everything reused here; it runs nothing on import."""
    path = Path(__file__).resolve().with_name("relay.py")
    spec = importlib.util.spec_from_file_location("ideohub_bench_relay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the classes
    spec.loader.exec_module(module)
    return module


relay = _load_relay()

PROMPT = "a lighthouse at dusk"
RESOLUTION = relay.RESOLUTION  # 1536x512: the sim's smallest PNG, a ResolutionV3 and a ResolutionV4 value
SEED = 12345
OPERATIONS = ["legacy", "3.0", "4.0", "v2"]  # the channel's families (shorthands)


@dataclass(frozen=True)
class Family:
    name: str
    path: str
    body: bytes


FAMILIES = {
    "3.0": Family("3.0", relay.GENERATE_PATH, relay.BODY),
    "4.0": Family("4.0", "/v1/ideogram-v4/generate", json.dumps(
        {"text_prompt": PROMPT, "rendering_speed": "TURBO", "resolution": RESOLUTION, "seed": SEED}).encode()),
    "v2/i4": Family("v2/i4", "/v2/image/generate/ideogram-4", json.dumps(
        {"prompt": PROMPT, "rendering_speed": "turbo", "resolution": RESOLUTION, "num_images": 1, "seed": SEED,
         "magic_prompt": "off"}).encode()),
    "v2/i3": Family("v2/i3", "/v2/image/generate/ideogram-3", json.dumps(
        {"prompt": PROMPT, "rendering_speed": "turbo", "resolution": RESOLUTION, "num_images": 1, "seed": SEED,
         "magic_prompt": "off"}).encode()),
}
assert json.loads(relay.BODY)["seed"] == SEED and json.loads(relay.BODY)["resolution"] == RESOLUTION


# ---------------------------------------------------------------- one operation (relay.one_op, per family)


async def one_op(conn: "relay.Conn", host: str, port: int, family: Family, head: bytes,
                 sample: "relay.Sample") -> None:
    """Generate, then download the returned image over the same connection (relay.one_op with the
    family's path and body; every family answers ``data[0].url``)."""
    status, headers, data = await conn.request(head, family.body)
    if status != 200:
        raise relay.HttpError(f"{family.name}: generate answered {status}: {data[:300]!r}")
    overhead = headers.get(b"x-ideohub-overhead-ms")
    if overhead is not None:
        sample.overhead_ms.append(float(overhead))
    url = urlsplit(json.loads(data)["data"][0]["url"])
    if (url.hostname, url.port) != (host, port):
        raise relay.HttpError(f"{family.name}: image URL on another host: {url.geturl()}")
    path = url.path + ("?" + url.query if url.query else "")
    status, _headers, png = await conn.request(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    if status != 200 or not png.startswith(relay.PNG_MAGIC):
        raise relay.HttpError(f"{family.name}: image download answered {status} ({len(png)} bytes)")
    if not sample.png_bytes:
        sample.png_bytes, sample.png_sha256 = len(png), hashlib.sha256(png).hexdigest()


async def run_sequential(host: str, port: int, key: str, family: Family, n: int) -> "relay.Sample":
    """Concurrency 1: ``n`` operations back to back on one persistent connection."""
    sample = relay.Sample()
    conn = relay.Conn(host, port)
    await conn.open()
    head = (f"POST {family.path} HTTP/1.1\r\nHost: {host}:{port}\r\nApi-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(family.body)}\r\n\r\n").encode()
    clock = time.perf_counter
    try:
        started = clock()
        for _ in range(n):
            t0 = clock()
            await one_op(conn, host, port, family, head, sample)
            sample.latencies_ms.append((clock() - t0) * 1000)
        sample.seconds = clock() - started
        sample.ops = n
    finally:
        await conn.close()
    return sample


# ---------------------------------------------------------------- the dialects alone, in-process


def parse_timing(names: list[str], loops: int, repeats: int = 5) -> dict[str, float]:
    """Microseconds per parse of each family's body by the parser its path uses in ideohub
    (``api.dialects``: v3.parse_generate for 3.0, spec.parse for 4.0 and /v2), JSON already decoded:
    the best of ``repeats`` runs of ``loops`` parses. What the dialect alone costs per request."""
    from ideohub.api.dialects import Fields, all_endpoints
    from ideohub.media.decode import ImageLimits

    endpoints = {e.path: e for e in all_endpoints()}
    limits = ImageLimits()
    out: dict[str, float] = {}
    for name in names:
        parse, body = endpoints[FAMILIES[name].path].parse, json.loads(FAMILIES[name].body)
        parse(Fields.from_json_object(body, limits))  # validators built, caches filled
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(loops):
                parse(Fields.from_json_object(body, limits))
            best = min(best, (time.perf_counter() - t0) / loops)
        out[name] = best * 1e6
    return out


# ---------------------------------------------------------------- measuring and reporting


async def bench(args: argparse.Namespace, port: int, key: str, names: list[str]) -> dict[str, object]:
    host = "127.0.0.1"
    for name in names:  # warm-up: connections, caches, SQLite pages, schema validators, lazily built state
        await run_sequential(host, port, key, FAMILIES[name], args.warmup)
    res: dict[str, list[relay.Sample]] = {name: [] for name in names}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            res[name].append(await relay.measured(run_sequential, host, port, key, FAMILIES[name], args.ops))
        print(f"  round {r + 1}/{args.rounds} ({' '.join(order)}): p50 " + " / ".join(
            f"{relay.percentile(res[n][-1].latencies_ms, 50):.2f}" for n in names) + " ms, ideohub CPU " + " / ".join(
            f"{1000 * res[n][-1].cpu_s['ideohub'] / res[n][-1].ops:.2f}" for n in names)
            + f" ms/op ({' / '.join(names)})", flush=True)
    return {"samples": res, "load": (load_before, os.getloadavg()[0]), "seconds": time.monotonic() - started}


def report(args: argparse.Namespace, res: dict[str, object], names: list[str]) -> bool:
    samples: dict[str, list[relay.Sample]] = res["samples"]  # type: ignore[assignment]
    med = statistics.median
    base = names[0]

    def lat(name: str, pct: float) -> list[float]:
        return [relay.percentile(s.latencies_ms, pct) for s in samples[name]]

    def cpu(name: str, proc: str) -> list[float]:
        return [1000 * s.cpu_s.get(proc, float("nan")) / s.ops for s in samples[name]]

    def ratios(per_round, name: str) -> list[float]:  # type: ignore[no-untyped-def]
        return [a / b for a, b in zip(per_round(name), per_round(base))]

    def ratio(per_round) -> dict[str, str]:  # type: ignore[no-untyped-def]
        return {n: f"x{med(ratios(per_round, n)):.2f}" for n in names}

    def quartiles(values: list[float]) -> str:
        if len(values) < 2:
            return f"{values[0]:.2f}"
        q = statistics.quantiles(values, n=4)
        return f"{q[0]:.2f}-{q[2]:.2f}"

    rows: list[tuple[str, dict[str, float], dict[str, str] | None]] = [
        ("latency p50 (ms)", {n: med(lat(n, 50)) for n in names}, ratio(lambda n: lat(n, 50))),
        ("latency p99 (ms)", {n: med(lat(n, 99)) for n in names}, None),
        ("CPU ms/op: ideohub", {n: med(cpu(n, "ideohub")) for n in names}, ratio(lambda n: cpu(n, "ideohub"))),
        ("CPU ms/op: sim", {n: med(cpu(n, "sim")) for n in names}, None),
        ("CPU ms/op: client", {n: med(cpu(n, "client")) for n in names}, None),
        ("X-Ideohub-Overhead-Ms median", {n: med([x for s in samples[n] for x in s.overhead_ms] or [float("nan")])
                                          for n in names}, None),
    ]
    cpu_spread = {n: quartiles(ratios(lambda m: cpu(m, "ideohub"), n)) for n in names}
    pngs = {(samples[n][0].png_bytes, samples[n][0].png_sha256) for n in names}
    same = len(pngs) == 1
    load = res["load"]  # type: ignore[index]

    width = 30 + 18 * len(names)
    print()
    print("=" * width)
    print(f"ideohub per family: generate (1 image {RESOLUTION}, seed {SEED}) + image GET, relayed to the sim, "
          f"concurrency 1, loopback, no injected latency; PNG {samples[base][0].png_bytes} bytes, "
          f"{'the same bytes for every family' if same else 'DIFFERENT bytes across families'}")
    print(f"machine : {relay.cpu_model()}, {os.cpu_count()} cores, {relay.memory_gib()}, "
          f"{platform.system()} {platform.release()}")
    print(f"versions: {relay.versions()}")
    print(f"method  : {args.rounds} rounds of {args.ops} ops per family, family order reversing every round; "
          f"medians over rounds; x{base} = median of per-round ratios ({res['seconds']:.0f} s)")
    print(f"load    : 1-min load average {load[0]:.1f} before, {load[1]:.1f} after (includes other work on the "
          "machine)")
    for n in names:
        print(f"  {n:7} POST {FAMILIES[n].path}")
    print("-" * width)
    print(f"{'':30}" + "".join(f"{n:>11}{'x' + base:>7}" for n in names))
    for label, values, extra in rows:
        print(f"{label:30}" + "".join(f"{values[n]:11.2f}{(extra or {}).get(n, ''):>7}" for n in names))
    print(f"{'CPU x' + base + ', quartiles/rounds':30}" + "".join(f"{cpu_spread[n]:>18}" for n in names))
    parse_us: dict[str, float] = res.get("parse_us") or {}  # type: ignore[assignment]
    if parse_us:
        print(f"{'dialect parse, in-process (us)':30}" + "".join(f"{parse_us[n]:11.1f}{'':7}" for n in names))
    print("=" * width)
    return same


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--ops", type=int, default=125, help="operations per family per round (concurrency 1)")
    p.add_argument("--warmup", type=int, default=60, help="warm-up operations per family")
    p.add_argument("--families", default=",".join(FAMILIES),
                   help=f"comma-separated, the first is the ratios' base (default {','.join(FAMILIES)})")
    p.add_argument("--quick", action="store_true", help="a smoke run: 4 rounds of 50 ops")
    p.add_argument("--parse-loops", type=int, default=2000,
                   help="in-process parses per family and repeat for the dialect timing (0: skip it)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (data dir, server log)")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.ops, args.warmup, args.parse_loops = 4, 50, 20, min(args.parse_loops, 300)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        p.error(f"--families: unknown {unknown or 'none given'}; choose among {', '.join(FAMILIES)}")

    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None

    tmp = Path(tempfile.mkdtemp(prefix="ideohub-bench-families-"))
    sim = relay.SimulatedUpstream(relay.SimConfig(api_keys=(relay.SIM_KEY,), warm_sizes=(RESOLUTION,),
                                                  record_requests=False), subprocess=True)
    server = None
    ok = False
    try:
        sim.start()
        server = relay.IdeohubServer(sim.base_url, tmp / "data")
        channels = json.loads(server.env["IDEOHUB_CHANNELS"])
        for channel in channels:
            channel["operations"] = OPERATIONS  # a relay channel without a list serves legacy and 3.0 only
        server.env["IDEOHUB_CHANNELS"] = json.dumps(channels)
        server.start()
        assert server.proc is not None
        relay.PIDS.clear()
        relay.PIDS.update(client=None, sim=relay.sim_pid(sim), ideohub=server.proc.pid)
        print(f"sim {sim.base_url} (pid {relay.PIDS['sim']}), ideohub http://127.0.0.1:{server.port} "
              f"(pid {server.proc.pid}), temporary directory {tmp}", flush=True)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            res = runner.run(bench(args, server.port, server.key, names))
        if args.parse_loops > 0:  # after the servers' phases: it runs in this process, on the same CPUs
            res["parse_us"] = parse_timing(names, args.parse_loops)
        ok = report(args, res, names)
    finally:
        if server is not None:
            server.stop()
        sim.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
