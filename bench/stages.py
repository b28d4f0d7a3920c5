"""The request path without HTTP or an upstream: authentication + ``Service.handle`` (admission,
execution with a no-op engine, delivery of one tiny PNG, settlement) in a loop, on SQLite or
PostgreSQL. Prints CPU and wall milliseconds per request. It uses only APIs the previous main
also had, so ``PYTHONPATH=<old checkout>/src`` measures that code side by side.

    .venv/bin/python bench/stages.py [--requests 500] [--postgres-url postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


async def measure(url: str | None, requests: int, data_dir: Path) -> tuple[float, float]:
    import ideohub
    from ideohub.config import Secrets, load_settings
    from ideohub.domain.operations import ImageOutput, ImageResult, Operation, V3GenerateRequest
    from ideohub.domain.sizes import Size
    from ideohub.engines.base import WorkerPool
    from ideohub.media.signing import UrlSigner
    from ideohub.media.storage import LocalStorage
    from ideohub.service import Service
    from ideohub.store import db
    from ideohub.store.ledger import Ledger
    from ideohub.store.repository import Repository, new_id

    print(f"  ideohub from {Path(ideohub.__file__).parent}", file=sys.stderr)
    fields = load_settings.__globals__["Settings"].model_fields  # (what the checkout being measured knows)
    overrides: dict[str, object] = {"max_pending_per_account": 0} if "max_pending_per_account" in fields else {}
    if "secret_key" in fields:  # rounds share the database, so they share its master secret
        overrides["secret_key"] = "bench-stages-master-secret-0123456789abcdef"
    settings = load_settings(data_dir=data_dir, database_url=url, **overrides)
    db.upgrade(settings.db_url)
    secrets = Secrets.load(settings)
    repo = Repository.connect(settings.db_url, secrets.key_pepper)
    ledger = Ledger(repo.session)
    account = await ledger.create_account("bench")
    await ledger.topup(account.id, 10**12)
    _row, key = await repo.create_key("bench", account_id=account.id)
    image = png()

    class NoOp:
        name = "noop"

        async def run(self, request, ctx):  # type: ignore[no-untyped-def]
            return ImageResult([ImageOutput(data=image, media_type="image/png", resolution=Size(8, 8), prompt="",
                                            seed=1, is_image_safe=True)])

    op = Operation.V3_GENERATE
    service = Service(settings, repo, LocalStorage(settings.images_dir),
                      UrlSigner(secrets.signing_keys, secrets.active_kid, "http://bench", 3600), {op: NoOp()},
                      WorkerPool(1, 1), ledger=ledger)

    async def parse() -> V3GenerateRequest:
        return V3GenerateRequest(prompt="a lighthouse", num_images=1)

    async def one() -> None:
        caller = await repo.authenticate(key)
        await service.handle(op, parse, caller, new_id("req"), render=lambda o: b"{}")

    for _ in range(50):  # warm-up: statement caches, connections
        await one()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await one()
    result = (1000 * (time.process_time() - cpu) / requests, 1000 * (time.perf_counter() - wall) / requests)
    await service.stop() if hasattr(service, "stop") else None
    await repo.close()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--postgres-url", default=os.environ.get("IDEOHUB_TEST_POSTGRES_URL"),
                   help="also measure on this PostgreSQL database (its tables are created if missing)")
    args = p.parse_args()
    backends = [("sqlite", None)] + ([("postgresql", args.postgres_url)] if args.postgres_url else [])
    for name, url in backends:
        runs = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(asyncio.run(measure(url, args.requests, Path(tmp))))
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"{name:10} CPU {cpu:6.2f} ms/request   wall {wall:6.2f} ms/request   (median of {args.rounds} rounds "
              f"of {args.requests})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
