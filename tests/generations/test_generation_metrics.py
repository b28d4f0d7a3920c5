"""Generations on /metrics (issue 8, item 7): how many by status and the oldest pending one's
age, read from the database when /metrics is scraped; polls counted like other requests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ideohub.domain.errors import UpstreamFailed

from .support import as_answered, async_v3, check_generation_response, gated, poll, poll_until, sync_v3


def scrape(srv) -> dict[tuple[str, tuple], float]:  # type: ignore[no-untyped-def]
    r = srv.client.get("/metrics")
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def generations(samples: dict) -> dict[str, float]:  # type: ignore[type-arg]
    """Pending (in the database) and finished (by this process), by status."""
    out = {"pending": samples[("ideohub_generations_pending", ())]}
    for (name, labels), value in samples.items():
        if name == "ideohub_generations_finished_total":
            out[dict(labels)["status"]] = value
    return out


def test_generations_by_status_and_the_oldest_pending_age(start_server):
    scenario(*gated(start_server))


def test_on_postgresql(start_server, pg_url):
    """The same on PostgreSQL (the grouped query, the record's times with their offset)."""
    srv, gate = gated(start_server, database_url=pg_url)
    scenario(srv, gate)
    gate.fail = None
    generation_id, answer = sync_v3(srv)
    body = poll(srv, generation_id, "/v2/generations/").json()
    check_generation_response(body)
    assert as_answered(body) == answer["data"]


def scenario(srv, gate) -> None:  # type: ignore[no-untyped-def]
    before = scrape(srv)
    assert generations(before) == {"pending": 0, "completed": 0, "failed": 0}
    assert before[("ideohub_generation_oldest_pending_seconds", ())] == 0
    gate.hold()
    pending_id = async_v3(srv)
    gate.entered.wait(30)
    during = scrape(srv)
    assert generations(during) == {"pending": 1, "completed": 0, "failed": 0}
    assert during[("ideohub_generation_oldest_pending_seconds", ())] > 0
    gate.release()
    poll_until(srv, pending_id, "completed")
    sync_v3(srv)
    gate.fail = UpstreamFailed("every channel failed")
    poll_until(srv, async_v3(srv), "failed")
    after = scrape(srv)
    assert generations(after) == {"pending": 0, "completed": 2, "failed": 1}
    assert after[("ideohub_generation_oldest_pending_seconds", ())] == 0
    polls = after[("ideohub_requests_total", (("endpoint", "get-generation"), ("status", "200")))]
    assert polls >= 2  # one per poll_until at least (each polls until the end it waits for)
    assert poll(srv, "x").status_code == 400
    assert scrape(srv)[("ideohub_requests_total", (("endpoint", "get-generation"), ("status", "400")))] == 1
