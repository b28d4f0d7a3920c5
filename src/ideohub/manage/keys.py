"""API keys and every per-key limit: one set of rules and defaults for ``ideohub keys create``,
``POST /admin/keys`` and ``PATCH /admin/keys/{id}``.

- Omitted ``rpm`` and ``max_images_in_flight`` take ``default_rpm`` and
  ``default_max_images_in_flight`` from the settings, however the key is made.
- An edit sets only the fields it names; naming one as None clears that limit.
- The secret is returned once, by ``create``; listings carry only its prefix.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ..config import Settings
from ..domain.errors import InvalidRequest, NotFound
from ..domain.money import parse_usd
from ..domain.operations import Operation
from ..domain.prices import micros_to_usd
from ..store.ledger import DEFAULT_ACCOUNT, Ledger
from ..store.models import ApiKey
from ..store.repository import Repository, utcnow
from .errors import Conflict, text_field

INT32_MAX = 2**31 - 1  # rpm and max_images_in_flight are INTEGER columns
MAX_NAME = 200  # api_keys.name is VARCHAR(200)
EDITABLE = ("name", "rpm", "max_images_in_flight", "expires_at", "allowed_operations", "spend_cap_usd")


def check_name(value: object) -> str:
    return text_field("" if value is None else value, "name", MAX_NAME)


def check_limit(value: object, field: str) -> int | None:
    """A positive whole number that fits the column, or None (no limit of its own)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT32_MAX:
        raise InvalidRequest(field, f"must be an integer from 1 to {INT32_MAX}")
    return value


def check_operations(value: object, field: str = "allowed_operations") -> list[str] | None:
    """A list of operation names (a comma-separated string is split); None allows every operation."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(field, "must be a list of operation names")
    for op in value:
        if op not in Operation._value2member_map_:
            raise InvalidRequest(field, f"unknown operation {op[:80]!r} (GET /admin/operations lists them)")
    return list(dict.fromkeys(value))


def check_spend_cap(value: object, field: str = "spend_cap_usd") -> int | None:
    """US dollars (a decimal string) → micro-dollars, never negative; None is no cap."""
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidRequest(field, "must be a decimal string of US dollars")
    micros = parse_usd(value, field)
    if micros < 0:
        raise InvalidRequest(field, "must not be negative")
    return micros


def check_expiry(value: object, field: str = "expires_at") -> datetime | None:
    """An ISO 8601 date-time (UTC when it names no offset), or None (never expires)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRequest(field, "must be an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise InvalidRequest(field, "must be an ISO 8601 date-time")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


MAX_EXPIRY_DAYS = 36_500


def expiry_after_days(days: float | None) -> datetime | None:
    """``days`` from now (the CLI's ``--expires-in-days``; negative: already expired), or None;
    a finite number of at most 100 years either way."""
    if days is None:
        return None
    if not -MAX_EXPIRY_DAYS <= days <= MAX_EXPIRY_DAYS:  # NaN and infinities fail too
        raise InvalidRequest("expires_at", f"must be a number of days from -{MAX_EXPIRY_DAYS} to {MAX_EXPIRY_DAYS}")
    return datetime.now(UTC) + timedelta(days=days)


def _aware(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo is not None else t.replace(tzinfo=UTC)


def key_status(k: ApiKey, now: datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if k.revoked_at is not None:
        return "revoked"
    expires = _aware(k.expires_at)
    return "expired" if expires is not None and expires <= (now or utcnow()) else "active"


def key_view(k: ApiKey, now: datetime | None = None) -> dict[str, Any]:
    """A key as listings show it: every limit and its status, never the secret."""
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "account_id": k.account_id, "rpm": k.rpm,
            "max_images_in_flight": k.max_images_in_flight, "expires_at": _aware(k.expires_at),
            "allowed_operations": k.allowed_operations,
            "spend_cap_usd": micros_to_usd(k.spend_cap_micros) if k.spend_cap_micros is not None else None,
            "spent_usd": micros_to_usd(k.committed_micros or 0), "revoked": k.revoked_at is not None,
            "status": key_status(k, now), "created_at": _aware(k.created_at)}


class Keys:
    def __init__(self, settings: Settings, repo: Repository, ledger: Ledger) -> None:
        self.settings = settings
        self.repo = repo
        self.ledger = ledger

    async def create(self, *, account_id: str | None = None, name: str | None = "", rpm: int | None = None,
                     max_images_in_flight: int | None = None, expires_at: datetime | str | None = None,
                     allowed_operations: list[str] | str | None = None,
                     spend_cap_usd: str | None = None) -> tuple[ApiKey, str]:
        """A new key (and its secret, shown once). Without an account: the default (unlimited) one."""
        account_id = account_id or DEFAULT_ACCOUNT
        values = {
            "name": check_name(name),
            "rpm": check_limit(rpm, "rpm"),
            "max_images_in_flight": check_limit(max_images_in_flight, "max_images_in_flight"),
            "expires_at": check_expiry(expires_at),
            "allowed_operations": check_operations(allowed_operations),
            "spend_cap_micros": check_spend_cap(spend_cap_usd),
        }
        if values["rpm"] is None:
            values["rpm"] = self.settings.default_rpm
        if values["max_images_in_flight"] is None:
            values["max_images_in_flight"] = self.settings.default_max_images_in_flight
        if await self.ledger.get_account(account_id) is None:
            raise InvalidRequest("account_id", f"no account {account_id[:64]}")
        name = values.pop("name")
        return await self.repo.create_key(name, account_id=account_id, **values)

    async def update(self, key_id: str, changes: dict[str, Any]) -> ApiKey:
        """Set the named fields; a field given as None clears that limit (``name``: to empty)."""
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise InvalidRequest(unknown[0], f"cannot be changed; editable: {', '.join(EDITABLE)}")
        checks = {"name": check_name, "rpm": lambda v: check_limit(v, "rpm"),
                  "max_images_in_flight": lambda v: check_limit(v, "max_images_in_flight"),
                  "expires_at": check_expiry, "allowed_operations": check_operations}
        values: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "spend_cap_usd":
                values["spend_cap_micros"] = check_spend_cap(value)
            else:
                values[field] = checks[field](value)
        current = await self.repo.get_key(key_id)
        if current is None:
            raise NotFound(f"no key {key_id[:64]}")
        if current.revoked_at is not None:
            raise Conflict(f"key {key_id[:64]} is revoked; create a new key instead")
        updated = await self.repo.update_key(key_id, values)
        assert updated is not None
        return updated

    async def list(self, account_id: str | None = None) -> list[ApiKey]:
        return await self.repo.list_keys(account_id)

    async def get(self, key_id: str) -> ApiKey:
        row = await self.repo.get_key(key_id)
        if row is None:
            raise NotFound(f"no key {key_id[:64]}")
        return row

    async def revoke(self, key_id: str) -> None:
        if not await self.repo.revoke_key(key_id):
            raise NotFound(f"no active key {key_id[:64]}")
