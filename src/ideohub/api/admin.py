"""The admin API (``/admin/*``): accounts, credit, keys with every limit, channels, prices, the
request log and the dashboard's figures. A thin HTTP layer over ``ideohub.manage``, where every
rule lives (the CLI and the console go through the same code).

Authenticated as an operator (``console.auth.operator_denial``: ``Authorization: Bearer
<admin_token>``, or the console's session cookie with its CSRF header), never by API keys.
Disabled (404) when no admin token is configured. Bodies and parameters are typed here for the
OpenAPI document; ``manage`` checks them (a 400 naming the field and the rule)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from ..domain.errors import NotFound
from ..domain.prices import micros_to_usd
from ..manage import Manager
from ..manage.accounts import MAX_NAME, account_view
from ..manage.keys import INT32_MAX, key_view
from ..manage.requests import MAX_LIMIT
from ..manage.stats import MAX_HOURS
from ..store.ledger import DEFAULT_ACCOUNT

from ..console.auth import operator_denial  # the one decision: bearer token, or session cookie + CSRF


async def require_admin(request: Request) -> Any:
    """Refuse anyone but an operator (checked here too, so a route is never open when the app is
    mounted without ``BodyLimitMiddleware``, which checks first for the bearer token)."""
    denial = await operator_denial(request)
    if denial is not None:
        raise denial
    return request.app.state.ideohub


State = Annotated[Any, Depends(require_admin)]
router = APIRouter(prefix="/admin", tags=["admin"])


def manager(state: Any) -> Manager:
    return Manager.of_state(state)


# ------------------------------------------------------------ models


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is named, not dropped

    name: str = Field(min_length=1, max_length=MAX_NAME)
    group: str = Field(default="default", max_length=64)
    unlimited: StrictBool = False


class AccountOut(BaseModel):
    id: str
    name: str
    group: str
    unlimited: bool
    balance_usd: str
    created_at: datetime


class TopupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is named, not dropped

    usd: str = Field(description="Amount in US dollars, e.g. \"10\" or \"0.25\"; must be positive "
                                 "(corrections go through /adjust)", max_length=40)
    note: str | None = Field(default=None, max_length=200)


class AdjustIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is named, not dropped

    usd: str = Field(description="Correction in US dollars, negative to debit, e.g. \"-1.25\"; not zero", max_length=40)
    note: str | None = Field(default=None, description="Why (required; kept on the ledger row)", max_length=200)


class BalanceOut(BaseModel):
    account_id: str
    balance_usd: str


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str = Field(default=DEFAULT_ACCOUNT, max_length=40)
    name: str = Field(default="", max_length=200)  # the column's width: longer is a 500 on PostgreSQL
    rpm: int | None = Field(default=None, ge=1, le=INT32_MAX, description="Requests per minute; omitted: "
                                                                            "the server's default_rpm")
    max_images_in_flight: int | None = Field(default=None, ge=1, le=INT32_MAX,
                                             description="Omitted: the server's default_max_images_in_flight")
    expires_at: datetime | None = None
    allowed_operations: list[str] | None = Field(default=None, description="Operation names (GET /admin/operations); "
                                                                           "omitted: every operation")
    spend_cap_usd: str | None = Field(default=None, max_length=40)


class KeyPatch(BaseModel):
    """Only the fields sent change; an explicit null clears that limit."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    rpm: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_images_in_flight: int | None = Field(default=None, ge=1, le=INT32_MAX)
    expires_at: datetime | None = None
    allowed_operations: list[str] | None = None
    spend_cap_usd: str | None = Field(default=None, max_length=40)


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    account_id: str | None
    rpm: int | None
    max_images_in_flight: int | None
    expires_at: datetime | None
    allowed_operations: list[str] | None
    spend_cap_usd: str | None
    spent_usd: str
    revoked: bool
    status: Literal["active", "revoked", "expired"]
    created_at: datetime


class KeyCreated(KeyOut):
    key: str = Field(description="The secret; shown once, stored only as a keyed hash")


class UsageRow(BaseModel):
    group: str | None
    requests: int
    images: int
    charged_usd: str
    upstream_cost_usd: str
    failed: int
    avg_latency_ms: float | None


class OperationOut(BaseModel):
    operation: str
    family: str
    path: str


Names = list[str] | str  # a list, or a comma-separated string


class ChannelChange(BaseModel):
    """The fields a channel is added or edited with; omitted ones take the channel-defaults
    table's values for its kind (on add) or stay as they are (on edit)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=64)
    kind: str | None = Field(default=None, description="relay (default) or ideogram")
    base_url: str | None = Field(default=None, max_length=500)
    key: str | None = Field(default=None, max_length=1024,
                            description="The upstream's key; stored encrypted, never returned")
    auth: str | None = Field(default=None, description="bearer or api-key (relay only)")
    path_style: str | None = Field(default=None, description="official, ideogram or ideogram-v1")
    priority: StrictInt | None = None
    weight: StrictInt | None = None
    max_in_flight: StrictInt | None = None
    operations: Names | None = Field(default=None, description="Operations or families (legacy, 3.0, 4.0, v2)")
    models: Names | None = None
    timeout_s: StrictFloat | None = None
    connect_timeout_s: StrictFloat | None = None
    cost_multiplier: StrictFloat | None = None
    account_fields: StrictBool | None = None
    enabled: StrictBool | None = None


class ChannelIn(ChannelChange):
    """A new channel: a name and the upstream's key are required."""

    name: str = Field(max_length=64)
    key: str = Field(max_length=1024, description="The upstream's key; stored encrypted, never returned")


class ChannelPatch(ChannelChange):
    """Only the fields sent change; ``key`` omitted keeps the stored key."""


class ChannelErrorOut(BaseModel):
    at: datetime
    outcome: Literal["failed", "auth"] = Field(
        description="failed: 429, 5xx, a timeout, no connection or a malformed answer; auth: the key refused or out of credit")
    status_code: int | None


class ChannelHealthOut(BaseModel):
    state: Literal["ok", "failing", "cooling", "disabled"]
    consecutive_failures: int
    cooling_until: datetime | None
    in_flight: int
    last_error: str | None
    last_ok_at: datetime | None
    latency_ms_p50: float | None
    attempts_1h: int
    errors_1h: int
    recent_errors: list[ChannelErrorOut] = Field(description="the last hour's latest failed attempts, newest first")


class ChannelOut(BaseModel):
    name: str
    kind: str
    base_url: str = Field(description="Credentials in the URL masked (***@)")
    auth: str
    path_style: str
    priority: int
    weight: int
    max_in_flight: int
    operations: list[str] | None
    operations_text: str
    models: list[str] | None
    timeout_s: float
    connect_timeout_s: float
    cost_multiplier: float
    account_fields: bool
    enabled: bool
    source: str
    health: ChannelHealthOut


class ProbeOut(BaseModel):
    ok: bool
    status_code: int | None
    latency_ms: float
    detail: str


class RequestItem(BaseModel):
    id: str
    generation_id: str | None
    account_id: str | None
    key_id: str | None
    operation: str
    state: str
    status_code: int | None
    channel: str | None
    engine: str | None
    mode: str | None
    images: int
    price_usd: str
    latency_ms: float | None
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    failure_reason: str | None


class RequestPage(BaseModel):
    items: list[RequestItem]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page; null at the end")


class AttemptOut(BaseModel):
    channel: str
    outcome: str
    status_code: int | None
    latency_ms: float
    images: int
    cost_usd: str
    created_at: datetime


class ImageOut(BaseModel):
    url: str | None = Field(description="Signed; null once the image expired")
    width: int
    height: int
    media_type: str
    expires_at: datetime | None


class RequestDetail(RequestItem):
    params: dict[str, Any] = Field(description="The request's parameters; prompts only with log_prompts")
    started_at: datetime | None
    attempts: list[AttemptOut]
    images: list[ImageOut]  # type: ignore[assignment]  # the item's count is images_delivered here
    images_delivered: int


class StatsBucket(BaseModel):
    start: datetime
    requests: int
    images: int
    revenue_usd: str
    upstream_cost_usd: str
    errors: int
    error_rate: float


class StatsOperation(BaseModel):
    operation: str
    requests: int
    images: int
    revenue_usd: str
    upstream_cost_usd: str
    errors: int


class StatsChannel(BaseModel):
    channel: str
    attempts: int
    errors: int
    upstream_cost_usd: str
    latency_ms_p50: float | None


class StatsOut(BaseModel):
    hours: int
    bucket: Literal["hour", "day"]
    operation: str | None = Field(description="the scope: this operation's requests and their upstream attempts")
    channel: str | None = Field(description="the scope: the requests this channel served and its own attempts")
    buckets: list[StatsBucket]
    by_operation: list[StatsOperation]
    by_channel: list[StatsChannel]


class PriceRow(BaseModel):
    operation: str
    tier: str
    character_reference: bool
    upscale_factor: str
    usd: str
    by_group: dict[str, str] = Field(description="What an account of each price group pays per unit, as charged")
    source: Literal["default", "override"]


class PricesOut(BaseModel):
    groups: dict[str, float]
    rows: list[PriceRow]


# ------------------------------------------------------------ accounts and credit


@router.post("/accounts", response_model=AccountOut, status_code=201)
async def create_account(body: AccountIn, state: State) -> Any:
    return account_view(await manager(state).accounts.create(body.name, body.group, body.unlimited))


@router.get("/accounts", response_model=list[AccountOut])
async def list_accounts(state: State) -> Any:
    return [account_view(a) for a in await manager(state).accounts.list()]


@router.get("/accounts/{account_id}", response_model=AccountOut)
async def get_account(account_id: str, state: State) -> Any:
    return account_view(await manager(state).accounts.get(account_id))


@router.post("/accounts/{account_id}/topup", response_model=BalanceOut)
async def topup(account_id: str, body: TopupIn, state: State) -> BalanceOut:
    balance = await manager(state).accounts.topup(account_id, body.usd, body.note)
    return BalanceOut(account_id=account_id, balance_usd=micros_to_usd(balance))


@router.post("/accounts/{account_id}/adjust", response_model=BalanceOut)
async def adjust(account_id: str, body: AdjustIn, state: State) -> BalanceOut:
    """Correct a balance (either sign) with a note; the same rule as ``ideohub adjust``."""
    balance = await manager(state).accounts.adjust(account_id, body.usd, body.note)
    return BalanceOut(account_id=account_id, balance_usd=micros_to_usd(balance))


# ------------------------------------------------------------ keys


@router.post("/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyIn, state: State) -> Any:
    """A key; limits left out take the server's defaults, exactly as ``ideohub keys create``."""
    row, plaintext = await manager(state).keys.create(**body.model_dump())
    return {**key_view(row), "key": plaintext}


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(state: State, account_id: Annotated[str | None, Query(max_length=40)] = None) -> Any:
    return [key_view(k) for k in await manager(state).keys.list(account_id)]


@router.patch("/keys/{key_id}", response_model=KeyOut)
async def update_key(key_id: str, body: KeyPatch, state: State) -> Any:
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    return key_view(await manager(state).keys.update(key_id, changes))


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, state: State) -> Response:
    await manager(state).keys.revoke(key_id)
    return Response(status_code=204)


@router.get("/operations", response_model=list[OperationOut])
async def operations(state: State) -> Any:
    """Every operation a key may be limited to or a channel may serve."""
    from ..manage.prices import operations_catalogue

    return operations_catalogue()


# ------------------------------------------------------------ channels


@asynccontextmanager
async def _channels(state: Any) -> AsyncIterator[Any]:
    """The channel manager, with this instance's live state or (a fleet's API instance) a reader of
    the shared one, closed when the route is done."""
    m = manager(state)
    shared = await m.shared_live_state()
    try:
        yield m.channels(live=shared)
    finally:
        if shared is not None:
            await shared.aclose()


@router.get("/channels", response_model=list[ChannelOut])
async def list_channels(state: State) -> Any:
    """Every channel with its health: stored (shared by every instance), live (in flight,
    cooldowns) and the last hour's attempts. Never a key."""
    async with _channels(state) as channels:
        return await channels.views()


@router.post("/channels", response_model=ChannelOut, status_code=201)
async def add_channel(body: ChannelIn, state: State) -> Any:
    async with _channels(state) as channels:
        channel = await channels.add(body.model_dump(exclude_unset=True))
        return await channels.view(channel.name)


@router.patch("/channels/{name}", response_model=ChannelOut)
async def update_channel(name: str, body: ChannelPatch, state: State) -> Any:
    async with _channels(state) as channels:
        await channels.update(name, {f: getattr(body, f) for f in body.model_fields_set})
        return await channels.view(name)


@router.delete("/channels/{name}", status_code=204)
async def remove_channel(name: str, state: State) -> Response:
    async with _channels(state) as channels:
        await channels.remove(name)
    return Response(status_code=204)


@router.post("/channels/{name}/test", response_model=ProbeOut)
async def test_channel(name: str, state: State) -> Any:
    """Reachability and the key, at no cost (an empty V3 generate must be refused for its missing
    prompt, not for the key)."""
    async with _channels(state) as channels:
        return (await channels.test(name)).public()


# ------------------------------------------------------------ the request log, figures and prices


@router.get("/requests", response_model=RequestPage)
async def list_requests(
    request: Request, state: State,
    account_id: str | None = None, key_id: str | None = None,
    operation: Annotated[str | None, Query(description="An operation name (GET /admin/operations)")] = None,
    state_: Annotated[str | None, Query(alias="state", description="received, queued, running, done or failed")] = None,
    status_code: Annotated[str | None, Query(description="100 to 599")] = None,
    channel: str | None = None,
    since: Annotated[str | None, Query(description="ISO 8601 date-time")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 date-time (exclusive)")] = None,
    limit: Annotated[str | None, Query(description=f"1 to {MAX_LIMIT} (default 50)")] = None,
    before: Annotated[str | None, Query(description="The previous page's next_before")] = None,
) -> Any:
    """The request log, newest first, a page at a time."""
    from ..manage.requests import parse_filters

    filters = parse_filters(dict(request.query_params))
    return await manager(state).requests.page(filters)


@router.get("/requests/{request_id}", response_model=RequestDetail)
async def get_request(request_id: str, state: State) -> Any:
    """One request with its parameters, upstream attempts, charge and images (signed URLs while
    they live)."""
    return await manager(state).requests.detail(request_id)


@router.get("/stats", response_model=StatsOut)
async def stats(
    state: State,
    hours: Annotated[str | None, Query(description=f"1 to {MAX_HOURS} (default 168)")] = None,
    bucket: Annotated[str | None, Query(description="hour or day (default: hour up to 72 hours, else day)")] = None,
    operation: Annotated[str | None, Query(description="only this operation (GET /admin/operations lists them)")] = None,
    channel: Annotated[str | None, Query(description="only the requests this channel served and its attempts")] = None,
) -> Any:
    return await manager(state).stats(hours, bucket, operation, channel)


@router.get("/prices", response_model=PricesOut)
async def prices(state: State) -> Any:
    """The effective price table (list prices and the configuration's overrides) and the groups."""
    return manager(state).prices()


@router.get("/usage", response_model=list[UsageRow])
async def usage(
    state: State,
    by: Annotated[str, Query(description="day, key or operation")] = "day",
    days: Annotated[str, Query(description="1 to 3650")] = "30",
) -> list[UsageRow]:
    rows = (await manager(state).usage(days, by))[by]
    return [
        UsageRow(group=r[by], requests=r["requests"], images=r["images"],
                 charged_usd=micros_to_usd(r["charged_micros"]), upstream_cost_usd=micros_to_usd(r["upstream_cost_micros"]),
                 failed=r["failed"], avg_latency_ms=r["avg_latency_ms"])
        for r in rows
    ]


class DeliveryOut(BaseModel):
    kind: str
    seq: int
    state: str  # pending | delivered | dead | superseded
    attempts: int
    last_status: int | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class GenerationOut(BaseModel):
    """A generation's record as an operator needs it (never the answer's signed links)."""

    generation_id: str
    request_id: str
    account_id: str | None
    key_id: str | None
    operation: str
    mode: str | None
    state: str
    status_code: int | None
    failure_reason: str | None
    error: str | None
    price_usd: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deliveries: list[DeliveryOut]


@router.get("/generations/{generation_id}", response_model=GenerationOut)
async def get_generation(generation_id: str, state: State) -> GenerationOut:
    """One generation with its webhook and callback deliveries (a ``dead`` one is visible here)."""
    from ..notify.outbox import Outbox

    record = await state.repo.get_generation(generation_id)
    if record is None:
        raise NotFound(f"generation_id: no generation {generation_id}")
    deliveries = await Outbox(state.repo.session).of_generation(generation_id)
    return GenerationOut(
        generation_id=generation_id, request_id=record.id, account_id=record.account_id, key_id=record.key_id,
        operation=record.operation, mode=record.mode, state=record.state, status_code=record.status_code,
        failure_reason=record.failure_reason, error=record.error, price_usd=micros_to_usd(record.price_micros),
        created_at=record.created_at, started_at=record.started_at, finished_at=record.finished_at,
        deliveries=[DeliveryOut(**asdict(d)) for d in deliveries],
    )
