"""The ASGI app: every endpoint on every path, image serving, health.

``create_app(settings)`` wires the layers; the lifespan opens the database, storage and
engines, and runs the sweeper that deletes expired images.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .. import __version__
from ..config import Secrets, Settings
from ..domain.errors import Forbidden, IdeohubError, InvalidRequest, NotFound, Unauthorized
from ..engines.base import WorkerPool
from ..engines.registry import ConfigError, EngineResources, build_engines
from ..domain.prices import PriceError, PriceTable
from ..gate.limits import MemoryLimiter
from ..observability import Metrics
from ..store.ledger import Ledger
from ..media.decode import ImageLimits
from ..media.signing import UrlSigner
from ..media.signing_keys import KeyRingFile
from ..media.storage import LocalStorage, Storage
from ..service import Outcome, Service
from ..store import db
from ..store.repository import Repository
from ..notify.worker import Webhooks
from .admin import router as admin_router
from .jwks import router as jwks_router
from .auth import authenticate, bearer_matches
from .body_limits import BodyLimitMiddleware
from .dialects import ENDPOINTS, Endpoint, all_paths, image_paths
from .dialects.intake import IntakeLimits, read_fields
from . import generations, tasks
from .submission import read_submission, wants_task_dialect
from ..notify.targets import TargetPolicy
from .middleware import RequestContextMiddleware
from .openapi import install_openapi
from .problems import http_error_handler, ideohub_error_handler, unhandled_error_handler, validation_error_handler
from .responses import render

log = logging.getLogger("ideohub.api")

_MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass
class AppState:
    settings: Settings
    repo: Repository
    storage: Storage
    signer: UrlSigner
    service: Service
    pool: WorkerPool
    limits: IntakeLimits
    metrics: Metrics
    targets: TargetPolicy  # where webhooks and task callbacks may go


async def open_state(settings: Settings, engines: dict | None = None,
                     clock: Callable[[], float] | None = None) -> AppState:
    secrets = Secrets.load(settings)
    if settings.db_url.startswith("sqlite"):
        await anyio.to_thread.run_sync(db.upgrade, settings.db_url)  # servers on PostgreSQL run `ideohub db upgrade`
    repo = Repository.connect(settings.db_url, secrets.key_pepper)
    await upsert_config_channels(settings, repo, secrets)
    metrics = Metrics()
    storage = LocalStorage(settings.images_dir)
    # the key ring as secrets.json has it now: `ideohub rotate-signing-key` takes effect without a restart
    signer = UrlSigner(KeyRingFile(settings.secrets_file, settings.signing_key_id), None, settings.base_url,
                       settings.url_ttl_s)
    pool = WorkerPool(settings.workers, settings.queue_size)
    try:
        prices = PriceTable.load(overrides=settings.prices, groups=settings.groups)
    except PriceError as exc:
        raise ConfigError(str(exc)) from None
    limiter = make_limiter(settings, clock)
    if engines is None:
        engines = build_engines(EngineResources(settings, metrics, repo.session, secrets, clock))
    service = Service(settings, repo, storage, signer, engines, pool, metrics,
                      ledger=Ledger(repo.session), prices=prices, limiter=limiter, render=_render_json)
    limits = IntakeLimits(
        images=ImageLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_input_pixels),
        max_text_body_bytes=settings.max_text_body_bytes, max_parts=settings.max_parts,
        max_text_chars=settings.max_text_chars,
    )
    return AppState(settings, repo, storage, signer, service, pool, limits, metrics,
                    TargetPolicy(settings.webhook_allowed_hosts))


def make_limiter(settings: Settings, clock: Callable[[], float] | None = None):  # type: ignore[no-untyped-def]
    """Per-process limits by default; shared through Redis when ``redis_url`` is set. ``clock``
    (tests) replaces the monotonic clock, or Redis time."""
    lease_s = settings.request_timeout_s + settings.reservation_grace_s
    if settings.redis_url:
        from ..gate.redis import RedisLimiter

        return RedisLimiter(settings.redis_url, lease_s=lease_s, clock=clock)
    return MemoryLimiter(lease_s=lease_s, clock=clock) if clock is not None else MemoryLimiter(lease_s=lease_s)


async def upsert_config_channels(settings: Settings, repo: Repository, secrets: Secrets) -> None:
    """Channels declared in the config file are written to the database at start-up."""
    if not settings.channels:
        return
    from ..engines.relay.channel_store import ChannelStore
    from ..engines.relay.channels import SecretBox, channel_from_options

    store = ChannelStore(repo.session, SecretBox(secrets.channel_key))
    for options in settings.channels:
        try:
            channel = channel_from_options(options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"channels: {exc}") from None
        await store.upsert(channel, source="config")


def create_app(settings: Settings, engines: dict | None = None,
               clock: Callable[[], float] | None = None) -> FastAPI:
    """``engines``: exactly these (tests), or None for what the settings configure; ``clock``:
    the monotonic clock of time-dependent state (cooldowns, channel reloads), injected by tests."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await open_state(settings, engines, clock)
        app.state.ideohub = state
        # webhooks and task callbacks from the outbox (notify.worker); app.state.wall_clock: a test's clock
        webhooks = Webhooks(settings, state.repo.session, state.targets, state.metrics,
                            getattr(app.state, "wall_clock", None))
        app.state.webhooks = webhooks
        state.service.outbox_changed = webhooks.wake  # the service wakes it after writing outbox rows
        webhooks.start()
        loops = [asyncio.create_task(_every(settings.sweep_interval_s, lambda: _sweep(state), "sweeper")),
                 asyncio.create_task(_every(settings.heartbeat_s, lambda: _keep_alive(state), "generation heartbeat"))]
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            await state.service.stop()
            await webhooks.aclose()
            state.pool.shutdown()
            for engine in {id(e): e for e in state.service.engines.values()}.values():
                if hasattr(engine, "aclose"):
                    await engine.aclose()
            await state.service.limiter.aclose()
            await state.repo.close()

    app = FastAPI(
        title="ideohub",
        version=__version__,
        summary="The Ideogram image API, self-hosted.",
        lifespan=lifespan,
        docs_url=None,  # install_openapi serves /docs with our own copies of the assets
        redoc_url=None,
    )
    paths = image_paths()
    app.add_middleware(BodyLimitMiddleware, settings=settings, is_image_path=paths.__contains__)
    app.add_middleware(RequestContextMiddleware)  # outermost: every answer gets its request id
    app.add_exception_handler(IdeohubError, ideohub_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)

    for endpoint in ENDPOINTS.values():
        for path in all_paths(endpoint):
            app.add_api_route(
                path,
                _endpoint_handler(endpoint),
                methods=["POST"],
                include_in_schema=path == endpoint.path,
                name=f"{endpoint.operation.value}:{path}",
                summary=f"Ideogram {endpoint.path}",
            )
    app.ideohub_settings = settings  # type: ignore[attr-defined]  # what the server layer configures itself from
    app.include_router(admin_router)
    app.include_router(jwks_router)  # GET /v1/.well-known/jwks.json: the webhook signing keys
    app.include_router(generations.router)  # polling: GET /v1|v2/generations/{id}
    app.include_router(tasks.router)  # the task dialect's queries
    app.add_api_route("/images/{name}", serve_image, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    install_openapi(app)
    return app


def _endpoint_handler(endpoint: Endpoint):  # type: ignore[no-untyped-def]
    async def handler(request: Request) -> Response:
        state: AppState = request.app.state.ideohub
        request.state.operation = endpoint.operation.value
        if wants_task_dialect(None, request.query_params):
            request.state.dialect = "task"
        key = await authenticate(request, state.repo, endpoint.auth_status)  # before anything else is judged
        request.state.key_id = key.id
        idempotency_key = _idempotency_key(request)

        async def parse():  # type: ignore[no-untyped-def]
            fields = await read_fields(request, endpoint, state.limits)
            if wants_task_dialect(fields, request.query_params):
                request.state.dialect = "task"
            if fields.from_json:  # no uploads: validation only (microseconds), not worth a thread hop
                parsed = endpoint.parse(fields)
            else:  # uploads are decoded and checked: off the event loop
                parsed = await anyio.to_thread.run_sync(endpoint.parse, fields)
            submission = await read_submission(fields, request.query_params, state.targets)
            if state.settings.log_prompts and parsed.prompt_text:
                request.state.prompt = parsed.prompt_text
            return parsed, submission

        def admitted(generation_id: str) -> None:
            request.state.generation_id = generation_id

        submitted = await state.service.submit(endpoint.operation, parse, key, request.state.request_id,
                                               idempotency_key=idempotency_key, on_admitted=admitted)
        if submitted.outcome is not None:
            request.state.engine_seconds = submitted.outcome.engine_seconds
            request.state.queue_seconds = submitted.outcome.queue_seconds
            return Response(submitted.outcome.body, media_type="application/json")
        if submitted.submission.task_dialect:
            return tasks.submitted(request.state.request_id, submitted.generation_id, submitted.created_at)
        return JSONResponse({"generation_id": submitted.generation_id})

    handler.__name__ = f"post_{endpoint.operation.value.replace('-', '_')}"
    return handler


_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidRequest("Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces")
    return value


def _render_json(outcome: Outcome) -> bytes:
    """The answer's bytes, exactly as JSONResponse renders them (compact, UTF-8)."""
    return JSONResponse(render(outcome)).body


async def serve_image(request: Request, name: str) -> Response:
    state: AppState = request.app.state.ideohub
    q = request.query_params
    exp = state.signer.verify(name, q.get("exp"), q.get("kid"), q.get("sig"))
    path = state.storage.local_path(name)
    if path is None:
        raise NotFound("the image no longer exists")
    etag = f'"{name.rsplit(".", 1)[0]}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"private, max-age={max(0, exp - int(time.time()))}, immutable",
    }
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    media_type = _MEDIA_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers=headers)


async def healthz(request: Request) -> JSONResponse:
    state: AppState = request.app.state.ideohub
    return JSONResponse({"status": "ok", "version": __version__, "engines": sorted(o.value for o in state.service.engines)})


async def metrics_endpoint(request: Request) -> Response:
    """Loopback clients only, unless ``metrics_token`` is set: then ``Bearer <token>`` from anywhere.
    A request that came through a proxy (it carries a forwarding header) is never "loopback"."""
    state: AppState = request.app.state.ideohub
    token = state.settings.metrics_token
    if token:
        if not bearer_matches(request.headers.get("authorization"), token):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <metrics_token>'")
    elif not _is_loopback(request):
        raise Forbidden("/metrics answers loopback clients only; set metrics_token to scrape it from elsewhere")
    await generations.refresh_metrics(state)  # generations by status, oldest pending: one grouped query
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _is_loopback(request: Request) -> bool:
    if any(h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip")):
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _every(seconds: float, job: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``job`` now and then every ``seconds``; a failure is logged and retried next time."""
    while True:
        try:
            await job()
        except Exception:
            log.exception("%s failed; retrying at the next interval", what)
        await asyncio.sleep(seconds)


async def _sweep(state: AppState) -> None:
    removed = await state.service.sweep()
    if removed:
        log.info('{"sweeper": "deleted expired images", "count": %d}', removed)


async def _keep_alive(state: AppState) -> None:
    """This process's pending generations stay claimed while it lives; those of a process that
    stopped beating are taken over (at start-up too)."""
    await state.service.heartbeat()
    taken = await state.service.take_over()
    if taken:
        log.warning('{"generations": "taken over from a stopped process", "count": %d}', taken)
