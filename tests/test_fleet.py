"""A fleet on loopback (issue 9): PostgreSQL, Redis, an S3 server (moto), two ``ideohub serve``
and two ``ideohub worker`` subprocesses, the simulated upstream as the channel, and a webhook
receiver; the account and key are made by CLI runs over a third data directory.

200 generations — synchronous, polled and webhook, over both API instances, 16 at a time — and,
while they run, one worker is SIGKILLed holding generations and one API instance is SIGKILLed
holding synchronous callers. Afterwards every generation has ended, the money adds up to the
micro-dollar, nothing was charged twice, every result is served by the surviving instance and by
the killed one's replacement, every webhook arrived signed, and what the killed worker held was
finished by the other one. Prints the time from the worker's SIGKILL until its generations were
claimed again (``-s`` shows it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import redis
from psycopg.rows import dict_row
from conftest import free_port, sim_channel
from notify.receiver import Receiver
from notify.verifier import fetch_jwks, verify
from s3 import s3_server  # noqa: F401  (a fixture)

from ideohub.sim import Fault

V3 = "/v1/ideogram-v3/generate"
REDIS_URL = os.environ.get("IDEOHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_DB = 7  # the fleet's own database number, emptied first (test_queue uses 5)
SECRET_KEY = "fleet-test-master-secret-0123456789abcdefghij"
PUBLIC = "http://ideohub-fleet.invalid"  # the load balancer's name: links are fetched by path from each instance
GENERATIONS = 200
STALE_AFTER_S = 3.0
AT_ONCE = 16
TOPUP_USD = 20
PRICE = {"TURBO": 30_000, "DEFAULT": 60_000, "QUALITY": 90_000}  # micro-dollars per V3 image (list prices)
UPSTREAM_REJECTS = 8  # the first upstream calls answer 400: those generations fail, refunded
WORKER_LINE = re.compile(r"ideohub worker (\S+) serving")
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request otherwise


# ---------------------------------------------------------------- processes


class Proc:
    """One ``ideohub`` subprocess; its output goes to a log file (shown when the test fails)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ideohub.cli", *self.args], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Api(Proc):
    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        port = free_port()
        super().__init__(name, ["serve"], {**env, "IDEOHUB_PORT": str(port)}, logs)
        self.base = f"http://127.0.0.1:{port}"
        # an idle connection is dropped by the client well before the server's keep-alive timer (5 s)
        # closes it: a request sent on a connection the server is closing at that instant would fail
        # with no answer and read as "lost" on an instance that lives (CI saw it once)
        self.client = httpx.Client(base_url=self.base, timeout=60, limits=httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0))
        self.killed = False
        self.sync_waiting = 0  # synchronous callers waiting on this instance now
        self._lock = threading.Lock()

    def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.alive, f"{self.name} exited:\n{self.output()[-3000:]}"
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # a starting subprocess: nothing to wait on
        raise AssertionError(f"{self.name} did not start:\n{self.output()[-3000:]}")

    def sync_call(self, fn: Callable[[], httpx.Response]) -> httpx.Response:
        with self._lock:
            self.sync_waiting += 1
        try:
            return fn()
        finally:
            with self._lock:
                self.sync_waiting -= 1

    def kill(self) -> None:
        self.killed = True
        super().kill()

    def stop(self) -> None:
        super().stop()
        self.client.close()


class WorkerProc(Proc):
    id: str = ""

    def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = WORKER_LINE.search(self.output())
            if found:
                self.id = found.group(1)
                return
            assert self.alive, f"{self.name} exited:\n{self.output()[-3000:]}"
            time.sleep(0.1)  # a starting subprocess: nothing to wait on
        raise AssertionError(f"{self.name} did not start:\n{self.output()[-3000:]}")


# ---------------------------------------------------------------- the database, read directly


class Db:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self._lock = threading.Lock()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, args).fetchall()

    def dicts(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self._lock, self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, args).fetchall()

    def one(self, sql: str, *args: Any) -> Any:
        return self.rows(sql, *args)[0][0]

    def running_under(self, owner: str) -> dict[str, datetime]:
        """The generations ``owner`` runs, with its last heartbeat on each."""
        return dict(self.rows("SELECT generation_id, heartbeat_at FROM requests WHERE owner = %s AND state = 'running'",
                              owner))

    def pending(self) -> int:
        return self.one("SELECT count(*) FROM requests WHERE generation_id IS NOT NULL "
                        "AND state NOT IN ('done', 'failed')")


# ---------------------------------------------------------------- the clients


@dataclass
class Job:
    i: int
    mode: str  # sync | poll | webhook
    account: int
    body: dict[str, Any]
    api: str = ""
    generation_id: str | None = None
    outcome: str = ""  # an HTTP status, "lost" (the instance died under the call), or the poll's last status
    lost_by: str = ""  # what the transport raised when the outcome is "lost"
    answer: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


class Clients:
    """Submits the jobs over whichever instances are alive (the preferred one by job number)."""

    def __init__(self, apis: list[Api], keys: list[str], receiver: Receiver) -> None:
        self.apis, self.keys, self.receiver = apis, keys, receiver
        self.finished = 0
        self._lock = threading.Lock()

    def pick(self, i: int) -> Api:
        preferred = self.apis[i % len(self.apis)]
        if not preferred.killed:
            return preferred
        return next(a for a in self.apis if not a.killed)

    def run(self, job: Job) -> Job:
        try:
            self._run(job)
        except Exception as exc:  # reported with the job, not lost in a thread
            job.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self.finished += 1
        return job

    def _run(self, job: Job) -> None:
        api = self.pick(job.i)
        job.api = api.name
        headers = {"Api-Key": self.keys[job.account]}
        if job.mode == "sync":
            try:
                r = api.sync_call(lambda: api.client.post(V3, json=job.body, headers=headers))
            except httpx.TransportError as exc:
                job.outcome, job.lost_by = "lost", f"{type(exc).__name__}: {exc}"
                return
            job.outcome = str(r.status_code)
            job.answer = r.json()
            if r.status_code not in (200, 400):  # 400: the upstream's injected refusals
                job.errors.append(f"sync call answered {r.status_code}: {r.text[:300]}")
            return
        hook = f"/hook/{job.i}"
        body = dict(job.body, webhook_url=self.receiver.url(hook)) if job.mode == "webhook" else job.body
        try:
            r = api.client.post(V3 + ("" if job.mode == "webhook" else "?async=true"), json=body, headers=headers)
        except httpx.TransportError as exc:
            job.outcome, job.lost_by = "lost", f"{type(exc).__name__}: {exc}"
            return
        job.outcome = str(r.status_code)
        if r.status_code != 200:
            job.errors.append(f"async submission answered {r.status_code}: {r.text[:300]}")
            return
        job.generation_id = r.json()["generation_id"]
        if job.mode == "poll":
            self._poll(job, headers)
        else:  # like the other callers, it waits for its answer: at most AT_ONCE generations are pending
            [got] = self.receiver.wait_for(hook, 1, timeout=90)
            job.answer = json.loads(got.body)

    def _poll(self, job: Job, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            api = self.pick(job.i + 1)  # polled on the other instance when it lives
            try:
                r = api.client.get(f"/v1/generations/{job.generation_id}", headers=headers)
            except httpx.TransportError:
                continue  # that instance just died: the next pick is the survivor
            if r.status_code != 200:
                job.errors.append(f"poll answered {r.status_code}: {r.text[:300]}")
                return
            job.answer = r.json()
            job.outcome = job.answer["status"]
            if job.outcome != "pending":
                return
            time.sleep(0.3)  # polling is the interface under test
        job.errors.append("still pending after 90 s of polling")


def jobs() -> list[Job]:
    speeds = ("TURBO", "DEFAULT", "QUALITY")
    out = []
    for i in range(GENERATIONS):
        body = {"prompt": f"fleet picture {i}", "rendering_speed": speeds[i % 3], "num_images": 1 + (i // 3) % 2}
        out.append(Job(i, ("sync", "poll", "webhook")[(i // 2) % 3], (i // 7) % 2, body))
    return out


# ---------------------------------------------------------------- helpers


def wait_until(what: str, check: Callable[[], Any], budget_s: float) -> Any:
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)  # other processes' work: nothing in this process to wait on
    raise AssertionError(f"not in {budget_s:g} s: {what}")


def fleet_redis() -> str:
    url = f"{REDIS_URL.rsplit('/', 1)[0]}/{REDIS_DB}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).flushdb()
    except redis.RedisError as exc:
        if os.environ.get("IDEOHUB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but unreachable at {url}: {exc}")
        pytest.skip(f"Redis unreachable at {url}")
    return url


def link_paths(result: str | None) -> list[str]:
    doc = json.loads(result or "{}")
    paths = []
    for item in doc.get("data", []):
        parts = urlsplit(item["url"])
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC, item["url"]
        paths.append(f"{parts.path}?{parts.query}")
    return paths


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:  # all asked at once, then each waited for
        if p.alive:
            p.proc.terminate()  # type: ignore[union-attr]
    for p in started:
        p.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


# ---------------------------------------------------------------- the test


def test_a_fleet_loses_nothing_when_a_worker_and_an_api_instance_are_killed(
        tmp_path, fresh, pg_url, s3_server, receiver, procs):  # noqa: F811 (the s3_server fixture)
    t0 = time.monotonic()
    sim = fresh[0]
    sim.configure(latency_s=0.3)  # simulated render time: generations are in flight when processes die
    sim.faults(Fault("status", status=400, count=UPSTREAM_REJECTS))
    queue = fleet_redis()
    bucket = s3_server.new_bucket()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    env.update({
        "IDEOHUB_DATABASE_URL": pg_url, "IDEOHUB_SECRET_KEY": SECRET_KEY,
        "IDEOHUB_QUEUE_URL": queue, "IDEOHUB_REDIS_URL": queue, "IDEOHUB_PUBLIC_BASE_URL": PUBLIC,
        "IDEOHUB_ENGINES": '{"*": "relay"}',
        "IDEOHUB_CHANNELS": json.dumps([sim_channel("up", sim, max_in_flight=64, timeout_s=20)]),
        "IDEOHUB_HEARTBEAT_S": "0.5", "IDEOHUB_STALE_AFTER_S": str(STALE_AFTER_S),
        "IDEOHUB_RECONCILE_INTERVAL_S": "0.5",
        "IDEOHUB_MAX_PENDING_PER_ACCOUNT": "1000", "IDEOHUB_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
        "IDEOHUB_WEBHOOK_TIMEOUT_S": "3", "IDEOHUB_WEBHOOK_RETRY_BASE_S": "1",
        "IDEOHUB_LOG_LEVEL": "WARNING",
        **{f"IDEOHUB_{k.upper()}": str(v) for k, v in bucket.settings().items()},
    })

    def data_dir(name: str) -> dict[str, str]:
        return {**env, "IDEOHUB_DATA_DIR": str(tmp_path / name)}

    # the operator: migrate, then accounts and keys from a data directory no server uses
    admin = data_dir("admin")

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "ideohub.cli", *args], env=admin, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, f"ideohub {' '.join(args)}: {out.stderr}"
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""

    cli("db", "upgrade")

    def account(n: int) -> tuple[str, str]:
        acct = cli("accounts", "create", f"fleet-{n}")
        with ThreadPoolExecutor(2) as pool:
            topup = pool.submit(cli, "topup", acct, str(TOPUP_USD))
            key = cli("keys", "create", "--account", acct, "--name", f"fleet-{n}")
            assert topup.result() == str(TOPUP_USD)  # the new balance
        return acct, key

    a = Api("api-a", data_dir("api-a"), logs)
    b = Api("api-b", data_dir("api-b"), logs)
    w1 = WorkerProc("worker-1", ["worker", "--drain-seconds", "5"], data_dir("worker-1"), logs)
    w2 = WorkerProc("worker-2", ["worker", "--drain-seconds", "5"], data_dir("worker-2"), logs)
    # the first processes start with the operator's commands: whichever opens the database first
    # makes the fleet's secrets, the others read them. worker-2 only after worker-1 is up: a worker
    # writes the configured channel at start-up, and two doing it at once on a fresh database collide
    # (ChannelStore.upsert reads, then inserts)
    for p in (a, w1):
        procs.append(p.start())
    with ThreadPoolExecutor(2) as pool:
        made = pool.map(account, range(2))
        w1.ready()
        for p in (b, w2):
            procs.append(p.start())
        accounts_keys = list(made)
    accounts = [acct for acct, _ in accounts_keys]
    for p in (a, b, w2):
        p.ready()
    started_s = time.monotonic() - t0
    db = Db(pg_url)

    def dump_logs() -> None:
        for p in procs:
            print(f"----- {p.name} -----\n{p.output()[-4000:]}")

    try:
        clients = Clients([a, b], [k for _, k in accounts_keys], receiver)
        work = jobs()
        with ThreadPoolExecutor(AT_ONCE) as pool:
            futures = [pool.submit(clients.run, job) for job in work]
            # a worker dies holding generations
            wait_until("worker-1 holds generations after the first 30 ended",
                       lambda: clients.finished >= 30 and len(db.running_under(w1.id)) >= 2, 60)
            w1.kill()
            killed_at = datetime.now(UTC)
            held = db.running_under(w1.id)
            assert held, "worker-1 held nothing when it died"
            # an API instance dies holding synchronous callers
            wait_until("api-b holds synchronous callers", lambda: b.sync_waiting >= 2, 60)
            b.kill()
            for f in futures:
                f.result()
        submitted_s = time.monotonic() - t0
        wait_until("no generation pending", lambda: db.pending() == 0, 90)
        ended_s = time.monotonic() - t0

        problems = [(j.i, j.mode, j.api, j.outcome, j.errors) for j in work if j.errors]
        assert not problems, problems[:10]
        lost = [j for j in work if j.outcome == "lost"]
        assert any(j.mode == "sync" and j.api == "api-b" for j in lost), "no synchronous caller was cut off"
        assert all(j.api == "api-b" for j in lost), [(j.i, j.api, j.lost_by) for j in lost]

        records = {r["generation_id"]: r for r in db.dicts(
            "SELECT generation_id, id, state, owner, runs, started_at, account_id, price_micros, webhook_url, result, "
            "failure_reason, tier, images FROM requests WHERE generation_id IS NOT NULL")}
        known = {j.generation_id for j in work if j.generation_id}
        assert known <= set(records)
        outcomes = Counter((j.mode, j.api, j.outcome) for j in work)
        assert GENERATIONS - len(lost) <= len(records) <= GENERATIONS, (len(records), len(lost), outcomes)
        states = Counter(r["state"] for r in records.values())
        assert set(states) <= {"done", "failed"}, states
        assert states["failed"] == UPSTREAM_REJECTS, states  # the upstream's refusals, and nothing else
        assert {r["failure_reason"] for r in records.values() if r["state"] == "failed"} == {"invalid_input"}

        # what the clients were told agrees with the records
        for j in work:
            if j.mode == "poll" and j.generation_id:
                rec = records[j.generation_id]  # type: ignore[index]
                assert j.outcome == {"done": "completed", "failed": "failed"}[rec["state"]], (j, rec["state"])
            elif j.mode == "sync" and j.outcome == "200":
                assert j.answer and len(j.answer["data"]) == j.body["num_images"]

        # the money: nothing held, every failure refunded, nothing charged twice, the ledger exact
        assert db.one("SELECT count(*) FROM reservations WHERE state = 'held'") == 0
        settles = Counter(rid for (rid,) in db.rows("SELECT request_id FROM ledger WHERE kind = 'settle'"))
        assert max(settles.values()) == 1, [r for r, n in settles.items() if n > 1]
        refunds = {rid for (rid,) in db.rows("SELECT request_id FROM ledger WHERE kind = 'refund'")}
        for rec in records.values():
            if rec["state"] == "done":
                assert settles[rec["id"]] == 1 and rec["price_micros"] == PRICE[rec["tier"]] * rec["images"], rec
            else:
                assert rec["id"] in refunds and settles[rec["id"]] == 0 and rec["price_micros"] == 0, rec
        for acct in accounts:
            balance = db.one("SELECT balance_micros FROM accounts WHERE id = %s", acct)
            assert db.one("SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE account_id = %s", acct) == balance
            charged = sum(r["price_micros"] for r in records.values() if r["account_id"] == acct)
            assert balance == TOPUP_USD * 1_000_000 - charged, (acct, balance, charged)

        # what the killed worker held was run again, to the end, by the other worker
        reclaimed = {}
        for gid in held:
            rec = records[gid]
            assert rec["state"] == "done" and rec["owner"] == w2.id and rec["runs"] >= 2, rec
            reclaimed[gid] = (rec["started_at"] - killed_at).total_seconds()
        expired = [(beat - killed_at).total_seconds() + STALE_AFTER_S for beat in held.values()]

        def span(xs: list[float]) -> str:
            return f"{min(xs):.2f}-{max(xs):.2f} s"

        print(f"\nfleet: worker SIGKILL -> its {len(held)} generation(s) claimed by the other worker after "
              f"{span(list(reclaimed.values()))} (their leases ran out after {span(expired)}; heartbeat_s=0.5, "
              f"stale_after_s={STALE_AFTER_S:g}, reconcile_interval_s=0.5)")

        # every result, by its link's path, from the survivor and from the killed instance's replacement
        b2 = Api("api-b2", data_dir("api-b"), logs)
        procs.append(b2.start())
        b2.ready()
        paths = [p for r in records.values() if r["state"] == "done" for p in link_paths(r["result"])]
        assert len(paths) >= states["done"]

        def fetch(path: str) -> list[tuple[str, int, str]]:
            out = []
            for api in (a, b2):
                r = api.client.get(path)
                out.append((api.name, r.status_code, r.headers.get("content-type", "")))
            return out

        with ThreadPoolExecutor(8) as pool:
            fetched = [x for xs in pool.map(fetch, paths) for x in xs]
        bad = [f for f in fetched if f[1] != 200 or not f[2].startswith("image/")]
        assert not bad, bad[:10]
        # and the bucket holds those images and nothing else: no staged input, nothing a dead run left
        stored = {k for (k,) in db.rows("SELECT storage_key FROM images")}
        assert len(stored) == len(paths) and set(bucket.keys()) == stored

        # every webhook arrived at least once, signed with a key the fleet publishes
        hooked = {g: r for g, r in records.items() if r["webhook_url"]}
        assert len(hooked) >= sum(1 for j in work if j.mode == "webhook" and j.outcome == "200")

        def arrived() -> set[str]:
            return {x.headers.get("x-ideogram-webhook-generation-id", "") for x in list(receiver.requests)}

        wait_until("every webhook delivered", lambda: set(hooked) <= arrived(), 60)
        wait_until("the outbox emptied", lambda: db.one(
            "SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0, 30)
        jwks = fetch_jwks(a.base)
        for got in list(receiver.requests):
            verify(got.headers, got.body, jwks)
            gid = got.headers["x-ideogram-webhook-generation-id"]
            body = json.loads(got.body)
            assert body["generation_id"] == gid
            rec = hooked[gid]
            assert rec["webhook_url"] == receiver.url(got.path)
            if rec["state"] == "done":
                assert body == {"generation_id": gid, **json.loads(rec["result"])}
        print(f"fleet: {len(records)} generations ({dict(states)}; {len(lost)} submissions cut off by the kill), "
              f"{len(paths)} links x 2 instances, {len(receiver.requests)} webhooks; started {started_s:.1f} s, "
              f"submitted {submitted_s:.1f} s, all ended {ended_s:.1f} s, checked {time.monotonic() - t0:.1f} s")
    except BaseException:
        dump_logs()
        raise
    finally:
        db.conn.close()
