"""The admin API (``/admin/*``): accounts, top-ups, keys and usage. Authenticated by its own
token (``admin_token`` in the config; ``Authorization: Bearer <token>``), never by API keys.
Disabled (404) when no admin token is configured."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BaseModel, Field, field_validator

from ..domain.errors import InvalidRequest, NotFound
from ..domain.money import parse_usd  # re-exported: the money rules live in domain.money
from ..domain.operations import Operation
from ..domain.untrusted import check_text
from ..domain.prices import micros_to_usd
from ..store.ledger import DEFAULT_ACCOUNT
from ..store.models import Account, ApiKey
from ..store.usage import usage_report
from .body_limits import admin_denial


async def require_admin(request: Request) -> Any:
    """The same check ``BodyLimitMiddleware`` makes before any admin body is read (kept here too,
    so a route is never open when the app is mounted without that middleware)."""
    state = request.app.state.ideohub
    denial = admin_denial(state.settings, request.headers.get("authorization"))
    if denial is not None:
        raise denial
    return state


State = Annotated[Any, Depends(require_admin)]
router = APIRouter(prefix="/admin", tags=["admin"])


INT32_MAX = 2**31 - 1


# ------------------------------------------------------------ models


def _clean(value: str) -> str:
    problem = check_text(value, 200)
    if problem:
        raise ValueError(problem)
    return value


# Text an operator stores: the same rule as every API text field (no control characters — a NUL
# is a 500 on PostgreSQL — no unpaired surrogates), within the column's width.
Text = Annotated[str, AfterValidator(_clean)]


class AccountIn(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    group: str = Field(default="default", max_length=64)
    unlimited: bool = False


class AccountOut(BaseModel):
    id: str
    name: str
    group: str
    unlimited: bool
    balance_usd: str
    created_at: datetime

    @classmethod
    def of(cls, a: Account) -> "AccountOut":
        return cls(id=a.id, name=a.name, group=a.group_name, unlimited=a.unlimited,
                   balance_usd=micros_to_usd(a.balance_micros), created_at=a.created_at)


class TopupIn(BaseModel):
    usd: str = Field(description="Amount in US dollars, e.g. \"10\" or \"0.25\"; must be positive "
                                 "(corrections go through /adjust)", max_length=40)
    note: Text | None = Field(default=None, max_length=200)


class AdjustIn(BaseModel):
    usd: str = Field(description="Correction in US dollars, negative to debit, e.g. \"-1.25\"; not zero", max_length=40)
    note: Text = Field(description="Why (kept on the ledger row)", min_length=1, max_length=200)


class BalanceOut(BaseModel):
    account_id: str
    balance_usd: str


class KeyIn(BaseModel):
    account_id: str = DEFAULT_ACCOUNT
    name: Text = Field(default="", max_length=200)  # the column's width: longer is a 500 on PostgreSQL
    rpm: int | None = Field(default=None, ge=1, le=INT32_MAX)  # an INTEGER column
    max_images_in_flight: int | None = Field(default=None, ge=1, le=INT32_MAX)
    expires_at: datetime | None = None
    allowed_operations: list[str] | None = None
    spend_cap_usd: str | None = Field(default=None, max_length=40)

    @field_validator("allowed_operations")
    @classmethod
    def _ops(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for op in v:
                if op not in Operation._value2member_map_:
                    raise ValueError(f"unknown operation {op!r}")
        return v


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
    revoked: bool
    created_at: datetime

    @classmethod
    def of(cls, k: ApiKey) -> "KeyOut":
        return cls(id=k.id, name=k.name, prefix=k.prefix, account_id=k.account_id, rpm=k.rpm,
                   max_images_in_flight=k.max_images_in_flight, expires_at=k.expires_at,
                   allowed_operations=k.allowed_operations,
                   spend_cap_usd=micros_to_usd(k.spend_cap_micros) if k.spend_cap_micros is not None else None,
                   revoked=k.revoked_at is not None, created_at=k.created_at)


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


# ------------------------------------------------------------ routes


@router.post("/accounts", response_model=AccountOut, status_code=201)
async def create_account(body: AccountIn, state: State) -> AccountOut:
    if body.group not in state.service.prices.groups:
        raise InvalidRequest("group", f"unknown group {body.group!r}; configured: {', '.join(state.service.prices.groups)}")
    return AccountOut.of(await state.service.ledger.create_account(body.name, body.group, body.unlimited))


@router.get("/accounts", response_model=list[AccountOut])
async def list_accounts(state: State) -> list[AccountOut]:
    return [AccountOut.of(a) for a in await state.service.ledger.list_accounts()]


@router.get("/accounts/{account_id}", response_model=AccountOut)
async def get_account(account_id: str, state: State) -> AccountOut:
    account = await state.service.ledger.get_account(account_id)
    if account is None:
        raise NotFound(f"no account {account_id}")
    return AccountOut.of(account)


@router.post("/accounts/{account_id}/topup", response_model=BalanceOut)
async def topup(account_id: str, body: TopupIn, state: State) -> BalanceOut:
    balance = await state.service.ledger.topup(account_id, parse_usd(body.usd, "usd"), body.note)
    return BalanceOut(account_id=account_id, balance_usd=micros_to_usd(balance))


@router.post("/accounts/{account_id}/adjust", response_model=BalanceOut)
async def adjust(account_id: str, body: AdjustIn, state: State) -> BalanceOut:
    """Correct a balance (either sign) with a note; the same rule as ``ideohub adjust``."""
    balance = await state.service.ledger.adjust(account_id, parse_usd(body.usd, "usd"), body.note)
    return BalanceOut(account_id=account_id, balance_usd=micros_to_usd(balance))


@router.post("/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyIn, state: State) -> KeyCreated:
    if await state.service.ledger.get_account(body.account_id) is None:
        raise InvalidRequest("account_id", f"no account {body.account_id}")
    spend_cap = parse_usd(body.spend_cap_usd, "spend_cap_usd") if body.spend_cap_usd is not None else None
    if spend_cap is not None and spend_cap < 0:
        raise InvalidRequest("spend_cap_usd", "must not be negative")
    row, plaintext = await state.repo.create_key(
        body.name, account_id=body.account_id, rpm=body.rpm, max_images_in_flight=body.max_images_in_flight,
        expires_at=body.expires_at, allowed_operations=body.allowed_operations, spend_cap_micros=spend_cap,
    )
    return KeyCreated(**KeyOut.of(row).model_dump(), key=plaintext)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(state: State) -> list[KeyOut]:
    return [KeyOut.of(k) for k in await state.repo.list_keys()]


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, state: State) -> None:
    if not await state.repo.revoke_key(key_id):
        raise NotFound(f"no active key {key_id}")


@router.get("/usage", response_model=list[UsageRow])
async def usage(
    state: State,
    by: Literal["day", "key", "operation"] = "day",
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
) -> list[UsageRow]:
    since = datetime.now(UTC) - timedelta(days=days)
    rows = await usage_report(state.repo.session, since, by)
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
