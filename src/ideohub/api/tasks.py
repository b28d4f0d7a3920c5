"""The resellers' task dialect (our extension, modelled on Kling's task API): a request with a
top-level ``callback_url`` is answered with a task envelope; tasks are queried by id; errors keep
the envelope (``code`` = the HTTP status, ``message`` = our detail) with the usual HTTP status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse

from ..notify.payloads import TASK_SUBMITTED, task_object

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
