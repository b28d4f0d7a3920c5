"""A simulated Ideogram upstream: a real HTTP app that answers like api.ideogram.ai and the relays.

Every image endpoint on its official path and its relay aliases, each request validated
against the **official OpenAPI request schema** of its endpoint (the newest vendored document
declaring the path: mid-2026 for legacy and 3.0, the October-2026 extract for 4.0 and /v2,
``sim.schema``) plus the cross-field rules the schema cannot say (``sim.rules``) — never by
ideohub's own parsers, so every relay test through the sim checks our outgoing requests against
the official schema. Answers come in the spec's response shapes (4.0 and /v2: filled from the
path's 200 schema, ``sim.answers``) with signed, expiring image links that the sim serves itself
as real PNGs.

/v2 requests that ask for it (``async: true``, ``webhook_url``) or must (async-only paths) are
acknowledged with the spec's ``{generation_id, …}``; the result is polled at
``GET /v2/generations/{id}`` or ``/v1/generations/{id}`` (``sim.generations``; no webhook is
posted). ``?dry_run=true`` on a /v2 path is validated and answered with a ``PriceQuote``.
Faults are scriptable per test (``Fault``, ``POST /_sim/faults``) and every request is logged
(``RecordedRequest``, ``GET /_sim/requests``; polls as kind "poll") without the API key's value.

Control endpoints (no auth): ``GET/POST/DELETE /_sim/faults``, ``GET/DELETE /_sim/requests``,
``POST /_sim/reset``, ``GET/POST /_sim/config``, ``GET /_sim/stats``, ``GET /_sim/health``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..domain.operations import Family, Operation
from ..domain.sizes import Size
from . import answers, outputs
from .answers import fill, fill_items, new_id, now_iso
from .faults import Fault, FaultQueue
from .generations import GENERATION_ID, Generation, GenerationStore
from .images import EPHEMERAL_PREFIX, ImageBank, ImageKey, new_image_id, parse_image_id, signed_path, verify
from .intake import (
    SimFile,
    SimInputError,
    json_instance,
    media_type,
    multipart_instance,
    multipart_parts,
    parse_json,
    parse_multipart,
    read_body,
)
from .rules import IMAGE_REQUEST_OPS, check_images, check_rules, check_undeclared, output_sizes, request_fields, validate
from .schema import BodySchema, GenerationsEndpoint, SimEndpoint, endpoints, generations_endpoint

__all__ = ["AUTH_STYLES", "ImageLimits", "RecordedRequest", "SimConfig", "SimState", "create_sim_app", "multipart_parts"]

AUTH_STYLES = ("api-key", "bearer")
_MALFORMED_BODY = b'{"created": "2025-01-01T00:00:00+00:00", "data": [{"url": "https://'
_REDACTED_HEADERS = frozenset({"authorization", "api-key", "cookie", "proxy-authorization"})


SEED_MAX = 2_147_483_647  # the spec's Seed maximum
PROMPT_SAFETY_ERROR = "Prompt provided failed safety check due to the inclusion of prohibited content."
IMAGE_SAFETY_ERROR = "Image provided failed safety check due to the inclusion of prohibited content."
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 410: "Gone",
           413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def problem(status: int, detail: str, title: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """RFC 7807 problem JSON: what the reference expects the official service to answer for a 4xx."""
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers)


# ---------------------------------------------------------------- configuration


@dataclass
class ImageLimits:
    """Per uploaded file. The mid-2026 docs allow 25 MB (the April 2026 spec said 10 MB)."""

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 4096 * 4096


@dataclass
class SimConfig:
    """Everything the sim does that a test may want to change. Read per request, so changing a
    field on a running in-process sim (or ``POST /_sim/config``) takes effect at once."""

    api_keys: tuple[str, ...] = ("sim-key",)  # the keys accepted
    auth_styles: tuple[str, ...] = AUTH_STYLES  # "api-key" (Api-Key: K) and/or "bearer" (Authorization: Bearer K)
    require_auth: bool = True  # False: any or no key is accepted
    base_url: str | None = None  # link prefix; None = the request's own scheme://host:port
    url_ttl_s: int = 3600  # image links expire this long after the response
    url_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    banned_words: tuple[str, ...] = ("forbidden",)  # prompt contains one (case-insensitive) → 422 {"error"}
    unsafe_input_marker: str = "unsafe-input"  # an upload's filename contains it → 422 image safety error
    unsafe_output_marker: str = "unsafe-output"  # prompt contains it → every item is_image_safe false, url null
    partly_unsafe_marker: str = "partly-unsafe"  # prompt contains it → items 0, 2, 4, … unsafe
    magic_prompt_suffix: str = ", highly detailed, cinematic lighting"  # appended when magic prompt is ON/AUTO
    magic_prompt_when_omitted: bool = True  # an omitted magic_prompt(_option) counts as AUTO (rewrites)
    caption: str = "A simulated image: two flat colour blocks over a soft red-blue gradient."  # describe/no-prompt
    latency_s: float = 0.0  # added to every API request (simulated render time)
    download_latency_s: float = 0.0  # added to every image download
    max_in_flight: int | None = None  # more concurrent API requests than this → 429 (the official limit is 10)
    max_body_bytes: int = 64 * 1024 * 1024
    strict_fields: bool = True  # a field the official schema does not declare is a 400 (catches misspelt fields)
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    image_variants: int = 4  # distinct pictures per size (picked by seed)
    warm_sizes: tuple[str, ...] = ("1024x1024",)  # encoded (all variants) at startup
    image_cache_entries: int = 256
    record_requests: bool = True
    max_recorded: int = 10_000  # request-log ring buffer size
    faults: tuple[Fault, ...] = ()  # queued at startup
    async_pending_polls: int = 1  # an async generation answers "pending" to this many polls, then "completed"
    failed_generation_marker: str = "failed-generation"  # in an async request's prompt → the generation "failed"
    max_generations: int = 10_000  # async generations kept for polling (the oldest are forgotten)
    max_output_pixels: int = 4096 * 4096  # a sim limit on drawn images: a larger /v2 output is scaled down
    quote_usd_micros_per_image: int = 30_000  # /v2 ?dry_run=true answers a PriceQuote at this price per image

    def to_dict(self, redact: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "url_secret":
                value = "<redacted>" if redact else value.hex()
            elif f.name == "api_keys" and redact:
                value = [f"<{len(value)} keys>"]
            elif f.name == "image_limits":
                value = asdict(value)
            elif f.name == "faults":
                value = [x.to_dict() for x in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SimConfig":
        return cls(**_coerce_config(data))


_CONFIG_FIELDS = {f.name for f in fields(SimConfig)}
_TUPLE_FIELDS = {"api_keys", "auth_styles", "banned_words", "warm_sizes"}


def _coerce_config(data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - _CONFIG_FIELDS
    if unknown:
        raise ValueError(f"unknown SimConfig fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in _TUPLE_FIELDS:
            value = (value,) if isinstance(value, str) else tuple(value)
        elif name == "url_secret" and isinstance(value, str):
            value = bytes.fromhex(value)
        elif name == "image_limits" and isinstance(value, dict):
            value = ImageLimits(**value)
        elif name == "faults":
            value = tuple(v if isinstance(v, Fault) else Fault.from_dict(v) for v in value)
        out[name] = value
    bad = set(out.get("auth_styles", ())) - set(AUTH_STYLES)
    if bad:
        raise ValueError(f"auth_styles must be among {AUTH_STYLES}, got {sorted(bad)}")
    return out


# ---------------------------------------------------------------- the request log


@dataclass
class RecordedRequest:
    seq: int
    time: float  # unix seconds when it arrived
    kind: str  # "api", "poll" (GET of an async generation) or "download"
    method: str
    path: str
    query: str
    operation: str | None  # Operation value ("generate", "v3-remix", …) for API requests
    auth: str | None  # "api-key", "bearer", "api-key+bearer", "other" (another Authorization scheme) or None
    auth_ok: bool  # whether a presented key was accepted (the key itself is never recorded)
    content_type: str | None  # media type, without parameters
    headers: dict[str, str]  # request headers minus Authorization / Api-Key / Cookie
    parts: list[dict[str, str | None]] | None  # multipart parts in order: {"name", "filename", "content_type"}
    fields: dict[str, Any] | None  # the values the official schema accepted (multipart text coerced to the
    #                                schema's types; files as {filename, content_type, bytes, size}); None if refused
    error: str | None = None  # why the request was refused (the schema or a rule), naming the field
    fault: str | None = None  # the fault kind applied, if any
    status: int | None = None  # the status answered (None while still in progress)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecordedRequest":
        return cls(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})


_RECORD_FIELDS = {f.name for f in fields(RecordedRequest)}


# ---------------------------------------------------------------- state


class SimState:
    """Config, fault queue, request log and image cache of one sim app (``app.state.sim``)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.faults = FaultQueue()
        self.faults.add(*(Fault(**asdict(f)) for f in config.faults))
        self.images = ImageBank(config.image_cache_entries)
        self.generations = GenerationStore(config.max_generations)
        self._log: deque[RecordedRequest] = deque(maxlen=max(1, config.max_recorded))
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.generation = 0  # bumped by reset()/release(): ends every hang in progress
        self.in_flight = 0
        self.served = {"api": 0, "download": 0}

    # log
    def record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._log.append(rec)

    def next_seq(self) -> int:
        return next(self._seq)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # lifecycle
    def release(self) -> None:
        self.generation += 1

    def reset(self) -> None:
        """Clear faults, the request log and async generations, and end every hang in progress."""
        self.faults.clear()
        self.clear_requests()
        self.generations.clear()
        self.release()

    def configure(self, changes: dict[str, Any]) -> None:
        changes = _coerce_config(changes)
        for name, value in changes.items():
            setattr(self.config, name, value)
        if "max_recorded" in changes:
            with self._lock:
                self._log = deque(self._log, maxlen=max(1, self.config.max_recorded))
        if "image_cache_entries" in changes:
            self.images.max_entries = max(1, self.config.image_cache_entries)
        if "faults" in changes:
            self.faults.add(*(Fault(**asdict(f)) for f in changes["faults"]))

    def stats(self) -> dict[str, Any]:
        return {
            "api_requests": self.served["api"],
            "downloads": self.served["download"],
            "in_flight": self.in_flight,
            "png_encodes": self.images.encodes,
            "pending_faults": len(self.faults.pending()),
            "async_generations": len(self.generations),
        }


# ---------------------------------------------------------------- helpers


def _auth(request: Request, config: SimConfig) -> tuple[str | None, bool]:
    """The header style(s) presented and whether a presented key is accepted."""
    styles: list[str] = []
    ok = False
    api_key = request.headers.get("api-key")
    if api_key is not None:
        styles.append("api-key")
        ok = ok or ("api-key" in config.auth_styles and api_key.strip() in config.api_keys)
    authz = request.headers.get("authorization")
    if authz is not None:
        scheme, _, token = authz.strip().partition(" ")
        if scheme.lower() == "bearer":
            styles.append("bearer")
            ok = ok or ("bearer" in config.auth_styles and token.strip() in config.api_keys)
        else:
            styles.append("other")
    if not config.require_auth:
        ok = True
    return ("+".join(styles) or None), ok


def _auth_failure(status: int, presented: bool) -> Response:
    detail = "the API key is not valid" if presented else "missing API key: send 'Api-Key: <key>'"
    resp = problem(status, detail, "Unauthorized" if status == 401 else "Forbidden")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'ApiKey header="Api-Key"'
    return resp


def _status_fault(fault: Fault) -> Response:
    status = fault.status or 500
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    if fault.body is not None:
        return Response(fault.body, status_code=status, headers=headers, media_type=_body_media_type(fault.body))
    detail = {
        429: "Too many in-flight requests (simulated rate limit)",
        500: "Internal error (simulated)",
        502: "Bad gateway (simulated)",
        503: "Service temporarily unavailable (simulated)",
    }.get(status, f"Simulated failure {status}")
    return problem(status, detail, headers=headers)


def _body_media_type(body: str) -> str:
    """A raw fault body that is JSON goes out as application/json, anything else as text/plain."""
    if body[:1] in ("{", "["):
        try:
            json.loads(body)
            return "application/json"
        except ValueError:
            pass
    return "text/plain"


_TRUNCATING: contextvars.ContextVar[bool] = contextvars.ContextVar("ideohub_sim_truncating", default=False)


class _QuietTruncation(logging.Filter):
    """uvicorn logs an error when a response ends short; a truncated_download does it on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_TRUNCATING.get() and "without completing response" in record.getMessage())


_filter_lock = threading.Lock()
_filter_installed = False


def _install_log_filter() -> None:
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            logging.getLogger("uvicorn.error").addFilter(_QuietTruncation())
            _filter_installed = True


class _TruncatedResponse(Response):
    """Declares the full Content-Length, sends half the bytes, then ends (uvicorn closes the connection)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(status_code=200)
        self._data = data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _TRUNCATING.set(True)
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"image/png"), (b"content-length", str(len(self._data)).encode())],
        })
        await send({"type": "http.response.body", "body": self._data[: len(self._data) // 2], "more_body": True})


# ---------------------------------------------------------------- an accepted request


@dataclass
class _Parsed:
    """A request the official schema and the rules accepted, in the schema's own terms."""

    operation: Operation
    body: BodySchema
    values: dict[str, Any]  # the validated instance (multipart files stand in as their filename)
    files: dict[str, list[SimFile]]
    dry_run: bool = False  # /v2 ``?dry_run=true``: validated and priced, not run

    @property
    def _fields(self) -> dict[str, Any]:
        return request_fields(self.operation, self.values)[0]

    @property
    def prompt(self) -> str:
        """``prompt``, 4.0's ``text_prompt``, or its ``json_prompt`` as JSON text ("" if none)."""
        return outputs.prompt_text(self._fields)

    @property
    def num_images(self) -> int:
        return self._fields.get("num_images") or 1

    @property
    def seed(self) -> int | None:
        return self._fields.get("seed")

    def magic_on(self, when_omitted: bool) -> bool:
        """The prompt is rewritten when magic prompt is ON or AUTO; an omitted one counts as AUTO
        (``when_omitted``) on endpoints whose schema has the field."""
        name = "magic_prompt" if self.operation.is_v3 else "magic_prompt_option"
        value = self._fields.get(name)
        if value is None:
            declared = self.body.nested_props("image_request") if self.operation in IMAGE_REQUEST_OPS else None
            names = declared["properties"] if declared is not None else self.body.props
            return name in names and when_omitted
        return value in ("ON", "AUTO")

    def style_type(self) -> str | None:
        if self.operation is Operation.V3_GENERATE_TRANSPARENT:
            return None
        style = self._fields.get("style_type")
        return style if style and style != "AUTO" else "GENERAL"

    def view(self) -> dict[str, Any]:
        """What the request log shows: the values, each file as {filename, content_type, bytes, size}."""
        out = dict(self.values)
        for name, files in self.files.items():
            prop = self.body.props[name]
            out[name] = files[0].view() if prop.kind == "file" else [f.view() for f in files]
        return out


# ---------------------------------------------------------------- the app


class _Sim:
    def __init__(self, state: SimState) -> None:
        self.state = state

    # ------------------------------------------------------------ shared

    def _new_record(self, request: Request, kind: str, operation: Operation | None, auth: str | None,
                    auth_ok: bool) -> RecordedRequest | None:
        if not self.state.config.record_requests:
            return None
        ctype = request.headers.get("content-type")
        return RecordedRequest(
            seq=self.state.next_seq(),
            time=time.time(),
            kind=kind,
            method=request.method,
            path=request.scope["path"],
            query=request.scope.get("query_string", b"").decode("latin-1"),
            operation=operation.value if operation else None,
            auth=auth,
            auth_ok=auth_ok,
            content_type=ctype.split(";")[0].strip().lower() if ctype else None,
            headers={k: v for k, v in request.headers.items() if k not in _REDACTED_HEADERS},
            parts=None,
            fields=None,
        )

    async def _hang(self, request: Request, seconds: float) -> None:
        gen = self.state.generation
        deadline = time.monotonic() + seconds
        while self.state.generation == gen:
            left = deadline - time.monotonic()
            if left <= 0 or await request.is_disconnected():
                return
            await asyncio.sleep(min(0.05, left))

    def _base_url(self, request: Request) -> str:
        if self.state.config.base_url:
            return self.state.config.base_url.rstrip("/")
        scope = request.scope
        host = request.headers.get("host")
        if not host:
            server = scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}".rstrip("/")

    # ------------------------------------------------------------ API endpoints

    def api_route(self, endpoint: SimEndpoint):  # type: ignore[no-untyped-def]
        async def handle(request: Request) -> Response:
            state = self.state
            state.served["api"] += 1
            state.in_flight += 1
            try:
                return await self._api(request, endpoint)
            finally:
                state.in_flight -= 1

        return handle

    async def _api(self, request: Request, endpoint: SimEndpoint) -> Response:
        state, config = self.state, self.state.config
        auth, auth_ok = _auth(request, config)
        rec = self._new_record(request, "api", endpoint.operation, auth, auth_ok)
        over_limit = config.max_in_flight is not None and state.in_flight > config.max_in_flight
        fault = None if over_limit else state.faults.take("api", request.scope["path"], endpoint.operation)

        parsed: _Parsed | None = None
        error: SimInputError | None = None
        try:
            parsed = await self._parse(request, endpoint, rec)
        except SimInputError as exc:
            error = exc
        if rec is not None:
            rec.fields = parsed.view() if parsed is not None else None
            rec.error = error.detail if error is not None else None
            rec.fault = fault.kind if fault is not None else None
            state.record(rec)

        response = await self._answer(request, endpoint, auth, auth_ok, over_limit, fault, parsed, error)
        if rec is not None:
            rec.status = response.status_code
        return response

    async def _parse(self, request: Request, endpoint: SimEndpoint, rec: RecordedRequest | None) -> "_Parsed":
        """The request as the official schema reads it, or the SimInputError that refuses it."""
        config = self.state.config
        mtype = media_type(request.headers.get("content-type"))
        body = endpoint.bodies.get(mtype or "")
        if body is None:
            raise SimInputError("Content-Type", f"must be {' or '.join(endpoint.bodies)}, not {mtype or 'missing'}", 415)
        raw = await read_body(request, config.max_body_bytes)
        if body.media_type == "multipart/form-data":
            parts = parse_multipart(raw, request.headers["content-type"])
            if rec is not None:
                rec.parts = [p.header_view() for p in parts]
            values, files = multipart_instance(body, parts, config.strict_fields)
        else:
            values, files = json_instance(body, parse_json(raw)), []
        validate(body, values)
        if config.strict_fields:
            check_undeclared(body, values)
        check_images(files, config.image_limits.max_bytes, config.image_limits.max_pixels)
        by_name: dict[str, list[SimFile]] = {}
        for f in files:
            by_name.setdefault(f.field_name, []).append(f)
        check_rules(endpoint.operation, values, by_name, frozenset(body.props))
        return _Parsed(endpoint.operation, body, values, by_name, _dry_run(request, endpoint))

    async def _answer(self, request: Request, endpoint: SimEndpoint, auth: str | None, auth_ok: bool,
                      over_limit: bool, fault: Fault | None, parsed: "_Parsed | None",
                      error: SimInputError | None) -> Response:
        config = self.state.config
        if over_limit:
            return problem(429, "Too many in-flight requests", headers={"Retry-After": "1"})
        answered, expired = await self._shared_fault(
            request, fault, lambda f: _auth_failure(f.status or endpoint.auth_status, presented=auth is not None))
        if answered is not None:
            return answered
        if fault is not None and fault.kind == "malformed_json":
            return Response(_MALFORMED_BODY, media_type="application/json")
        if config.latency_s:
            await asyncio.sleep(config.latency_s)
        if not auth_ok:
            return _auth_failure(endpoint.auth_status, presented=auth is not None)
        if error is not None:
            return problem(error.status, error.detail)
        assert parsed is not None
        if parsed.dry_run:  # "validated and priced but not run: … no safety review"
            return JSONResponse(answers.quote(endpoint, parsed.values, config.quote_usd_micros_per_image))
        prompt = parsed.prompt
        if prompt and config.banned_words:
            low = prompt.lower()
            if any(w.lower() in low for w in config.banned_words if w):
                return JSONResponse({"error": PROMPT_SAFETY_ERROR}, status_code=422)
        marker = config.unsafe_input_marker
        if marker and any(marker in (f.filename or "") for fs in parsed.files.values() for f in fs):
            return JSONResponse({"error": IMAGE_SAFETY_ERROR}, status_code=422)
        if endpoint.operation.family in (Family.V4, Family.V2):
            return JSONResponse(await self._spec_result(request, endpoint, parsed, expired))
        return JSONResponse(await self._result(request, parsed, expired))

    def _expiry(self, expired: bool) -> int:
        return int(time.time()) + (-60 if expired else self.state.config.url_ttl_s)

    async def _link(self, request: Request, key: ImageKey, exp: int) -> str:
        """A signed link to the PNG for ``key`` (encoded now if the bank does not hold it)."""
        if self.state.images.get(key) is None:
            await anyio.to_thread.run_sync(self.state.images.render, key)
        return self._base_url(request) + signed_path(self.state.config.url_secret, new_image_id(key), exp)

    async def _result(self, request: Request, req: "_Parsed", expired: bool) -> dict[str, Any]:
        """A legacy or 3.0 answer."""
        config = self.state.config
        op = req.operation
        if op is Operation.DESCRIBE:
            return {"descriptions": [{"text": config.caption}]}
        size, upscaled = output_sizes(op, req.values, req.files)
        original = req.prompt
        prompt = original if original else config.caption
        if original and req.magic_on(config.magic_prompt_when_omitted):
            prompt = original + config.magic_prompt_suffix
        all_unsafe = bool(original and config.unsafe_output_marker and config.unsafe_output_marker in original)
        partly = bool(original and config.partly_unsafe_marker and config.partly_unsafe_marker in original)
        style = req.style_type()
        alpha = op is Operation.V3_GENERATE_TRANSPARENT
        file_size = upscaled or size
        exp = self._expiry(expired)
        variants = max(1, config.image_variants)
        data = []
        for i in range(req.num_images):
            seed = req.seed if req.seed is not None else random.randint(0, SEED_MAX)
            safe = not (all_unsafe or (partly and i % 2 == 0))
            url = None
            if safe:
                key = ImageKey(file_size.width, file_size.height, (seed + i) % variants, alpha)
                url = await self._link(request, key, exp)
            item: dict[str, Any] = {"url": url, "prompt": prompt, "resolution": str(size)}
            if upscaled is not None:
                item["upscaled_resolution"] = str(upscaled)
            item["is_image_safe"] = safe
            item["seed"] = seed
            if style is not None:
                item["style_type"] = style
            data.append(item)
        return {"created": datetime.now(UTC).isoformat(), "data": data}

    # ------------------------------------------------------------ 4.0 and /v2 answers

    async def _spec_result(self, request: Request, endpoint: SimEndpoint, req: "_Parsed",
                           expired: bool) -> dict[str, Any]:
        """A 4.0 or /v2 answer, filled in the endpoint's official 200 schema (``answers``)."""
        op = endpoint.operation
        config = self.state.config
        if op is Operation.V4_MAGIC_PROMPT:
            return answers.magic_prompt(endpoint, req.values, config.magic_prompt_suffix)
        if op is Operation.V4_DESCRIBE or (op.family is Family.V2 and op.v2_parts[0] == "describe"):
            return answers.describe(endpoint, req.values, config.caption)
        values = req.values
        out = outputs.plan(endpoint, values, req.files, config.max_output_pixels)
        original = req.prompt
        prompt = original or config.caption
        if original and outputs.magic_applies(endpoint, values, config.magic_prompt_when_omitted):
            prompt = original + config.magic_prompt_suffix
        seed = values["seed"] if isinstance(values.get("seed"), int) else random.randint(0, SEED_MAX)
        items = await self._spec_items(request, out, prompt, original, seed, expired)
        known: dict[str, Any] = {"created": now_iso(), "generation_id": new_id(), "seed": seed,
                                 "width": out.size.width, "height": out.size.height, "response_type": "url",
                                 "generation_kind": "sampling"}
        node = endpoint.response_node()
        if op.family is Family.V2 and _is_async(endpoint, values):
            self._keep(endpoint, known["generation_id"], known["created"], items, original)
            return fill(endpoint.doc, node, known)  # the acknowledgement: no data
        known["data"] = fill_items(endpoint.doc, node, items)
        return fill(endpoint.doc, node, known)

    def _keep(self, endpoint: SimEndpoint, generation_id: str, created: str, items: list[dict[str, Any]],
              original: str) -> None:
        """Store an async generation's result for polling ("failed" when the prompt has the marker).
        The sim posts nothing to a ``webhook_url``: the result is only polled."""
        config = self.state.config
        marker = config.failed_generation_marker
        failed = bool(marker and original and marker in original)
        self.state.generations.add(Generation(
            generation_id, created, items, answers.poll_object_type(endpoint.doc, endpoint.response_node()),
            max(0, config.async_pending_polls), "content_policy_violation" if failed else None))

    async def _spec_items(self, request: Request, out: outputs.Output, prompt: str, original: str, seed: int,
                          expired: bool) -> list[dict[str, Any]]:
        """Everything the sim knows of each produced image; ``answers.fill_items`` keeps what the schema declares."""
        config = self.state.config
        all_unsafe = bool(original and config.unsafe_output_marker and config.unsafe_output_marker in original)
        partly = bool(original and config.partly_unsafe_marker and config.partly_unsafe_marker in original)
        exp = self._expiry(expired)
        variants = max(1, config.image_variants)
        items = []
        for i in range(out.count):
            safe = not (all_unsafe or (partly and i % 2 == 0))
            key = ImageKey(out.size.width, out.size.height, (seed + i) % variants, out.alpha)
            url = await self._link(request, key, exp) if safe else None
            items.append({"url": url, "prompt": prompt, "resolution": str(out.size), "is_image_safe": safe,
                          "seed": seed, "width": out.size.width, "height": out.size.height})
        return items

    # ------------------------------------------------------------ polling async generations

    def generation_route(self, endpoint: GenerationsEndpoint):  # type: ignore[no-untyped-def]
        async def handle(request: Request) -> Response:
            state, config = self.state, self.state.config
            state.served["api"] += 1
            auth, auth_ok = _auth(request, config)
            rec = self._new_record(request, "poll", None, auth, auth_ok)
            fault = state.faults.take("api", request.scope["path"])
            if rec is not None:
                rec.fault = fault.kind if fault is not None else None
                state.record(rec)
            response = await self._poll(request, endpoint, fault, auth, auth_ok)
            if rec is not None:
                rec.status = response.status_code
                rec.error = _detail(response)
            return response

        return handle

    async def _poll(self, request: Request, endpoint: GenerationsEndpoint, fault: Fault | None, auth: str | None,
                    auth_ok: bool) -> Response:
        answered, _expired = await self._shared_fault(
            request, fault, lambda f: _auth_failure(f.status or 401, presented=auth is not None))
        if answered is not None:
            return answered
        if fault is not None and fault.kind == "malformed_json":
            return Response(_MALFORMED_BODY, media_type="application/json")
        if not auth_ok:
            return _auth_failure(401, presented=auth is not None)
        generation_id = request.path_params["generation_id"]
        if not GENERATION_ID.match(generation_id):
            return problem(400, "generation_id: is not a valid URL-safe base64 ID")
        found = self.state.generations.poll(generation_id)
        if found is None:
            return problem(404, "generation_id: Generation not found.")
        generation, status = found
        node = endpoint.response_node()
        known: dict[str, Any] = {"generation_id": generation.generation_id, "status": status,
                                 "created": generation.created}
        if status == "completed":
            known["response_type"] = "url"
            known["data"] = fill_items(endpoint.doc, node, generation.items, generation.object_type)
        elif status == "failed":
            known["failure_reason"] = generation.failure_reason
        return JSONResponse(fill(endpoint.doc, node, known))

    # ------------------------------------------------------------ image downloads

    async def download(self, request: Request) -> Response:
        state, config = self.state, self.state.config
        state.served["download"] += 1
        auth, auth_ok = _auth(request, config)
        rec = self._new_record(request, "download", None, auth, auth_ok)
        fault = state.faults.take("download", request.scope["path"])
        if rec is not None:
            rec.fault = fault.kind if fault is not None else None
            state.record(rec)
        response = await self._download(request, fault)
        if rec is not None:
            rec.status = response.status_code
        return response

    async def _shared_fault(self, request: Request, fault: Fault | None,
                            unauthorized: Callable[[Fault], Response]) -> tuple[Response | None, bool]:
        """The faults API calls and downloads share (latency, hang, status, unauthorized, expired
        links): the response when the fault answers, and whether links are to come out expired."""
        if fault is None:
            return None, False
        if fault.latency_s:
            await asyncio.sleep(fault.latency_s)
        if fault.kind == "hang":
            await self._hang(request, fault.hang_s)
        elif fault.kind == "status":
            return _status_fault(fault), False
        elif fault.kind == "unauthorized":
            return unauthorized(fault), False
        return None, fault.kind == "expired_links"

    async def _download(self, request: Request, fault: Fault | None) -> Response:
        config = self.state.config
        answered, expired = await self._shared_fault(
            request, fault, lambda f: problem(f.status or 403, "the link is not valid (simulated)"))
        if answered is not None:
            return answered
        if config.download_latency_s:
            await asyncio.sleep(config.download_latency_s)
        name: str = request.path_params["name"]
        if not name.endswith(".png"):
            return problem(404, "no such image")
        image_id = name[:-4]
        exp = verify(config.url_secret, image_id, request.query_params.get("exp"), request.query_params.get("sig"))
        if exp is None:
            return problem(403, "the link's signature is missing or not valid", "Forbidden")
        key = parse_image_id(image_id)
        if key is None:
            return problem(404, "no such image")
        if expired or exp <= time.time():
            return problem(410, "the link has expired", "Gone")
        data = self.state.images.get(key)
        if data is None:
            data = await anyio.to_thread.run_sync(self.state.images.render, key)
        if fault is not None and fault.kind == "truncated_download":
            return _TruncatedResponse(data)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    # ------------------------------------------------------------ control endpoints

    async def faults(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"faults": [f.to_dict() for f in self.state.faults.pending()]})
        if request.method == "DELETE":
            self.state.faults.clear()
            return JSONResponse({"faults": []})
        try:
            body = json.loads(await request.body() or b"null")
            items = body.get("faults", body) if isinstance(body, dict) and "faults" in body else body
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError("send a fault object, a list of them, or {\"faults\": [...]}")
            new = [Fault.from_dict(i) for i in items]
        except (ValueError, TypeError) as exc:
            return problem(400, str(exc))
        self.state.faults.add(*new)
        return JSONResponse({"queued": len(new), "faults": [f.to_dict() for f in self.state.faults.pending()]})

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.clear_requests()
            return JSONResponse({"requests": []})
        return JSONResponse({"requests": [r.to_dict() for r in self.state.requests()]})

    async def reset(self, _request: Request) -> Response:
        self.state.reset()
        return JSONResponse({"reset": True})

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = json.loads(await request.body() or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("send a JSON object of SimConfig fields")
                self.state.configure(body)
            except (ValueError, TypeError) as exc:
                return problem(400, str(exc))
        return JSONResponse({"config": self.state.config.to_dict(redact=True)})

    async def stats(self, _request: Request) -> Response:
        return JSONResponse(self.state.stats())

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"ok": True})


def _is_async(endpoint: SimEndpoint, values: dict[str, Any]) -> bool:
    """/v2 runs a request asynchronously when it asks (``async: true``, a ``webhook_url``) or must."""
    return endpoint.async_only or values.get("async") is True or bool(values.get("webhook_url"))


def _dry_run(request: Request, endpoint: SimEndpoint) -> bool:
    """The ``dry_run`` query parameter where the path declares it (a boolean: true or false)."""
    raw = request.query_params.get("dry_run")
    if raw is None or "dry_run" not in endpoint.query:
        return False
    if raw.lower() not in ("true", "false"):
        raise SimInputError("dry_run", f"{raw[:40]!r} is not of type 'boolean'")
    return raw.lower() == "true"


def _detail(response: Response) -> str | None:
    """A refusal's problem detail (for the request log), None for a success."""
    if response.status_code < 400 or not isinstance(response, JSONResponse):
        return None
    try:
        return json.loads(bytes(response.body)).get("detail")
    except (ValueError, AttributeError):
        return None


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _unhandled(_request: Request, exc: Exception) -> Response:
    logging.getLogger("ideohub.sim").exception("sim error", exc_info=exc)
    return problem(500, f"simulator error: {exc.__class__.__name__}")


def create_sim_app(config: SimConfig | None = None) -> Starlette:
    """The simulated upstream as an ASGI app; its state is ``app.state.sim`` (a ``SimState``)."""
    config = config if config is not None else SimConfig()
    state = SimState(config)
    sim = _Sim(state)
    _install_log_filter()

    routes: list[Route] = []
    for endpoint in endpoints().values():
        handler = sim.api_route(endpoint)
        for path in endpoint.paths():
            routes.append(Route(path, handler, methods=["POST"]))
    polls = generations_endpoint()
    if polls is not None:
        for path in polls.paths():
            routes.append(Route(path, sim.generation_route(polls), methods=["GET"]))
    routes += [
        Route(EPHEMERAL_PREFIX + "{name}", sim.download, methods=["GET"]),
        Route("/_sim/faults", sim.faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/requests", sim.requests, methods=["GET", "DELETE"]),
        Route("/_sim/reset", sim.reset, methods=["POST"]),
        Route("/_sim/config", sim.config, methods=["GET", "POST"]),
        Route("/_sim/stats", sim.stats, methods=["GET"]),
        Route("/_sim/health", sim.health, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        keys = []
        for text in config.warm_sizes:
            s = Size.parse(text)
            keys += [ImageKey(s.width, s.height, v, False) for v in range(max(1, config.image_variants))]
        for key in keys:
            await anyio.to_thread.run_sync(state.images.render, key)
        try:
            yield
        finally:
            state.release()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={StarletteHTTPException: _http_error, Exception: _unhandled},
    )
    app.state.sim = state
    return app
