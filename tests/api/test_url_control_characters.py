"""A control character in a URL's path or query is a 400 naming where it is, before any route
runs: identifiers and filters go to the database, and PostgreSQL refuses a NUL in any text
(each of these URLs was a 500 there before the check)."""

from __future__ import annotations

import pytest

ADMIN_TOKEN = "admin-token-for-url-checks-0123456789"

# (method, path with query, who calls it, the place the 400 must name)
CASES = [
    ("GET", "/admin/keys?account_id=%00", "admin", "account_id"),
    ("GET", "/admin/accounts/%00", "admin", "path"),
    ("GET", "/admin/requests/%00x", "admin", "path"),
    ("GET", "/admin/generations/%00", "admin", "path"),
    ("DELETE", "/admin/keys/%00", "admin", "path"),
    ("PATCH", "/admin/keys/a%01b", "admin", "path"),
    ("GET", "/admin/requests?channel=x%7f", "admin", "channel"),
    ("GET", "/v2/account/requests/%00", "key", "path"),
    ("GET", "/ideogram/v2/account/requests?key_id=%1f", "key", "key_id"),
    ("GET", "/v1/generations/%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00", "key", "path"),
    ("POST", "/v1/ideogram-v3/generate?webhook_url=http://x/%0a", "key", "webhook_url"),
    ("GET", "/admin/accounts?a%00=1", "admin", "query"),
]


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_control_character_in_the_url_is_a_400_naming_where(start_server, request, db: str) -> None:
    overrides: dict[str, object] = {"admin_token": ADMIN_TOKEN}
    if db == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    srv = start_server(**overrides)
    auth = {"admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"}, "key": {"Api-Key": srv.key}}
    for method, url, who, where in CASES:
        r = srv.client.request(method, url, headers=auth[who], json={} if method in ("POST", "PATCH") else None)
        assert r.status_code == 400, (url, r.status_code, r.text)
        assert r.json()["detail"].startswith(f"{where}: must not contain control characters"), (url, r.text)
    # the same routes answer normally without the control character
    assert srv.client.get("/admin/keys?account_id=acct_default", headers=auth["admin"]).status_code == 200
    assert srv.client.get("/admin/accounts/nope", headers=auth["admin"]).status_code == 404
    assert srv.client.get("/v2/account/requests/nope", headers=auth["key"]).status_code == 404
