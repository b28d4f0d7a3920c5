"""The fleet (issue 9): async submissions, generations completed per second by 1 and 2 workers,
and the take-over of a SIGKILLed worker's generation, on the real queue, PostgreSQL and Redis.

What runs, each in its own process, over one temporary data directory (local-disk images, as a
one-machine fleet shares it), a scratch PostgreSQL database ``ideohub_bench_<hex>`` (migrated by
``db.upgrade``, dropped afterwards) and a Redis database of its own (``--redis-db``, flushed
before and after):

* one API instance: ``ideohub serve`` (``queue_url`` set, so it only admits and enqueues);
* workers: the ``ideohub worker`` command (``--operations v3-generate``, ``worker_concurrency``
  16) run by ``python bench/tasks.py --serve-worker``, which first registers a ``noop`` engine
  factory (``engines.registry.FACTORIES``) so that ``IDEOHUB_ENGINES={"v3-generate": "noop"}``
  selects it: the configuration has no engine that does nothing, and the point is to measure
  the queue, the database and the stages, not an upstream. The no-op returns one 1x1 PNG with
  ``is_image_safe=True`` at once, or after N seconds for a prompt starting ``sleep N``;
* the load generator (this process, uvloop): ``--concurrency`` keep-alive connections (one API
  key and funded account each) posting ``/v1/ideogram-v3/generate?async=true`` back to back.

Phases, for 1 worker and then 2 (a warm-up of 50 generations first, untimed):

* ``live``    the workers run while ``--gens`` generations are submitted; completed/s is
              gens / (last ``finished_at`` - first submission): admission and execution together;
* ``backlog`` the workers are SIGSTOPped, ``--gens`` generations are submitted (submission
              latency with no worker competing for the CPU), then SIGCONTed: completed/s is
              gens / (last ``finished_at`` - SIGCONT): what the workers alone sustain.

Submission latency is per POST (wall clock, to the ``{generation_id}`` answer). "cpu ms/gen" is
each process's user+system CPU (``/proc``) over the phase per generation: the API instance, the
workers together, the scratch database's PostgreSQL backends and this client. Every generation
must end ``done`` (the table's "failed" column counts the others).

``bench/billing.py``'s reserve+settle on PostgreSQL (a scratch database, ``--accounts`` accounts,
concurrency 32, closed loop) runs in this process before the fleet starts and after it stops;
the target is completed/s with workers >= half of it (one generation is one reserve + one settle
plus the rest of its life: admission, claim, storage, completion).

Take-over: with both workers alive, one ``sleep 3`` generation is submitted; the worker that
claims it is SIGKILLed; the time until the record shows another owner with ``runs == 2``, and
until it is ``done``, are measured. The lease is the fleet's ``stale_after_s`` (default the
shipped 30 s, heartbeat_s 10, reconcile_interval_s 5); the target is <= 30 s + the lease.

Run (PostgreSQL on 127.0.0.1:5432 with trust auth, Redis on 127.0.0.1:6379; ~2-3 minutes):

    . .venv/bin/activate && python bench/tasks.py
    python bench/tasks.py --quick          (fewer generations, a 5 s lease: ~1.5 minutes)
    IDEOHUB_TEST_POSTGRES_URL=postgresql://u@host/db IDEOHUB_TEST_REDIS_URL=redis://host:6379/0 python bench/tasks.py
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from billing import Scratch, machine, run_scenario  # noqa: E402
from billing import versions as db_versions  # noqa: E402
from relay import Conn, cpu_seconds, free_port, percentile  # noqa: E402

GENERATE = "/v1/ideogram-v3/generate?async=true"
SLEEP = re.compile(r"^sleep (\d+(?:\.\d+)?)")
WARMUP = 50
CLIENT = "client"


# ---------------------------------------------------------------- the no-op engine (in the worker processes)


def _tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 120, 40)).save(buf, "PNG")
    return buf.getvalue()


class NoopEngine:
    """Answers at once with one tiny PNG, judged safe; ``sleep N`` in front of the prompt waits N s first."""

    name = "noop"

    def __init__(self) -> None:
        self.png = _tiny_png()

    async def run(self, request: Any, ctx: Any) -> Any:
        from ideohub.domain.operations import ImageOutput, ImageResult

        if m := SLEEP.match(request.prompt or ""):
            await asyncio.sleep(float(m[1]))
        return ImageResult([ImageOutput(self.png, "image/png", request.output_size, request.prompt,
                                        request.seed or 0, is_image_safe=True)])


def serve_worker() -> None:
    """``--serve-worker``: the ``ideohub worker`` command with the ``noop`` engine registered."""
    from ideohub.cli import app
    from ideohub.domain.operations import Operation
    from ideohub.engines import registry

    registry.FACTORIES["noop"] = lambda _res: {Operation.V3_GENERATE: NoopEngine()}
    app(["worker", "--operations", "v3-generate", "--drain-seconds", "1"], prog_name="ideohub")


# ---------------------------------------------------------------- the fleet's processes


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "wb") as fh:
            self.popen = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
        self.worker_id = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


class Fleet:
    def __init__(self, args: argparse.Namespace, pg_url: str, queue_url: str, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}  # no stray settings
        self.env = {
            **inherited,
            "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT / "src"), os.environ.get("PYTHONPATH")))),
            "IDEOHUB_DATA_DIR": str(tmp / "data"),
            "IDEOHUB_DATABASE_URL": pg_url,
            "IDEOHUB_QUEUE_URL": queue_url,
            "IDEOHUB_SECRET_KEY": secrets.token_urlsafe(32),
            "IDEOHUB_HOST": "127.0.0.1",
            "IDEOHUB_PORT": str(self.port),
            "IDEOHUB_PUBLIC_BASE_URL": self.base,  # the links a worker signs point at the API instance
            "IDEOHUB_LOG_LEVEL": "WARNING",
            "IDEOHUB_SAFETY_CHECK": "false",
            "IDEOHUB_MAX_PENDING_PER_ACCOUNT": "1000000",  # the bounds are not what is measured
            "IDEOHUB_MAX_PENDING": "1000000",
            "IDEOHUB_HEARTBEAT_S": str(args.heartbeat),
            "IDEOHUB_STALE_AFTER_S": str(args.stale_after),
            "IDEOHUB_RECONCILE_INTERVAL_S": str(args.reconcile_interval),
            "IDEOHUB_WORKER_CONCURRENCY": str(args.worker_concurrency),
        }
        self.api: Proc | None = None
        self.workers: list[Proc] = []

    def settings(self) -> Any:
        from ideohub.config import Settings

        env = self.env
        return Settings(data_dir=Path(env["IDEOHUB_DATA_DIR"]), database_url=env["IDEOHUB_DATABASE_URL"],
                        secret_key=env["IDEOHUB_SECRET_KEY"], queue_url=env["IDEOHUB_QUEUE_URL"])

    async def funded_keys(self, n: int) -> list[str]:
        """One account (topped up) and key per client connection, so no account row is shared."""
        from ideohub.runtime import Runtime
        from ideohub.store.ledger import Ledger

        rt = Runtime(self.settings())
        try:
            repo = await rt.repo()  # the first process opens (creates) the database's secrets
            ledger = Ledger(repo.session)
            keys = []
            for i in range(n):
                account = await ledger.create_account(f"bench-{i}")
                await ledger.topup(account.id, 10**12)
                _row, key = await repo.create_key(f"bench-{i}", account_id=account.id)
                keys.append(key)
            return keys
        finally:
            await rt.aclose()

    def start_api(self) -> None:
        self.api = Proc("api", [sys.executable, "-m", "ideohub.cli", "serve"], self.env, self.tmp / "api.log")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            self.api.check()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("ideohub serve did not become ready within 90 s")

    def start_worker(self) -> Proc:
        n = len(self.workers) + 1
        env = {**self.env, "IDEOHUB_ENGINES": json.dumps({"v3-generate": "noop"})}
        w = Proc(f"worker {n}", [sys.executable, str(Path(__file__).resolve()), "--serve-worker"], env,
                 self.tmp / f"worker-{n}.log")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # it prints "ideohub worker <id> serving ..." once announced
            w.check()
            if m := re.search(r"ideohub worker (\S+) serving", w.log.read_text(errors="replace")):
                w.worker_id = m[1]
                self.workers.append(w)
                return w
            time.sleep(0.1)
        raise RuntimeError(f"{w.name} did not become ready within 90 s:\n{w.log.read_text()[-3000:]}")

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.popen.poll() is None]

    def pids(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {CLIENT: None}
        if self.api is not None:
            out["api"] = self.api.pid
        for w in self.live_workers():
            out[w.name] = w.pid
        return out

    def stop(self) -> None:
        for p in [*self.workers, *([self.api] if self.api else [])]:
            p.stop()


# ---------------------------------------------------------------- measuring


@dataclass
class Phase:
    name: str
    workers: int
    gens: int
    latencies_ms: list[float] = field(default_factory=list)
    submit_s: float = 0.0
    run_s: float = 0.0  # first submission (live) or SIGCONT (backlog) → last finished_at
    done: int = 0
    failed: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per generation, by process group

    @property
    def completed_per_s(self) -> float:
        return self.done / self.run_s if self.run_s > 0 else float("nan")


class Database:
    """Polls the scratch database (psycopg, autocommit) and reads its backends' CPU."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: Any = None

    async def __aenter__(self) -> "Database":
        import psycopg

        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()

    async def states(self, gids: list[str]) -> tuple[int, int, int, float | None]:
        """(done, failed, queued, last finished_at as a Unix time) of these generations."""
        cur = await self.conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'failed'), "
            "count(*) FILTER (WHERE state = 'queued'), max(finished_at) FROM requests WHERE generation_id = ANY(%s)",
            (gids,))
        done, failed, queued, last = await cur.fetchone()
        return done, failed, queued, (last.timestamp() if last is not None else None)

    async def record(self, gid: str) -> tuple[str, str | None, int]:
        cur = await self.conn.execute("SELECT state, owner, coalesce(runs, 0) FROM requests WHERE generation_id = %s",
                                      (gid,))
        row = await cur.fetchone()
        return (row[0], row[1], row[2]) if row else ("missing", None, 0)

    async def sessions(self) -> int | None:
        """Connections ever opened to this database (PostgreSQL 14+), to see pool churn."""
        try:
            cur = await self.conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            return int((await cur.fetchone())[0])
        except Exception:  # noqa: BLE001 - an older server: not shown
            return None

    async def backend_cpu(self) -> float | None:
        cur = await self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        total = 0.0
        for (pid,) in await cur.fetchall():
            value = cpu_seconds(pid)
            if value != value:  # nan: not on this machine, or gone
                return None
            total += value
        return total

    async def wait(self, gids: list[str], budget_s: float) -> tuple[int, int, float | None]:
        deadline = time.monotonic() + budget_s
        while True:
            done, failed, _queued, last = await self.states(gids)
            if done + failed >= len(gids) or time.monotonic() > deadline:
                return done, failed, last
            await asyncio.sleep(0.1)


async def submit(base_port: int, keys: list[str], tag: str, n: int, lat: list[float]) -> list[str]:
    """``n`` async submissions over ``len(keys)`` connections (one key each), back to back."""
    gids: list[str] = []
    nxt = iter(range(n))

    async def one_connection(key: str) -> None:
        conn = Conn("127.0.0.1", base_port)
        await conn.open()
        try:
            for i in nxt:
                body = json.dumps({"prompt": f"{tag} {i}", "rendering_speed": "TURBO"}).encode()
                head = (f"POST {GENERATE} HTTP/1.1\r\nHost: 127.0.0.1:{base_port}\r\nApi-Key: {key}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                t0 = time.perf_counter()
                status, _h, data = await conn.request(head, body)
                lat.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    raise RuntimeError(f"submission answered {status}: {data[:300]!r}")
                gids.append(json.loads(data)["generation_id"])
        finally:
            await conn.close()

    await asyncio.gather(*(one_connection(k) for k in keys))
    return gids


class CpuMeter:
    def __init__(self, fleet: Fleet, db: Database) -> None:
        self.fleet, self.db = fleet, db

    async def __aenter__(self) -> "CpuMeter":
        self.pids = self.fleet.pids()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.pg_before = await self.db.backend_cpu()
        self.sessions_before = await self.db.sessions()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.after = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.pg_after = await self.db.backend_cpu()
        self.sessions_after = await self.db.sessions()

    def per_gen(self, n: int) -> dict[str, float]:
        d = {name: self.after[name] - self.before[name] for name in self.pids}
        out = {"api": d.get("api", float("nan")), "workers": sum(v for k, v in d.items() if k.startswith("worker")),
               "client": d[CLIENT]}
        pg = (self.pg_after - self.pg_before) if self.pg_before is not None and self.pg_after is not None else None
        out["postgres"] = pg if pg is not None and pg >= 0 else float("nan")  # backends that closed: unknown
        per = {k: 1000 * v / n for k, v in out.items()}
        if self.sessions_before is not None and self.sessions_after is not None:
            per["connections"] = (self.sessions_after - self.sessions_before) / n
        else:
            per["connections"] = float("nan")
        return per


async def phase_live(fleet: Fleet, db: Database, keys: list[str], n: int) -> Phase:
    ph = Phase("live", len(fleet.live_workers()), n)
    async with CpuMeter(fleet, db) as meter:
        t0_wall, t0 = time.time(), time.perf_counter()
        gids = await submit(fleet.port, keys, f"live-{ph.workers}", n, ph.latencies_ms)
        ph.submit_s = time.perf_counter() - t0
        ph.done, ph.failed, last = await db.wait(gids, budget_s=120 + n)
    ph.run_s = (last - t0_wall) if last else float("nan")
    ph.cpu_ms = meter.per_gen(n)
    return ph


async def phase_backlog(fleet: Fleet, db: Database, keys: list[str], n: int) -> Phase:
    workers = fleet.live_workers()
    ph = Phase("backlog", len(workers), n)
    async with CpuMeter(fleet, db) as meter:  # stopped workers use no CPU while the backlog builds
        for w in workers:
            os.kill(w.pid, signal.SIGSTOP)
        try:
            t0 = time.perf_counter()
            gids = await submit(fleet.port, keys, f"backlog-{ph.workers}", n, ph.latencies_ms)
            ph.submit_s = time.perf_counter() - t0
            _d, _f, queued, _last = await db.states(gids)
            if queued != n:
                raise RuntimeError(f"{queued} of {n} generations queued before the workers resumed")
        finally:
            t0_wall = time.time()
            for w in workers:
                os.kill(w.pid, signal.SIGCONT)
        ph.done, ph.failed, last = await db.wait(gids, budget_s=120 + n)
    ph.run_s = (last - t0_wall) if last else float("nan")
    ph.cpu_ms = meter.per_gen(n)
    return ph


@dataclass
class Takeover:
    victim: str = ""
    claimed_s: float = float("nan")
    done_s: float = float("nan")
    state: str = ""
    runs: int = 0
    requeued_by_reconciler: bool = False


async def takeover(fleet: Fleet, db: Database, key: str, sleep_s: float, budget_s: float) -> Takeover:
    """SIGKILL the worker running a ``sleep`` generation; time until another worker runs it."""
    res = Takeover()
    conn = Conn("127.0.0.1", fleet.port)
    body = json.dumps({"prompt": f"sleep {sleep_s:g} takeover", "rendering_speed": "TURBO"}).encode()
    head = (f"POST {GENERATE} HTTP/1.1\r\nHost: 127.0.0.1:{fleet.port}\r\nApi-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    status, _h, data = await conn.request(head, body)
    await conn.close()
    if status != 200:
        raise RuntimeError(f"submission answered {status}: {data[:300]!r}")
    gid = json.loads(data)["generation_id"]
    deadline = time.monotonic() + 30
    while True:
        state, owner, _runs = await db.record(gid)
        if state == "running" and owner:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the generation was never claimed (state {state})")
        await asyncio.sleep(0.02)
    victim = next(w for w in fleet.workers if w.worker_id == owner)
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    victim.popen.wait(timeout=10)
    res.victim = f"{victim.name} ({owner})"
    deadline = killed + budget_s
    while time.monotonic() < deadline:
        state, owner2, runs = await db.record(gid)
        if res.claimed_s != res.claimed_s and runs >= 2 and owner2 and owner2 != owner:
            res.claimed_s = time.monotonic() - killed
        if state in ("done", "failed"):
            res.done_s = time.monotonic() - killed
            res.state, res.runs = state, runs
            break
        await asyncio.sleep(0.05)
    else:
        res.state, res.runs = state, runs
    logs = [p.log for p in fleet.live_workers()] + ([fleet.api.log] if fleet.api else [])
    res.requeued_by_reconciler = any(re.search(r"'requeued': [1-9]", p.read_text(errors="replace")) for p in logs)
    return res


# ---------------------------------------------------------------- reporting


def lib_versions(queue_url: str) -> str:
    import redis

    out = []
    for name in ("taskiq", "taskiq-redis", "redis", "uvicorn", "uvloop", "fastapi"):
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        out.append(f"Redis server {redis.Redis.from_url(queue_url).info('server')['redis_version']}")
    except redis.RedisError:
        pass
    return ", ".join(out)


def fmt(x: float, spec: str = ".1f") -> str:
    return "-" if x != x else format(x, spec)


def report(args: argparse.Namespace, phases: list[Phase], billing: list[float], take: Takeover | None,
           seconds: float, load: tuple[float, float]) -> bool:
    bill = statistics.mean(billing) if billing else float("nan")
    head = (f"{'phase':<8} {'workers':>7} {'gens':>5} {'submit/s':>8} {'sub p50':>7} {'sub p99':>7} {'done/s':>7} "
            f"{'vs bill':>7} {'failed':>6}   cpu ms/gen: {'api':>5} {'workers':>7} {'pg*':>5} {'client':>6}"
            f" {'conn/gen':>8}")
    print()
    print("=" * len(head))
    print(f"ideohub fleet: async v3-generate through the queue, no-op engine (1x1 PNG), "
          f"{args.concurrency} client connections")
    print(f"machine : {machine()}")
    print(f"settings: heartbeat_s {args.heartbeat:g}, stale_after_s (the lease) {args.stale_after:g}, "
          f"reconcile_interval_s {args.reconcile_interval:g}, worker_concurrency {args.worker_concurrency}; "
          f"{args.gens} generations per phase ({seconds:.0f} s in all; 1-min load {load[0]:.1f} before, "
          f"{load[1]:.1f} after)")
    print("-" * len(head))
    print(head)
    ok = True
    for ph in phases:
        ratio = ph.completed_per_s / bill if bill == bill else float("nan")
        ok &= ph.failed == 0 and ph.done == ph.gens
        print(f"{ph.name:<8} {ph.workers:>7} {ph.gens:>5} {ph.gens / ph.submit_s:>8.0f} "
              f"{percentile(ph.latencies_ms, 50):>7.1f} {percentile(ph.latencies_ms, 99):>7.1f} "
              f"{fmt(ph.completed_per_s, '.0f'):>7} {fmt(ratio, '.2f'):>7} {ph.gens - ph.done:>6}   "
              f"{'':>11} {fmt(ph.cpu_ms['api']):>5} {fmt(ph.cpu_ms['workers']):>7} {fmt(ph.cpu_ms['postgres']):>5} "
              f"{fmt(ph.cpu_ms['client']):>6} {fmt(ph.cpu_ms['connections'], '.2f'):>8}")
    print("-" * len(head))
    print("pg*: the scratch database's backends alive at both ends of the phase (a closed one's CPU is not seen); "
          "conn/gen: PostgreSQL connections opened per generation (pg_stat_database.sessions)")
    print(f"billing.py reserve+settle on PostgreSQL ({args.accounts} accounts, concurrency 32, closed loop): "
          + " / ".join(f"{b:.0f}" for b in billing) + f" ops/s (before / after the fleet); mean {bill:.0f}")
    best2 = max((ph.completed_per_s for ph in phases if ph.workers == 2), default=float("nan"))
    target_ok = best2 >= 0.5 * bill
    print(f"{'PASS' if target_ok else 'FAIL'}  completed/s with 2 workers (best phase) {best2:.0f} >= half of "
          f"reserve+settle ({0.5 * bill:.0f})")
    if take is not None:
        limit = 30 + args.stale_after
        take_ok = take.state == "done" and take.claimed_s <= limit
        how = ("the reconciler re-queued it" if take.requeued_by_reconciler
               else "the stream's pending message was re-claimed")
        print(f"{'PASS' if take_ok else 'FAIL'}  SIGKILL of {take.victim} -> running on the other worker (runs == 2): "
              f"{fmt(take.claimed_s)} s; -> {take.state or 'not done'} after {fmt(take.done_s)} s "
              f"(the generation sleeps {args.sleep:g} s; lease {args.stale_after:g} s; target <= {limit:g} s; {how})")
        ok &= take_ok
    print("=" * len(head))
    return ok and target_ok


# ---------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--gens", type=int, help="generations per phase (default 300; --quick 150)")
    p.add_argument("--concurrency", type=int, default=16, help="client connections (one key and account each)")
    p.add_argument("--accounts", type=int, default=16, help="accounts of the billing.py comparison")
    p.add_argument("--billing-ops", type=int, help="timed reserve+settle operations per billing run (1500; 300)")
    p.add_argument("--heartbeat", type=float, help="heartbeat_s of the fleet (the shipped 10; --quick 1)")
    p.add_argument("--stale-after", type=float, help="stale_after_s of the fleet, the lease (the shipped 30; 5)")
    p.add_argument("--reconcile-interval", type=float, help="reconcile_interval_s of the fleet (the shipped 5; 1)")
    p.add_argument("--worker-concurrency", type=int, default=16)
    p.add_argument("--sleep", type=float, default=3.0, help="how long the take-over's generation runs")
    p.add_argument("--no-takeover", action="store_true", help="skip the SIGKILL measurement")
    p.add_argument("--quick", action="store_true", help="150 generations per phase, 300 billing ops, a 5 s lease")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (data dir, logs)")
    p.add_argument("--postgres-url", default=os.environ.get("IDEOHUB_TEST_POSTGRES_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/test"))
    p.add_argument("--redis-url", default=os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--redis-db", type=int, default=9, help="the Redis database the fleet's queue uses (flushed)")
    p.add_argument("--serve-worker", action="store_true", help=argparse.SUPPRESS)  # a worker process itself
    args = p.parse_args()
    if args.serve_worker:
        serve_worker()
        return 0
    defaults = (150, 300, 1.0, 5.0, 1.0) if args.quick else (300, 1500, 10.0, 30.0, 5.0)
    for name, value in zip(("gens", "billing_ops", "heartbeat", "stale_after", "reconcile_interval"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)

    import redis
    import uvloop

    queue_url = f"{args.redis_url.rsplit('/', 1)[0]}/{args.redis_db}"
    redis.Redis.from_url(queue_url).flushdb()
    print(f"machine: {machine()}")
    for line in db_versions(args.postgres_url):
        print(line)
    print(lib_versions(queue_url), flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="ideohub-bench-tasks-"))
    billing: list[float] = []
    phases: list[Phase] = []
    take: Takeover | None = None
    load0, started = os.getloadavg()[0], time.monotonic()

    def bill() -> None:
        with (Scratch("postgresql", args.postgres_url, tmp) as url,
              asyncio.Runner(loop_factory=uvloop.new_event_loop) as r):
            res = r.run(run_scenario(url, "postgresql", "reserve+settle", args.accounts, 32, args.billing_ops,
                                     min(300, args.billing_ops // 5), None, 32))
        if not res.correct or res.errors:
            raise RuntimeError(f"billing.py scenario went wrong: {res.problems[:3]} {res.errors}")
        billing.append(res.ops_per_s)
        print(f"  billing.py reserve+settle: {res.ops_per_s:.0f} ops/s, p50 {res.pct(50):.1f} ms", flush=True)

    try:
        bill()
        with Scratch("postgresql", args.postgres_url, tmp) as pg_url:
            fleet = Fleet(args, pg_url, queue_url, tmp)
            try:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    keys = runner.run(fleet.funded_keys(args.concurrency))
                fleet.start_api()
                fleet.start_worker()
                print(f"API instance {fleet.base} (pid {fleet.api.pid}), worker 1 pid {fleet.workers[0].pid}; "
                      f"temporary directory {tmp}", flush=True)

                async def measure() -> None:
                    nonlocal take
                    async with Database(pg_url) as db:
                        for n_workers in (1, 2):
                            if n_workers == 2:
                                w = fleet.start_worker()
                                print(f"worker 2 pid {w.pid}", flush=True)
                            warm = await submit(fleet.port, keys, f"warm-{n_workers}", WARMUP, [])
                            await db.wait(warm, 60)
                            for run in (phase_live, phase_backlog):
                                ph = await run(fleet, db, keys, args.gens)
                                phases.append(ph)
                                print(f"  {ph.name:<8} {ph.workers} worker(s): submit p50 "
                                      f"{percentile(ph.latencies_ms, 50):.1f} ms p99 "
                                      f"{percentile(ph.latencies_ms, 99):.1f} ms, "
                                      f"{fmt(ph.completed_per_s, '.0f')} completed/s, {ph.failed} failed", flush=True)
                        if not args.no_takeover:
                            take = await takeover(fleet, db, keys[0], args.sleep, budget_s=60 + 3 * args.stale_after)
                            print(f"  take-over: {fmt(take.claimed_s)} s to run elsewhere, {fmt(take.done_s)} s to "
                                  f"{take.state}", flush=True)

                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    runner.run(measure())
            finally:
                fleet.stop()
        bill()
    finally:
        redis.Redis.from_url(queue_url).flushdb()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = report(args, phases, billing, take, time.monotonic() - started, (load0, os.getloadavg()[0]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
