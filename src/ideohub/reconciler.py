"""The reconciler: the database is the source of truth, the queue only a way to wake workers.

Every ``reconcile_interval_s``, on every API instance and worker (each step is a
compare-and-set, so two reconcilers never act twice on one generation):

- a generation queued longer than ``max_queue_wait_s`` fails with a refund (reason ``timeout``);
- a running generation whose lease expired (its process stopped beating ``stale_after_s`` ago)
  is queued again if its inputs are staged and it has run fewer than ``MAX_RUNS`` times, else it
  fails with a refund (reason ``abandoned``);
- a generation still queued ``REQUEUE_AFTER_S`` after it was enqueued is enqueued again: the
  enqueue may never have happened (a crash right after admission) or Redis may have lost it
  (CI runs Redis without persistence). A duplicate message is harmless: only one claim wins.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from .config import Settings
from .domain.errors import DeadlineExceeded
from .domain.operations import Operation
from .stages.runner import MAX_RUNS, Runner
from .stages.settlement import Abandoned
from .store.generations import GenerationStore
from .store.repository import utcnow

log = logging.getLogger("ideohub.reconciler")
REQUEUE_AFTER_S = 30.0


class Reconciler:
    def __init__(self, settings: Settings, store: GenerationStore, runner: Runner, dispatch) -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        self.store = store
        self.runner = runner
        self.dispatch = dispatch

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        now = now or utcnow()
        done = {"expired": 0, "requeued": 0, "abandoned": 0, "reenqueued": 0}
        wait = self.settings.max_queue_wait_s
        for record in await self.store.waited_too_long(now - timedelta(seconds=wait)):
            if await self.runner.expire(record, DeadlineExceeded(
                    f"the generation waited for a worker longer than max_queue_wait_s ({wait:g} s); "
                    f"nothing was charged")):
                done["expired"] += 1
        for record in await self.store.lease_expired(now - timedelta(seconds=self.settings.stale_after_s)):
            if record.resume and (record.runs or 0) < MAX_RUNS:
                if await self.store.requeue_expired(record):
                    await self.dispatch.enqueue(record.generation_id, Operation(record.operation))
                    done["requeued"] += 1
            elif await self.runner.expire(record, Abandoned("the process running it stopped")):
                done["abandoned"] += 1
        for record in await self.store.queued_before(now - timedelta(seconds=REQUEUE_AFTER_S)):
            if await self.store.requeued(record.id, record.enqueued_at):
                await self.dispatch.enqueue(record.generation_id, Operation(record.operation))
                done["reenqueued"] += 1
        if any(done.values()):
            log.warning(json.dumps({"reconciler": done}))
        return done
