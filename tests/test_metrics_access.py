"""/metrics is not open to anyone (issue 7): loopback clients only, and a request that came
through a proxy (it carries a forwarding header) is not loopback; with ``metrics_token`` set,
``Authorization: Bearer <token>`` is required from anywhere."""

from __future__ import annotations


def test_loopback_only_by_default(start_server):
    srv = start_server()
    assert srv.client.get("/metrics").status_code == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        r = srv.client.get("/metrics", headers={header: "203.0.113.9"})
        assert r.status_code == 403 and "metrics_token" in r.json()["detail"]


def test_a_token_is_required_when_set(start_server):
    srv = start_server(metrics_token="scrape-me")
    assert srv.client.get("/metrics").status_code == 401
    assert srv.client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = srv.client.get("/metrics", headers={"Authorization": "Bearer scrape-me", "X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200 and b"ideohub_requests_total" in r.content
