"""The resellers' task dialect (our extension, modelled on Kling's task API): a request with a
top-level ``callback_url`` is answered with a task envelope; tasks are queried by id; errors keep
the envelope (``code`` = the HTTP status, ``message`` = our detail) with the usual HTTP status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..domain.errors import InvalidRequest
from ..domain.untrusted import UntrustedJSON, loads
from ..notify.payloads import TASK_FAILED, TASK_PROCESSING, TASK_SUBMITTED, TASK_SUCCEED, task_object, task_status
from ..store.ledger import DEFAULT_ACCOUNT
from ..store.models import RequestRecord
from ..store.repository import _aware
from .auth import authenticate
from .generations import NO_STORE, account_of, admit_poll, check_id, find_own

SUCCEED = "SUCCEED"


def envelope(request_id: str, data: Any, code: int = 0, message: str = SUCCEED) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": request_id, "data": data}


def submitted(request_id: str, generation_id: str, created: datetime) -> JSONResponse:
    task = task_object(generation_id, TASK_SUBMITTED, created, created)
    task.pop("task_status_msg")
    return JSONResponse(envelope(request_id, task))


def error(request_id: str, status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": detail, "request_id": request_id, "data": None},
                        status_code=status, headers=headers)


# ---------------------------------------------------------------- task queries (task ids are generation ids)

MAX_TASK_IDS = 100
TASK_PATHS = ("/ideogram/v1/tasks/{task_id}", "/ideogram/tasks/{task_id}")
QUERY_PATHS = ("/ideogram/v1/tasks/query", "/ideogram/tasks/query")
DOCUMENTED_PATHS = (TASK_PATHS[0], QUERY_PATHS[0])  # /openapi.json names the others in their text

router = APIRouter()


def is_task_path(path: str) -> bool:
    """Whether ``path`` is one of the dialect's own routes (its errors keep the envelope even
    before the route runs: a 404, a 405, a body over the cap)."""
    return path.startswith(("/ideogram/tasks/", "/ideogram/v1/tasks/"))


def task_of(record: RequestRecord) -> dict[str, Any]:
    """A record as the dialect's task: ``updated_at`` is when its status last changed (admission,
    the engine starting, the end), as the callbacks report it."""
    status = task_status(record.state, record.started_at is not None)
    created = _aware(record.created_at)
    if status in (TASK_SUCCEED, TASK_FAILED):
        updated = _aware(record.finished_at or record.updated_at)
    elif status == TASK_PROCESSING and record.started_at is not None:
        updated = _aware(record.started_at)
    else:
        updated = created
    return task_object(record.generation_id or "", status, created, updated,
                       record.failure_reason if status == TASK_FAILED else None,
                       record.result if status == TASK_SUCCEED else None)


def task_ids(body: bytes) -> list[str]:
    """``{"task_ids": [...]}`` (or ``{"ids": [...]}``, midjourney-proxy's name): at most
    ``MAX_TASK_IDS`` valid ids, duplicates dropped, the caller's order kept."""
    try:
        obj = loads(body)
    except UntrustedJSON as exc:
        raise InvalidRequest("body", f"must be JSON: {{\"task_ids\": [...]}} ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("body", "must be a JSON object: {\"task_ids\": [...]}")
    given = [name for name in ("task_ids", "ids") if obj.get(name) is not None]
    if not given:
        raise InvalidRequest("task_ids", f"is required: a list of at most {MAX_TASK_IDS} task ids (also accepted as ids)")
    if len(given) > 1:
        raise InvalidRequest("ids", "cannot be sent together with task_ids")
    name = given[0]
    value = obj[name]
    if not isinstance(value, list):
        raise InvalidRequest(name, "must be a list of task ids")
    if len(value) > MAX_TASK_IDS:
        raise InvalidRequest(name, f"may list at most {MAX_TASK_IDS} task ids ({len(value)} given)")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(f"{name}[{i}]", "must be a task id (a string)")
        check_id(item, f"{name}[{i}]")
    return list(dict.fromkeys(value))


async def get_task(request: Request, task_id: str) -> JSONResponse:
    request.state.dialect = "task"  # errors keep the envelope (api.problems)
    request.state.operation = "get-task"
    state = request.app.state.ideohub
    key = await authenticate(request, state.repo)
    request.state.key_id = key.id
    await admit_poll(state, key)
    check_id(task_id, "task_id")
    record = await find_own(state.repo, key, task_id, "task_id", "task")
    return JSONResponse(envelope(request.state.request_id, task_of(record)), headers=NO_STORE)


async def query_tasks(request: Request) -> JSONResponse:
    """The known tasks of the caller's account among the ids, in the order asked; unknown and
    other accounts' ids are left out silently (as midjourney-proxy's list-by-condition does)."""
    request.state.dialect = "task"
    request.state.operation = "query-tasks"
    state = request.app.state.ideohub
    key = await authenticate(request, state.repo)
    request.state.key_id = key.id
    await admit_poll(state, key)
    ids = task_ids(await request.body())
    account = account_of(key)
    found = {r.generation_id: r for r in await state.repo.get_generations(ids)
             if (r.account_id or DEFAULT_ACCOUNT) == account}
    data = [task_of(found[i]) for i in ids if i in found]
    return JSONResponse(envelope(request.state.request_id, data), headers=NO_STORE)


# the fixed query paths first, so "query" is never read as a task id
for _path in QUERY_PATHS:
    router.add_api_route(_path, query_tasks, methods=["POST"], include_in_schema=_path in DOCUMENTED_PATHS,
                         name=f"query-tasks:{_path}")
for _path in TASK_PATHS:
    router.add_api_route(_path, get_task, methods=["GET"], include_in_schema=_path in DOCUMENTED_PATHS,
                         name=f"get-task:{_path}")
