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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from .. import __version__
from ..config import Settings
from ..domain.errors import Forbidden, IdeohubError, InvalidRequest, NotFound, Unauthorized
from ..domain.operations import Family, SpecRequest
from ..engines.base import WorkerPool
from ..observability import Metrics
from ..media.decode import ImageLimits
from ..media.signing import UrlSigner
from ..media.storage import Storage, media_type
from ..runtime import Runtime, every
from ..service import Service
from ..store.repository import Repository
from ..store.secrets import Secrets
from ..notify.worker import Webhooks
from .admin import router as admin_router
from .account import router as account_router
from ..console.routes import router as console_router
from .jwks import router as jwks_router
from .auth import authenticate, bearer_matches
from .body_limits import BodyLimitMiddleware
from .assets import resolve_assets
from .dialects import RELAY_PREFIX, Endpoint, all_endpoints, all_paths, image_paths
from .dialects.intake import IntakeLimits, read_fields
from . import generations, tasks
from .submission import read_submission, wants_task_dialect
from ..notify.targets import TargetPolicy
from .middleware import RequestContextMiddleware
from .openapi import install_openapi
from .problems import http_error_handler, ideohub_error_handler, unhandled_error_handler, validation_error_handler
from .responses import acknowledgement, price_quote, render_json

log = logging.getLogger("ideohub.api")

_PRESIGNED_MAX_S = 300  # image_delivery = "redirect": the presigned URL lives at most this long


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
    secrets: Secrets | None = None  # the key rings follow the database while its start() task runs
    runtime: Runtime | None = None


async def open_state(settings: Settings, engines: dict | None = None,
                     clock: Callable[[], float] | None = None) -> AppState:
    """An API instance's parts, from the process's ``Runtime``."""
    runtime = Runtime(settings, engines=engines, clock=clock, render=render_json)
    try:
        repo = await runtime.repo()
        await runtime._config_channels(repo)
        service = await runtime.service()
        await service.dispatch.start()
    except BaseException:
        await runtime.aclose()
        raise
    limits = IntakeLimits(
        images=ImageLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_input_pixels),
        max_text_body_bytes=settings.max_text_body_bytes, max_parts=settings.max_parts,
        max_text_chars=settings.max_text_chars,
    )
    return AppState(settings, repo, service.storage, service.signer, service, runtime.pool, limits, runtime.metrics,
                    TargetPolicy(settings.webhook_allowed_hosts), await runtime.secrets(), runtime)


def create_app(settings: Settings, engines: dict | None = None,
               clock: Callable[[], float] | None = None) -> FastAPI:
    """``engines``: exactly these (tests), or None for what the settings configure; ``clock``:
    the monotonic clock of time-dependent state (cooldowns, channel reloads), injected by tests."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await open_state(settings, engines, clock)
        app.state.ideohub = state
        # webhooks and task callbacks from the outbox (notify.worker); app.state.wall_clock: a test's clock
        assert state.secrets is not None
        webhooks = Webhooks(settings, state.repo.session, state.targets, state.metrics,
                            getattr(app.state, "wall_clock", None), keys=state.secrets.webhook_key_source)
        app.state.webhooks = webhooks
        state.service.outbox_changed = webhooks.wake  # the service wakes it after writing outbox rows
        webhooks.start()
        loops = [asyncio.create_task(every(settings.sweep_interval_s, lambda: _sweep(state), "sweeper")),
                 asyncio.create_task(every(settings.heartbeat_s, state.service.heartbeat, "generation heartbeat")),
                 asyncio.create_task(every(settings.reconcile_interval_s, state.service.take_over, "reconciler")),
                 state.secrets.start()]  # rotations by the CLI or another process reach this one within ~1 s
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            await state.service.stop()  # hands back or fails what this process runs
            await webhooks.aclose()
            assert state.runtime is not None
            await state.runtime.aclose()

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

    for endpoint in all_endpoints():
        for path in all_paths(endpoint):
            app.add_api_route(
                path,
                _endpoint_handler(endpoint),
                methods=["POST"],
                include_in_schema=path == endpoint.path,
                name=f"{endpoint.operation.value}:{path}",
                summary=f"Ideogram {endpoint.path}",
            )
    for prefix in ("", RELAY_PREFIX):  # after every served path: a /v2 model this server does not know
        app.add_api_route(prefix + "/v2/image/{capability}/{model}", _unknown_v2_model, methods=["POST"],
                          include_in_schema=False)
    app.ideohub_settings = settings  # type: ignore[attr-defined]  # what the server layer configures itself from
    app.include_router(admin_router)
    app.include_router(account_router)  # the key holders' own API: /v2/account/*, /ideogram/v2/account/*
    app.include_router(jwks_router)  # GET /v1/.well-known/jwks.json: the webhook signing keys
    app.include_router(generations.router)  # polling: GET /v1|v2/generations/{id}
    app.include_router(tasks.router)  # the task dialect's queries
    app.include_router(console_router)  # /console: the console's pages, static files and operator sessions
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
            if isinstance(parsed, SpecRequest):  # RESPONSE assets: our own results, read back as uploads
                parsed = await resolve_assets(parsed, state.repo, state.storage, key, state.limits.images)
            submission = await read_submission(fields, request.query_params, state.targets,
                                               always_async=endpoint.always_async)
            if state.settings.log_prompts and parsed.prompt_text:
                request.state.prompt = parsed.prompt_text
            return parsed, submission

        def admitted(generation_id: str) -> None:
            request.state.generation_id = generation_id

        if _dry_run(request, endpoint):
            quote = await state.service.quote(endpoint.operation, parse, key, request.state.request_id)
            return JSONResponse(price_quote(quote))
        submitted = await state.service.submit(endpoint.operation, parse, key, request.state.request_id,
                                               idempotency_key=idempotency_key, on_admitted=admitted)
        if submitted.outcome is not None:
            request.state.engine_seconds = submitted.outcome.engine_seconds
            request.state.queue_seconds = submitted.outcome.queue_seconds
            return Response(submitted.outcome.body, media_type="application/json")
        if submitted.submission.task_dialect:
            return tasks.submitted(request.state.request_id, submitted.generation_id, submitted.created_at)
        return JSONResponse(acknowledgement(endpoint.operation, submitted.generation_id, submitted.request))

    handler.__name__ = f"post_{endpoint.operation.value.replace('-', '_')}"
    return handler


async def _unknown_v2_model(capability: str, model: str) -> Response:
    """Ideogram's 404 for a model it does not have, naming it and the ones this server serves."""
    known = sorted(e.operation.v2_parts[1] for e in all_endpoints()
                   if e.operation.family is Family.V2 and e.operation.v2_parts[0] == capability)
    if not known:
        raise NotFound(f"capability: /v2/image/{capability[:60]} is not an image capability")
    raise NotFound(f"model: {model[:60]} is not a {capability} model here; known: {', '.join(known)}")


def _dry_run(request: Request, endpoint: Endpoint) -> bool:
    """``?dry_run=true``: a price quote instead of a generation (Ideogram's on /v2; ours elsewhere)."""
    raw = request.query_params.get("dry_run")
    if raw is None or raw.strip().lower() in ("false", "0", ""):
        return False
    if raw.strip().lower() not in ("true", "1"):
        raise InvalidRequest("dry_run", "must be true or false")
    if not endpoint.quotable:
        raise InvalidRequest("dry_run", f"{endpoint.path} has no price quotes (describe and magic prompt run at once)")
    return True


_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidRequest("Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces")
    return value


async def serve_image(request: Request, name: str) -> Response:
    """Any instance serves any image at its signed URL: streamed from storage, or (``image_delivery
    = "redirect"`` on an object store) a 302 to a short-lived presigned URL of the object."""
    state: AppState = request.app.state.ideohub
    q = request.query_params
    exp = state.signer.verify(name, q.get("exp"), q.get("kid"), q.get("sig"))
    remaining = max(1, exp - int(time.time()))
    etag = f'"{name.rsplit(".", 1)[0]}"'
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={remaining}, immutable"}
    storage = state.storage
    not_modified = etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
    redirect = state.settings.image_delivery == "redirect"
    if not_modified or redirect or request.method == "HEAD":  # the size (and existence) without the bytes
        size = await storage.size(name)
        if size is None:
            raise NotFound("the image no longer exists")
        if not_modified:
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":  # answered here: a presigned URL is signed for GET only
            return Response(headers={**headers, "Content-Length": str(size)}, media_type=media_type(name))
        ttl = min(remaining, _PRESIGNED_MAX_S)
        url = await storage.presigned_url(name, ttl)
        if url is not None:  # else this backend (or this image) is served from here
            # the redirect may be reused for half the URL's life, so a cached one still has time to be followed
            return RedirectResponse(url, status_code=302, headers={"Cache-Control": f"private, max-age={ttl // 2}"})
    stream = await storage.stream(name)
    if stream is None:
        raise NotFound("the image no longer exists")
    return StreamingResponse(stream, media_type=media_type(name),
                             headers={**headers, "Content-Length": str(stream.size)})


async def healthz(request: Request) -> JSONResponse:
    state: AppState = request.app.state.ideohub
    dispatch = state.service.dispatch
    execution = "in-process" if dispatch.inline else "queue"  # with the queue, `ideohub worker`s run the engines
    body = {"status": "ok", "version": __version__, "execution": execution,
            "engines": sorted(o.value for o in state.service.engines)}
    if any(getattr(e, "name", "").startswith("local-") for e in state.service.engines.values()):
        from ..engines.gpu import accelerator  # what the local engines run on: a real GPU (Vulkan) or the CPU

        body["accelerator"] = await anyio.to_thread.run_sync(accelerator)  # the first probe loads Vulkan
    return JSONResponse(body)


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


async def _sweep(state: AppState) -> None:
    removed = await state.service.sweep()
    if removed:
        log.info('{"sweeper": "deleted expired images", "count": %d}', removed)
