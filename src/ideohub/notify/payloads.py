"""What a webhook or a task callback carries, built once, when the generation's state changes,
and stored in the outbox exactly as it will be sent (each attempt is signed afresh, the body is
not rebuilt).

- Ideogram's webhook (completed): the synchronous answer's body with ``generation_id`` added,
  no ``status`` field, as Ideogram sends it. Failed (Ideogram is silent there; our choice):
  ``{"generation_id", "created", "status": "failed", "failure_reason"}``.
- The task dialect (modelled on Kling's): the bare task object, on each status change.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..domain.generations import STATUS_OF_STATE, Status

# Kling's task statuses for our record states (README: "The task dialect")
TASK_SUBMITTED, TASK_PROCESSING, TASK_SUCCEED, TASK_FAILED = "submitted", "processing", "succeed", "failed"
TASK_ORDER = {TASK_SUBMITTED: 0, TASK_PROCESSING: 1, TASK_SUCCEED: 2, TASK_FAILED: 2}


def compact(obj: Any) -> str:
    """JSON exactly as our answers are rendered (compact, UTF-8 text)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def webhook_completed(generation_id: str, answer: str) -> str:
    """The synchronous body plus ``generation_id`` (first, as in Ideogram's example)."""
    body = json.loads(answer)
    return compact({"generation_id": generation_id, **body})


def webhook_failed(generation_id: str, created: datetime, failure_reason: str) -> str:
    return compact({"generation_id": generation_id, "created": created.isoformat(), "status": "failed",
                    "failure_reason": failure_reason})


def task_status(state: str, started: bool) -> str:
    status = STATUS_OF_STATE.get(state, Status.PENDING)
    if status is Status.COMPLETED:
        return TASK_SUCCEED
    if status is Status.FAILED:
        return TASK_FAILED
    return TASK_PROCESSING if started else TASK_SUBMITTED


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def task_object(generation_id: str, status: str, created: datetime, updated: datetime,
                failure_reason: str | None = None, answer: str | None = None) -> dict[str, Any]:
    """The task as the dialect shows it: ``task_result`` only once it succeeded (images with
    their index in the answer's ``data``; describe results as ``descriptions`` or ``json_prompt``, our
    extension)."""
    task: dict[str, Any] = {
        "task_id": generation_id,
        "task_status": status,
        "task_status_msg": failure_reason or "",
        "created_at": _ms(created),
        "updated_at": _ms(updated),
    }
    if status == TASK_SUCCEED and answer is not None:
        body = json.loads(answer)
        if "descriptions" in body:
            task["task_result"] = {"descriptions": body["descriptions"]}
        elif "json_prompt" in body and "data" not in body:  # 4.0 magic prompt and describe: the document
            task["task_result"] = {"json_prompt": body["json_prompt"]}
        else:
            task["task_result"] = {"images": [{"index": i, "url": item.get("url")}
                                              for i, item in enumerate(body.get("data", []))]}
    return task
