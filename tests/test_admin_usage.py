"""The admin API, the money CLI and the usage record, over real HTTP and real CLI processes:
accounts → top-ups → keys with limits → revocation; every per-key limit enforced on a running
server (rpm, images in flight, operations, spending cap, expiry); the request and upstream
attempt rows behind `ideohub usage` and `GET /admin/usage`, and their retention — on SQLite,
and the usage report once more on PostgreSQL."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import FakeClock, png_bytes
from conftest import sim_channel as channel
from ideohub.store import db
from ideohub.store.models import StoredImage, LedgerEntry, RequestRecord, UpstreamAttempt

TOKEN = "admin-token-" + "x" * 32
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
IMG = png_bytes(64, 64)

V3_TURBO = {"json": {"prompt": "a lighthouse", "rendering_speed": "TURBO"}}  # $0.03 per image


def v3(n: int = 1) -> dict[str, Any]:
    return {"json": {"prompt": "a lighthouse", "rendering_speed": "TURBO", "num_images": n}}


GENERATE = {"json": {"image_request": {"prompt": "a lighthouse", "model": "V_2_TURBO", "num_images": 1}}}  # $0.05
UPSCALE = {"files": {"image_file": ("in.png", IMG, "image/png")},
           "data": {"image_request": json.dumps({"resemblance": 55})}}  # $0.06 per input image
V3_PATH, GENERATE_PATH, UPSCALE_PATH = "/v1/ideogram-v3/generate", "/generate", "/upscale"


# ------------------------------------------------------------ fixtures and helpers




def relay_server(start_server, channels: list[dict[str, Any]], **overrides: Any):  # type: ignore[no-untyped-def]
    return start_server("config", engine_config={"*": "relay"}, channels=channels, **overrides)


def call(srv, path: str, key: str, spec: dict[str, Any]) -> httpx.Response:  # type: ignore[no-untyped-def]
    return srv.client.post(path, headers={"Api-Key": key}, **spec)


def is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"] and body["detail"], body
    return body


def cli(srv, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """The real `ideohub` command on the server's data directory (and database)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    base["IDEOHUB_DATA_DIR"] = str(srv.settings.data_dir)
    if srv.settings.database_url:
        base["IDEOHUB_DATABASE_URL"] = srv.settings.database_url
    return subprocess.run([sys.executable, "-m", "ideohub.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=120)


def last_line(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]


def last_ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def select_rows(url: str, stmt) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    engine = sa.create_engine(db.sync_url(url))
    try:
        with engine.connect() as c:
            return [dict(r) for r in c.execute(stmt).mappings().all()]
    finally:
        engine.dispose()


def execute(url: str, stmt) -> None:  # type: ignore[no-untyped-def]
    engine = sa.create_engine(db.sync_url(url))
    try:
        with engine.begin() as c:
            c.execute(stmt)
    finally:
        engine.dispose()


def admin_account(srv, name: str, usd: str) -> str:  # type: ignore[no-untyped-def]
    r = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": name})
    assert r.status_code == 201, r.text
    account_id = r.json()["id"]
    r = srv.client.post(f"/admin/accounts/{account_id}/topup", headers=ADMIN, json={"usd": usd})
    assert r.status_code == 200 and r.json()["balance_usd"] == usd, r.text
    return account_id


def admin_key(srv, **body: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = srv.client.post("/admin/keys", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def balance(srv, account_id: str) -> str:  # type: ignore[no-untyped-def]
    r = srv.client.get(f"/admin/accounts/{account_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["balance_usd"]


# ------------------------------------------------------------ 1. the admin API


def test_admin_api_is_disabled_without_a_token(start_server):
    srv = start_server()
    for method, path in [("GET", "/admin/accounts"), ("POST", "/admin/keys"), ("GET", "/admin/usage")]:
        r = srv.client.request(method, path, headers=ADMIN, json={})
        assert "admin_token" in is_problem(r, 404)["detail"]


def test_admin_api_accounts_keys_revocation_and_validation(start_server, fresh):
    srv = relay_server(start_server, [channel("up", fresh[0])], admin_token=TOKEN)

    # ---- authentication: its own token, never an API key
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {srv.key}"}, {"Api-Key": TOKEN}, {"Authorization": TOKEN}]:
        r = srv.client.get("/admin/accounts", headers=headers)
        assert "Bearer" in is_problem(r, 401)["detail"], headers
    assert srv.client.get("/admin/accounts", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    from ideohub.api.auth import bearer_matches
    from ideohub.console.auth import precheck
    assert "bearer_matches" in inspect.getsource(precheck)  # the admin token goes through the one comparison,
    assert "hmac.compare_digest" in inspect.getsource(bearer_matches)  # which is constant-time
    is_problem(call(srv, V3_PATH, TOKEN, V3_TURBO), 401)  # the admin token is no API key

    # ---- accounts and exact top-ups
    r = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": "acme"})
    assert r.status_code == 201
    acct = r.json()
    assert acct["balance_usd"] == "0" and acct["unlimited"] is False and acct["group"] == "default"
    account_id = acct["id"]
    r = srv.client.post(f"/admin/accounts/{account_id}/topup", headers=ADMIN, json={"usd": "1.25", "note": "invoice 1"})
    assert r.status_code == 200 and r.json() == {"account_id": account_id, "balance_usd": "1.25"}
    r = srv.client.post(f"/admin/accounts/{account_id}/topup", headers=ADMIN, json={"usd": "0.000001"})
    assert r.json()["balance_usd"] == "1.250001"
    assert balance(srv, account_id) == "1.250001"
    listed = srv.client.get("/admin/accounts", headers=ADMIN).json()
    assert {a["id"] for a in listed} >= {account_id, "acct_default"}

    # ---- a key with limits: the secret once, never in a listing
    expires = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    created = admin_key(srv, account_id=account_id, name="ci", rpm=100, max_images_in_flight=4,
                        allowed_operations=["v3-generate", "upscale"], spend_cap_usd="0.5",
                        expires_at=expires.isoformat())
    secret = created["key"]
    assert secret.startswith("ih_") and len(secret) > 40
    fields = ("account_id", "rpm", "max_images_in_flight", "spend_cap_usd", "allowed_operations", "revoked")
    assert [created[f] for f in fields] == [account_id, 100, 4, "0.5", ["v3-generate", "upscale"], False]
    assert datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00")) == expires
    r = srv.client.get("/admin/keys", headers=ADMIN)
    assert r.status_code == 200 and secret not in r.text and secret[10:] not in r.text
    assert all("key" not in k for k in r.json())
    mine = next(k for k in r.json() if k["id"] == created["id"])
    assert mine["prefix"] == secret[:10] and mine["spend_cap_usd"] == "0.5"

    assert call(srv, V3_PATH, secret, V3_TURBO).status_code == 200
    assert balance(srv, account_id) == "1.220001"  # exactly $0.03 charged

    # ---- revoke: it stops working at once
    r = srv.client.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert r.status_code == 204 and r.content == b""
    is_problem(call(srv, V3_PATH, secret, V3_TURBO), 401)
    assert next(k for k in srv.client.get("/admin/keys", headers=ADMIN).json() if k["id"] == created["id"])["revoked"]
    is_problem(srv.client.delete(f"/admin/keys/{created['id']}", headers=ADMIN), 404)

    # an expiry in the past: created, but never valid
    past = admin_key(srv, account_id=account_id, expires_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    is_problem(call(srv, V3_PATH, past["key"], V3_TURBO), 401)
    # no account given: the default (unlimited) account
    default = admin_key(srv)
    assert default["account_id"] == "acct_default" and call(srv, V3_PATH, default["key"], V3_TURBO).status_code == 200

    # ---- bad bodies: 400 problem JSON naming the field; nothing is created or moved
    keys_before = len(srv.client.get("/admin/keys", headers=ADMIN).json())
    accounts_before = len(srv.client.get("/admin/accounts", headers=ADMIN).json())
    topup = f"/admin/accounts/{account_id}/topup"
    bad: list[tuple[str, str, Any, str]] = [
        ("POST", "/admin/keys", {"rpm": -1}, "rpm"),
        ("POST", "/admin/keys", {"rpm": 0}, "rpm"),
        ("POST", "/admin/keys", {"rpm": "many"}, "rpm"),
        ("POST", "/admin/keys", {"rpm": 2**31}, "rpm"),  # an INTEGER column: a 500 on PostgreSQL before
        ("POST", "/admin/keys", {"max_images_in_flight": 0}, "max_images_in_flight"),
        ("POST", "/admin/keys", {"max_images_in_flight": 2**40}, "max_images_in_flight"),
        ("POST", "/admin/keys", {"name": "n" * 201}, "name"),  # VARCHAR(200): a 500 on PostgreSQL before
        ("POST", "/admin/keys", {"allowed_operations": ["v3-generate", "paint"]}, "allowed_operations"),
        ("POST", "/admin/keys", {"allowed_operations": "upscale"}, "allowed_operations"),
        ("POST", "/admin/keys", {"spend_cap_usd": "1.0000001"}, "spend_cap_usd"),
        ("POST", "/admin/keys", {"spend_cap_usd": "abc"}, "spend_cap_usd"),
        ("POST", "/admin/keys", {"spend_cap_usd": "-1"}, "spend_cap_usd"),
        ("POST", "/admin/keys", {"spend_cap_usd": "Infinity"}, "spend_cap_usd"),
        ("POST", "/admin/keys", {"account_id": "acct_nope"}, "account_id"),
        ("POST", "/admin/keys", {"expires_at": "next tuesday"}, "expires_at"),
        ("POST", topup, {"usd": "abc"}, "usd"),
        ("POST", topup, {"usd": "1.0000001"}, "usd"),
        ("POST", topup, {"usd": ""}, "usd"),
        ("POST", topup, {"usd": "NaN"}, "usd"),
        ("POST", topup, {"usd": "sNaN"}, "usd"),
        ("POST", topup, {"usd": "Infinity"}, "usd"),
        ("POST", topup, {"usd": "-Infinity"}, "usd"),
        ("POST", topup, {"usd": "1e30"}, "usd"),  # would overflow a BIGINT of micro-dollars
        ("POST", topup, {}, "usd"),
        ("POST", "/admin/accounts", {"name": ""}, "name"),
        ("POST", "/admin/accounts", {}, "name"),
        ("POST", "/admin/accounts", {"name": "x", "group": "gold"}, "group"),
        ("GET", "/admin/usage?by=model", None, "by"),
        ("GET", "/admin/usage?days=0", None, "days"),
    ]
    for method, path, body, field in bad:
        r = srv.client.request(method, path, headers=ADMIN, json=body)
        detail = is_problem(r, 400)["detail"]
        assert field in detail, (body, detail)
    r = srv.client.post("/admin/keys", headers={**ADMIN, "Content-Type": "application/json"}, content=b"{not json")
    is_problem(r, 400)
    is_problem(srv.client.post("/admin/accounts/acct_nope/topup", headers=ADMIN, json={"usd": "1"}), 404)
    is_problem(srv.client.get("/admin/accounts/acct_nope", headers=ADMIN), 404)
    assert len(srv.client.get("/admin/keys", headers=ADMIN).json()) == keys_before
    assert len(srv.client.get("/admin/accounts", headers=ADMIN).json()) == accounts_before
    assert balance(srv, account_id) == "1.220001"

    # ---- a top-up is never negative; a correction is an adjustment with a note (tests/test_money.py)
    assert "positive" in is_problem(srv.client.post(topup, headers=ADMIN, json={"usd": "-0.22"}), 400)["detail"]
    r = srv.client.post(f"/admin/accounts/{account_id}/adjust", headers=ADMIN,
                        json={"usd": "-0.220001", "note": "correction"})
    assert r.status_code == 200 and r.json()["balance_usd"] == "1"

    # ---- the OpenAPI document describes the admin API (and never leaks the admin token)
    r = srv.client.get("/openapi.json")
    assert r.status_code == 200 and TOKEN not in r.text
    spec = r.json()
    paths = spec["paths"]
    for path, methods in {"/admin/accounts": {"get", "post"}, "/admin/accounts/{account_id}": {"get"},
                          "/admin/accounts/{account_id}/topup": {"post"}, "/admin/keys": {"get", "post"},
                          "/admin/keys/{key_id}": {"delete"}, "/admin/usage": {"get"}}.items():
        assert path in paths and methods <= set(paths[path]), path
    schemas = spec["components"]["schemas"]
    assert "key" in schemas["KeyCreated"]["properties"] and "key" not in schemas["KeyOut"]["properties"]
    params = {p["name"] for p in paths["/admin/usage"]["get"]["parameters"]}
    assert {"by", "days"} <= params


@pytest.mark.parametrize("micros,usd", [(10_000_000, "10"), (20_000_000, "20"), (100_000_000, "100"), (1, "0.000001"),
                                        (1_250_000, "1.25"), (0, "0"), (-30_000, "-0.03")])
def test_whole_tens_of_dollars_print_plainly(micros, usd):
    from ideohub.domain.prices import micros_to_usd

    assert micros_to_usd(micros) == usd


# ------------------------------------------------------------ 2. the CLI and per-key limits


def test_cli_accounts_topup_balance_and_every_key_limit(start_server, fresh):
    srv = relay_server(start_server, [channel("up", fresh[0])])
    account_id = last_line(cli(srv, "accounts", "create", "cli acct"))
    assert account_id.startswith("acct_") and " " not in account_id

    specs = {
        "topup": ["topup", account_id, "0.5", "--note", "first"],
        "rpm": ["keys", "create", "--account", account_id, "--rpm", "2"],
        "images": ["keys", "create", "--account", account_id, "--max-images-in-flight", "2"],
        "ops": ["keys", "create", "--account", account_id, "--operations", "upscale"],
        "cap": ["keys", "create", "--account", account_id, "--spend-cap", "0.05"],
        "expired": ["keys", "create", "--account", account_id, "--expires-in-days", "-1"],
        "default": ["keys", "create", "--name", "no set-up", "--expires-in-days", "1"],
    }
    with ThreadPoolExecutor(len(specs)) as pool:  # independent processes: run them side by side
        outs = dict(zip(specs, pool.map(lambda a: cli(srv, *a), specs.values())))
    assert last_line(outs["topup"]) == "0.5"
    keys = {name: last_line(out) for name, out in outs.items() if name != "topup"}
    assert all(k.startswith("ih_") for k in keys.values())

    # --rpm 2: the third quick request is 429 with Retry-After
    assert [call(srv, V3_PATH, keys["rpm"], V3_TURBO).status_code for _ in range(2)] == [200, 200]
    r = call(srv, V3_PATH, keys["rpm"], V3_TURBO)
    is_problem(r, 429)
    assert 1 <= int(r.headers["retry-after"]) <= 30

    # --max-images-in-flight 2: more at once is 429; two requests of two images at once: one waits
    r = call(srv, V3_PATH, keys["images"], v3(3))
    assert "in flight" in is_problem(r, 429)["detail"] and r.headers["retry-after"] == "1"
    fresh[0].configure(latency_s=1.0)

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as client:
            return await asyncio.gather(*(client.post(V3_PATH, headers={"Api-Key": keys["images"]}, **v3(2))
                                          for _ in range(2)))

    assert sorted(r.status_code for r in asyncio.run(both())) == [200, 429]
    fresh[0].configure(latency_s=0.0)
    assert call(srv, V3_PATH, keys["images"], v3(2)).status_code == 200  # the lease was given back

    # --operations upscale: everything else is a 403 problem
    assert call(srv, UPSCALE_PATH, keys["ops"], UPSCALE).status_code == 200
    assert "v3-generate" in is_problem(call(srv, V3_PATH, keys["ops"], V3_TURBO), 403)["detail"]
    is_problem(call(srv, GENERATE_PATH, keys["ops"], GENERATE), 403)

    # --spend-cap 0.05: one $0.03 image fits, the second would pass the cap (the balance could pay)
    assert call(srv, V3_PATH, keys["cap"], V3_TURBO).status_code == 200
    assert "cap" in is_problem(call(srv, V3_PATH, keys["cap"], V3_TURBO), 402)["detail"]

    # --expires-in-days -1: already expired → 401
    is_problem(call(srv, V3_PATH, keys["expired"], V3_TURBO), 401)

    # no --account (and --expires-in-days 1): the unlimited default account, no set-up at all
    assert call(srv, V3_PATH, keys["default"], V3_TURBO).status_code == 200

    # 2×0.03 (rpm) + 2×0.06 (images) + 0.06 (upscale) + 0.03 (cap) = 0.27 of 0.50
    with ThreadPoolExecutor(2) as pool:
        good, bad = pool.map(lambda a: cli(srv, "balance", a), [account_id, "acct_nope"])
    assert last_line(good) == "0.23"
    assert bad.returncode == 1 and "acct_nope" in bad.stderr


# ------------------------------------------------------------ 3. the usage record, on both databases


def parse_usage(stdout: str) -> dict[str, dict[str, list[str]]]:
    """`ideohub usage` tables → {grouping: {group: [requests, images, charged, cost, failed, avg ms]}}."""
    tables: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in stdout.splitlines():
        if "usage per " in line:
            current = line.split("usage per ", 1)[1].split(",")[0].strip()
            tables[current] = {}
            continue
        if current is None or "│" not in line:
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 7 and cells[1].isdigit():
            tables[current][cells[0]] = cells[1:]
    return tables


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_usage_record_report_and_retention(start_server, fresh, backend, request):
    overrides: dict[str, Any] = {}
    if backend == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
        db.upgrade(overrides["database_url"])
    full, half = fresh
    clock = FakeClock()
    srv = relay_server(start_server, [channel("full", full, priority=10, timeout_s=1.5),
                                      channel("half", half, priority=0, cost_multiplier=0.5)],
                       relay_cooldown_s=0.2, admin_token=TOKEN, clock=clock, **overrides)
    url = srv.settings.db_url
    rich_acct = admin_account(srv, "rich", "1")
    poor_acct = admin_account(srv, "poor", "0.01")
    k1 = admin_key(srv, account_id=rich_acct, name="rich")
    k2 = admin_key(srv, account_id=poor_acct, name="poor")

    # r1: "full" hangs past its 1.5 s timeout, "half" (at half our list price) serves 2 images
    full.faults("hang", hang_s=10, count=1)
    r1 = call(srv, V3_PATH, k1["key"], v3(2))
    assert r1.status_code == 200 and len(r1.json()["data"]) == 2
    clock.advance(0.3)  # "full" cools down for 0.2 s, then takes traffic again
    r2 = call(srv, GENERATE_PATH, k1["key"], GENERATE)
    r3 = call(srv, UPSCALE_PATH, k1["key"], UPSCALE)
    r4 = call(srv, V3_PATH, k2["key"], V3_TURBO)  # $0.03 against $0.01: 402 before any work
    r5 = call(srv, V3_PATH, k1["key"], {"json": {"prompt": "x", "num_images": 0}})  # 400
    assert [r.status_code for r in (r2, r3, r4, r5)] == [200, 200, 402, 400]
    assert "num_images" in is_problem(r5, 400)["detail"]
    ids = [r.headers["x-request-id"] for r in (r1, r2, r3, r4, r5)]

    # ---- the requests table: one row per request
    rows = {r["id"]: r for r in select_rows(url, sa.select(RequestRecord.__table__).where(
        RequestRecord.key_id.in_([k1["id"], k2["id"]])))}
    assert set(rows) == set(ids)
    expected = [  # key, account, operation, tier, images, charged, channel, status, state
        (k1["id"], rich_acct, "v3-generate", "TURBO", 2, 60_000, "half", 200, "done"),
        (k1["id"], rich_acct, "generate", "V_2_TURBO", 1, 50_000, "full", 200, "done"),
        (k1["id"], rich_acct, "upscale", "*", 1, 60_000, "full", 200, "done"),
        (k2["id"], poor_acct, "v3-generate", None, 0, 0, None, 402, "failed"),
        (k1["id"], rich_acct, "v3-generate", None, 0, 0, None, 400, "failed"),
    ]
    for rid, exp in zip(ids, expected):
        row = rows[rid]
        got = (row["key_id"], row["account_id"], row["operation"], row["tier"], row["images"], row["price_micros"],
               row["channel"], row["status_code"], row["state"])
        assert got == exp, (rid, got)
        assert row["latency_ms"] is not None and row["latency_ms"] > 0
    assert rows[ids[0]]["latency_ms"] >= 1400  # it waited out the 1.5 s timeout
    assert balance(srv, rich_acct) == "0.83" and balance(srv, poor_acct) == "0.01"

    # ---- upstream attempts: one per call, with what it may have cost us
    attempts = select_rows(url, sa.select(UpstreamAttempt.__table__).where(UpstreamAttempt.request_id.in_(ids))
                           .order_by(UpstreamAttempt.id))
    got = [(a["request_id"], a["channel"], a["outcome"], a["images"], a["cost_micros"]) for a in attempts]
    assert got == [
        (ids[0], "full", "timeout", 2, 60_000),  # timed out: may still bill both images, at list price
        (ids[0], "half", "ok", 2, 30_000),  # cost_multiplier 0.5: half the list price
        (ids[1], "full", "ok", 1, 50_000),
        (ids[2], "full", "ok", 1, 60_000),  # upscale: per input image
    ], got
    assert attempts[0]["latency_ms"] >= 1400 and all(a["latency_ms"] > 0 for a in attempts)
    assert attempts[0]["status_code"] is None and attempts[1]["status_code"] == 200
    assert len(full.api_requests()) == 3 and len(half.api_requests()) == 1

    # ---- `ideohub usage`: per day, key and operation, totals that agree
    tables = parse_usage(last_ok(cli(srv, "usage", "--days", "7")))
    assert set(tables) == {"day", "key", "operation"}
    assert tables["operation"] == {
        "generate": ["1", "1", "0.05", "0.05", "0", tables["operation"]["generate"][5]],
        "upscale": ["1", "1", "0.06", "0.06", "0", tables["operation"]["upscale"][5]],
        "v3-generate": ["3", "2", "0.06", "0.09", "2", tables["operation"]["v3-generate"][5]],
    }
    assert tables["key"][k1["id"]][:5] == ["4", "4", "0.17", "0.2", "1"]
    assert tables["key"][k2["id"]][:5] == ["1", "0", "0", "0", "1"]
    assert len(tables["day"]) == 1 and list(tables["day"].values())[0][:5] == ["5", "4", "0.17", "0.2", "2"]
    for by, groups in tables.items():  # every grouping adds up to the same totals
        totals = [sum(Decimal(v[i]) for v in groups.values()) for i in range(5)]
        assert totals == [5, 4, Decimal("0.17"), Decimal("0.2"), 2], (by, totals)

    # ---- GET /admin/usage: the same numbers as JSON
    r = srv.client.get("/admin/usage", headers=ADMIN, params={"by": "operation", "days": 7})
    assert r.status_code == 200
    api = {row["group"]: row for row in r.json()}
    for op, cells in tables["operation"].items():
        row = api[op]
        assert [str(row["requests"]), str(row["images"]), row["charged_usd"], row["upstream_cost_usd"],
                str(row["failed"])] == cells[:5]
        assert cells[5] == f"{row['avg_latency_ms']:.0f}"
    by_key = {row["group"]: row for row in srv.client.get("/admin/usage?by=key", headers=ADMIN).json()}
    assert by_key[k1["id"]]["charged_usd"] == "0.17" and by_key[k2["id"]]["failed"] == 1
    by_day = srv.client.get("/admin/usage?by=day", headers=ADMIN).json()
    assert [(d["requests"], d["charged_usd"], d["upstream_cost_usd"]) for d in by_day] == [(5, "0.17", "0.2")]

    # ---- retention: the sweeper drops usage past usage_retention_days, never the ledger
    def age(request_id: str, days: int) -> None:
        when = datetime.now(UTC) - timedelta(days=days)
        execute(url, sa.update(RequestRecord.__table__).where(RequestRecord.id == request_id)
                .values(created_at=when, updated_at=when))
        execute(url, sa.update(UpstreamAttempt.__table__).where(UpstreamAttempt.request_id == request_id)
                .values(created_at=when))
        # its images were served for url_ttl_s (24 h) back then, so they expired long ago too; a request
        # whose images are still served is kept until the image sweeper has removed them
        execute(url, sa.update(StoredImage.__table__).where(StoredImage.request_id == request_id)
                .values(created_at=when, expires_at=when + timedelta(days=1)))

    age(ids[1], 30)  # past a 10-day retention
    age(ids[2], 5)  # within it
    ledger_q = sa.select(LedgerEntry.__table__).where(LedgerEntry.account_id == rich_acct).order_by(LedgerEntry.id)
    ledger_before = select_rows(url, ledger_q)
    assert [e["kind"] for e in ledger_before if e["request_id"] == ids[1]] == ["reserve", "settle"]
    swept = cli(srv, "sweep", env={"IDEOHUB_USAGE_RETENTION_DAYS": "10"})
    assert swept.returncode == 0, swept.stdout + swept.stderr
    left = {r["id"] for r in select_rows(url, sa.select(RequestRecord.id).where(RequestRecord.id.in_(ids)))}
    assert left == set(ids) - {ids[1]}
    left_attempts = [a["request_id"] for a in select_rows(url, sa.select(UpstreamAttempt.request_id)
                                                          .where(UpstreamAttempt.request_id.in_(ids)))]
    assert sorted(left_attempts) == sorted([ids[0], ids[0], ids[2]])
    assert select_rows(url, ledger_q) == ledger_before  # the money's history is kept whole
    assert balance(srv, rich_acct) == "0.83"
    ops = {row["group"]: row for row in srv.client.get("/admin/usage?by=operation&days=3650", headers=ADMIN).json()}
    assert "generate" not in ops and ops["upscale"]["requests"] == 1



def test_admin_text_follows_the_api_text_rules(start_server):
    """A NUL in an account name was stored (and is a 500 on PostgreSQL); admin text now follows
    the same rule as every API text field."""
    srv = start_server(admin_token=TOKEN)
    h = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for body in [b'{"name": "a\\u0000b"}', b'{"name": "a\\ud800"}', b'{"name": "a\\u001bb"}']:
        r = srv.client.post("/admin/accounts", content=body, headers=h)
        assert r.status_code == 400 and r.json()["detail"].startswith("name: "), r.text
    assert srv.client.post("/admin/accounts", json={"name": "Ünïcode — fine"}, headers=h).status_code == 201
