"""The resellers' task dialect, reading side (issue 8, item 6; our extension, modelled on
Kling): ``GET /ideogram[/v1]/tasks/{task_id}`` and ``POST /ideogram[/v1]/tasks/query`` answer
``{"code": 0, "message": "SUCCEED", "request_id", "data"}``; errors keep the envelope with
today's HTTP status. Task ids are generation ids."""

from __future__ import annotations

from datetime import datetime

import pytest

from ideohub.domain.errors import UpstreamFailed

from .support import PNG, V3, async_v3, gated, headers, new_key, poll, poll_until, sync_v3

TASK_PATHS = ["/ideogram/v1/tasks/", "/ideogram/tasks/"]
QUERY_PATHS = ["/ideogram/v1/tasks/query", "/ideogram/tasks/query"]
CALLBACK = "http://127.0.0.1:9/callback"  # allowed by webhook_allowed_hosts below; never answered


def task_server(start_server, **overrides):  # type: ignore[no-untyped-def]
    return gated(start_server, webhook_allowed_hosts=["127.0.0.1"], **overrides)


def ok(r) -> object:  # type: ignore[no-untyped-def]
    """The envelope of a success, checked; its ``data``."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["code", "message", "request_id", "data"]
    assert body["code"] == 0 and body["message"] == "SUCCEED"
    assert body["request_id"] == r.headers["x-request-id"]
    return body["data"]


def refused(r, status: int, message_start: str) -> None:  # type: ignore[no-untyped-def]
    """An error in the dialect: the envelope, ``code`` = the HTTP status, ``message`` our detail."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["code", "message", "request_id", "data"]
    assert body["code"] == status and body["data"] is None
    assert body["message"].startswith(message_start), body["message"]
    assert body["request_id"] == r.headers["x-request-id"]


def get_task(srv, task_id: str, path: str = TASK_PATHS[0], key: str | None = None, style: str = "bearer"):  # type: ignore[no-untyped-def]
    return srv.client.get(path + task_id, headers=headers(key or srv.key, style))


def test_a_callback_task_is_processing_then_succeeds_with_its_images(start_server):
    srv, gate = task_server(start_server)
    gate.hold()
    r = srv.client.post("/ideogram" + V3, headers=headers(srv.key, "bearer"),
                        json={"prompt": "a cat", "rendering_speed": "TURBO", "num_images": 2,
                              "callback_url": CALLBACK})
    submitted = ok(r)
    task_id = submitted["task_id"]
    assert submitted["task_status"] == "submitted"
    gate.entered.wait(30)  # the engine runs: the record says it started
    for path in TASK_PATHS:
        for style in ("bearer", "api-key"):
            task = ok(get_task(srv, task_id, path, style=style))
            assert task["task_id"] == task_id and task["task_status"] == "processing"
            assert task["task_status_msg"] == "" and "task_result" not in task
            assert task["updated_at"] >= task["created_at"]
    gate.release()
    done = poll_until(srv, task_id, "completed")
    for path in TASK_PATHS:
        task = ok(get_task(srv, task_id, path))
        assert task["task_status"] == "succeed" and task["task_status_msg"] == ""
        assert task["task_result"] == {"images": [{"index": i, "url": item["url"]}
                                                  for i, item in enumerate(done["data"])]}
        assert task["updated_at"] >= task["created_at"]
        assert task["created_at"] == int(datetime.fromisoformat(done["created"]).timestamp() * 1000)


def test_a_task_has_one_created_at_everywhere(start_server):
    srv, _gate = task_server(start_server)
    r = srv.client.post("/ideogram" + V3, headers=headers(srv.key, "bearer"),
                        json={"prompt": "a cat", "rendering_speed": "TURBO", "callback_url": CALLBACK})
    submitted = ok(r)
    assert ok(get_task(srv, submitted["task_id"]))["created_at"] == submitted["created_at"]


def test_any_generation_is_a_task_and_a_failed_one_says_why(start_server):
    srv, gate = task_server(start_server)
    generation_id, answer = sync_v3(srv)
    task = ok(get_task(srv, generation_id))
    assert task["task_status"] == "succeed"
    assert [i["url"] for i in task["task_result"]["images"]] == [i["url"] for i in answer["data"]]
    gate.fail = UpstreamFailed("every channel failed: up (HTTP 500)")
    failed_id = async_v3(srv)
    poll_until(srv, failed_id, "failed")
    task = ok(get_task(srv, failed_id, TASK_PATHS[1]))
    assert task["task_status"] == "failed" and task["task_status_msg"] == "upstream_failed"
    assert "task_result" not in task


def test_a_describe_task_has_its_descriptions(start_server):
    srv, _gate = task_server(start_server)
    r = srv.client.post("/describe", headers=headers(srv.key), files={"image_file": ("in.png", PNG, "image/png")})
    task = ok(get_task(srv, r.headers["x-ideohub-generation-id"]))
    assert task["task_result"] == {"descriptions": r.json()["descriptions"]}


@pytest.mark.parametrize("path", QUERY_PATHS)
@pytest.mark.parametrize("field", ["task_ids", "ids"])
def test_query_lists_the_accounts_known_tasks_in_the_order_asked(start_server, path, field):
    srv, _gate = task_server(start_server)
    _account, key = new_key(srv)
    first, _ = sync_v3(srv, key=key)
    second, _ = sync_v3(srv, key=key)
    foreign, _ = sync_v3(srv)  # the default account's
    asked = [second, "A" * 22, foreign, first, second]
    data = ok(srv.client.post(path, headers=headers(key, "bearer"), json={field: asked}))
    assert [t["task_id"] for t in data] == [second, first]  # unknown and foreign ids dropped, no repeats
    assert all(t["task_status"] == "succeed" and len(t["task_result"]["images"]) == 2 for t in data)
    assert ok(srv.client.post(path, headers=headers(key), json={field: []})) == []


@pytest.mark.parametrize(("body", "message"), [
    ({"task_ids": ["A" * 22] * 101}, "task_ids: may list at most 100 task ids (101 given)"),
    ({"ids": ["A" * 22] * 101}, "ids: may list at most 100 task ids"),
    ({"task_ids": ["A" * 22, "nope"]}, "task_ids[1]: must be 22 URL-safe base64 characters"),
    ({"ids": ["A" * 22, 7]}, "ids[1]: must be a task id"),
    ({"task_ids": "A" * 22}, "task_ids: must be a list of task ids"),
    ({"task_ids": ["A" * 22], "ids": ["A" * 22]}, "ids: cannot be sent together with task_ids"),
    ({}, "task_ids: is required"),
    ([], "body: must be a JSON object"),
    (b"{not json", "body: must be JSON"),
    (b'{"task_ids": [NaN]}', "body: must be JSON"),
    (b"", "body: must be JSON"),
])
def test_bad_queries_are_400_in_the_envelope_naming_the_field(start_server, body, message):
    srv, _gate = task_server(start_server)
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = srv.client.post(QUERY_PATHS[0], headers={**headers(srv.key), "Content-Type": "application/json"}, **kwargs)
    refused(r, 400, message)


def test_every_error_of_the_dialect_keeps_the_envelope(start_server):
    srv, _gate = task_server(start_server)
    generation_id, _ = sync_v3(srv)
    r = srv.client.get(TASK_PATHS[0] + generation_id)
    refused(r, 401, "missing API key")
    assert "www-authenticate" in r.headers
    refused(srv.client.post(QUERY_PATHS[1], json={"task_ids": [generation_id]}), 401, "missing API key")
    refused(get_task(srv, "not-an-id"), 400, "task_id: must be 22 URL-safe base64 characters")
    refused(get_task(srv, "query"), 400, "task_id: ")  # GET on the query path is a (malformed) task id
    refused(get_task(srv, "B" * 22), 404, "task_id: no such task")
    _other, stranger = new_key(srv)
    refused(get_task(srv, generation_id, key=stranger), 404, "task_id: no such task")
    assert poll(srv, generation_id).status_code == 200  # Ideogram's own polling is untouched


def test_errors_before_the_route_runs_keep_the_envelope_too(start_server):
    """A body over the small cap (413 from the body limits), an unknown method (405) and a path
    under the dialect's prefix that no route serves (404) answer in the envelope as well."""
    srv, _gate = task_server(start_server)
    h = {"Authorization": f"Bearer {srv.key}", "Content-Type": "application/json"}
    big = srv.client.post("/ideogram/tasks/query", headers=h, content=b'{"task_ids": [' + b'"x",' * 30_000 + b'"x"]}')
    wrong = srv.client.put("/ideogram/v1/tasks/query", headers=h, content=b"{}")
    missing = srv.client.get("/ideogram/tasks/a/b", headers=h)
    for r, status in ((big, 413), (wrong, 405), (missing, 404)):
        body = r.json()
        assert r.status_code == status and body["code"] == status and body["data"] is None, r.text
        assert isinstance(body["message"], str) and body["message"] and body["request_id"] == r.headers["x-request-id"]
