"""The key holders' own API (/v2/account/* and /ideogram/v2/account/*) over real HTTP: only the
caller's account, authenticated by the API key exactly as the image API (never by a cookie),
no secret in any answer, and usage amounts equal to what was charged."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from conftest import sim_channel as channel

from ideohub.store import db

TOKEN = "admin-token-" + "k" * 32
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
V3_PATH = "/v1/ideogram-v3/generate"


def v3(n: int = 1, prompt: str = "a lighthouse") -> dict[str, Any]:
    return {"json": {"prompt": prompt, "rendering_speed": "TURBO", "num_images": n}}


def as_holder(srv, key: str, path: str, style: str = "api-key", **kw: Any) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"Api-Key": key} if style == "api-key" else {"Authorization": f"Bearer {key}"}
    return srv.client.get(path, headers={**headers, **kw.pop("headers", {})}, **kw)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_key_holders_see_their_own_account_only(start_server, fresh, backend, request):
    overrides: dict[str, Any] = {}
    if backend == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
        db.upgrade(overrides["database_url"])
    srv = start_server("config", engine_config={"*": "relay"}, channels=[channel("up", fresh[0])], admin_token=TOKEN,
                       **overrides)
    accounts = {}
    for name in ("alice", "bob"):
        acct = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": name}).json()["id"]
        srv.client.post(f"/admin/accounts/{acct}/topup", headers=ADMIN, json={"usd": "1"})
        accounts[name] = acct
    a1 = srv.client.post("/admin/keys", headers=ADMIN, json={"account_id": accounts["alice"], "name": "a1", "rpm": 60,
                                                              "spend_cap_usd": "0.5"}).json()
    a2 = srv.client.post("/admin/keys", headers=ADMIN, json={"account_id": accounts["alice"], "name": "a2"}).json()
    b1 = srv.client.post("/admin/keys", headers=ADMIN, json={"account_id": accounts["bob"], "name": "b1"}).json()
    secrets = [a1["key"], a2["key"], b1["key"], srv.key, TOKEN, "sim-secret-key-0123456789"]

    assert srv.post(V3_PATH, headers={"Api-Key": a1["key"]}, **v3(2)).status_code == 200  # $0.06
    assert srv.client.post(V3_PATH, headers={"Api-Key": a2["key"]}, **v3(1)).status_code == 200  # $0.03
    assert srv.client.post(V3_PATH, headers={"Api-Key": b1["key"]}, **v3(1, "bob's prompt")).status_code == 200

    answers: list[str] = []

    def ok(path: str, key: str = a1["key"], **kw: Any) -> Any:
        r = as_holder(srv, key, path, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        assert r.headers["cache-control"] == "no-store"
        answers.append(r.text)
        return r.json()

    # ---- balance, on both path families and both header styles
    for prefix in ("/v2/account", "/ideogram/v2/account"):
        bal = ok(prefix + "/balance", style="bearer")
        assert bal == {"account_id": accounts["alice"], "name": "alice", "balance_usd": "0.91", "unlimited": False,
                       "currency_code": "USD"}

    # ---- the account's keys with their limits; the caller's is marked
    keys = ok("/v2/account/api-keys")["api_keys"]
    assert {k["api_key_id"] for k in keys} == {a1["id"], a2["id"]}
    mine = next(k for k in keys if k["current"])
    assert mine["api_key_id"] == a1["id"] and mine["status"] == "ACTIVE" and mine["label"] == "a1"
    assert mine["redacted_api_key"].startswith(a1["key"][:10]) and len(mine["redacted_api_key"]) < 20
    assert mine["limits"]["rpm"] == 60 and mine["limits"]["spend_cap_usd"] == "0.5"
    assert mine["limits"]["spent_usd"] == "0.06"

    # ---- usage: per day, tool and key; amount in cents (exact), amount_usd as a decimal string
    usage = ok("/v2/account/usage", params={"segment_by": "DAY", "days": "2"})["usage_segments"]
    tools = [t for seg in usage for t in seg["tool_usage"]]
    assert sum(Decimal(t["amount_usd"]) for t in tools) == Decimal("0.09")
    assert {t["api_key_id"] for t in tools} == {a1["id"], a2["id"]}
    by_key = {t["api_key_id"]: t for t in tools}
    assert by_key[a1["id"]]["amount"] == {"amount": 6, "currency_code": "USD"}
    assert by_key[a1["id"]]["tool_type"] == "GENERATE" and by_key[a1["id"]]["images"] == 2
    seg = usage[0]
    assert seg["segment_start"].endswith("00:00:00+00:00") and seg["segment_end"].endswith("23:59:59+00:00")
    hourly = ok("/v2/account/usage", params={"segment_by": "HOUR", "days": "1"})["usage_segments"]
    assert hourly[0]["segment_end"].endswith(":59:59+00:00")
    for params, field in [({"segment_by": "WEEK"}, "segment_by"), ({"days": "0"}, "days"), ({"days": "367"}, "days"),
                          ({"colour": "x"}, "colour")]:
        r = as_holder(srv, a1["key"], "/v2/account/usage", params=params)
        assert r.status_code == 400 and r.json()["detail"].startswith(field), r.text

    # ---- the request log: the account's requests only, no channel or engine
    log = ok("/v2/account/requests")
    assert len(log["items"]) == 2 and {i["account_id"] for i in log["items"]} == {accounts["alice"]}
    assert all("channel" not in i and "engine" not in i for i in log["items"])
    only_a2 = ok("/v2/account/requests", params={"key_id": a2["id"]})["items"]
    assert [i["key_id"] for i in only_a2] == [a2["id"]]
    assert ok("/v2/account/requests", params={"key_id": b1["id"]})["items"] == []  # never another account's
    page = ok("/v2/account/requests", params={"limit": "1"})
    assert len(page["items"]) == 1 and page["next_before"]
    rest = ok("/v2/account/requests", params={"limit": "1", "before": page["next_before"]})
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in log["items"]]
    for params in ({"account_id": accounts["bob"]}, {"channel": "up"}, {"operation": "paint"}):
        r = as_holder(srv, a1["key"], "/v2/account/requests", params=params)
        assert r.status_code == 400 and r.json()["detail"].startswith(next(iter(params))), r.text

    detail = ok(f"/v2/account/requests/{log['items'][-1]['id']}")
    assert detail["price_usd"] == "0.06" and len(detail["images"]) == 2 and "attempts" not in detail
    assert "channel" not in detail and "prompt" not in detail["params"]
    assert srv.client.get(detail["images"][0]["url"]).status_code == 200
    bobs = srv.client.get("/admin/requests", headers=ADMIN, params={"account_id": accounts["bob"]}).json()["items"]
    r = as_holder(srv, a1["key"], f"/v2/account/requests/{bobs[0]['id']}")
    assert r.status_code == 404 and r.json()["detail"] == "request_id: no such request"
    r2 = as_holder(srv, a1["key"], "/v2/account/requests/req_unknown")
    assert r2.status_code == 404 and r2.json()["detail"] == r.json()["detail"]  # the same answer: ids cannot be probed
    assert as_holder(srv, b1["key"], f"/v2/account/requests/{bobs[0]['id']}").status_code == 200

    # ---- no secret anywhere; bob's prompt never reaches alice
    for text in answers:
        for secret in secrets:
            assert secret not in text
        assert "bob's prompt" not in text and "bob" not in text

    # ---- 401: no key, a wrong one, the admin token, a cookie, a revoked or an expired key
    assert srv.client.delete(f"/admin/keys/{a2['id']}", headers=ADMIN).status_code == 204
    past = srv.client.post("/admin/keys", headers=ADMIN, json={"account_id": accounts["alice"],
                                                                "expires_at": "2000-01-01T00:00:00Z"}).json()
    for path in ("/v2/account/balance", "/v2/account/api-keys", "/v2/account/usage", "/v2/account/requests",
                 f"/v2/account/requests/{log['items'][0]['id']}", "/ideogram/v2/account/balance"):
        for headers in ({}, {"Api-Key": "ih_wrong"}, {"Authorization": f"Bearer {TOKEN}"}, {"Api-Key": a2["key"]},
                        {"Api-Key": past["key"]}, {"Cookie": f"ideohub_console=x; api_key={a1['key']}"}):
            r = srv.client.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code)
    # the revoked key is listed as disabled to the others of its account
    statuses = {k["api_key_id"]: k["status"] for k in ok("/v2/account/api-keys")["api_keys"]}
    assert statuses[a2["id"]] == "DISABLED" and statuses[past["id"]] == "DISABLED" and statuses[a1["id"]] == "ACTIVE"


def test_the_unlimited_default_account_works_too(start_server):
    srv = start_server()  # no admin token, no set-up: the first key belongs to the default account
    r = as_holder(srv, srv.key, "/v2/account/balance")
    assert r.status_code == 200, r.text
    assert r.json() == {"account_id": "acct_default", "name": r.json()["name"], "balance_usd": "0", "unlimited": True,
                        "currency_code": "USD"}
    keys = as_holder(srv, srv.key, "/v2/account/api-keys").json()["api_keys"]
    assert [k["current"] for k in keys] == [True] and keys[0]["limits"]["rpm"] is None
    assert as_holder(srv, srv.key, "/v2/account/usage").json() == {"usage_segments": []}
    assert as_holder(srv, srv.key, "/v2/account/requests").json() == {"items": [], "next_before": None}
