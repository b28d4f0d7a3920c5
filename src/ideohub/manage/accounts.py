"""Accounts and their credit: creation (name and price group), listing, top-ups and adjustments.

The money rule is ``domain.money`` (``parse_usd`` then ``check_credit``), applied here before the
database is touched and again by the ledger; the CLI and the admin API both come through here,
so "1.0000001", "-1" or "NaN" mean the same thing (the same 400, naming the field) everywhere."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..domain.errors import InvalidRequest, NotFound
from ..domain.money import check_credit, parse_usd
from ..domain.prices import micros_to_usd
from ..store.ledger import Ledger
from ..store.models import Account
from .errors import text_field

MAX_NAME = 200  # accounts.name is VARCHAR(200)


def account_view(a: Account) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "group": a.group_name, "unlimited": bool(a.unlimited),
            "balance_usd": micros_to_usd(a.balance_micros), "created_at": a.created_at}


class Accounts:
    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger

    def groups(self) -> list[str]:
        """The price groups an account may belong to: ``default`` and the configured ``[groups]``."""
        return ["default", *(g for g in self.settings.groups if g != "default")]

    async def create(self, name: str, group: str = "default", unlimited: bool = False) -> Account:
        text_field(name, "name", MAX_NAME, required=True)
        if group not in self.groups():
            raise InvalidRequest("group", f"unknown group {group[:64]!r}; configured: {', '.join(self.groups())} "
                                          "(configure more under [groups])")
        if not isinstance(unlimited, bool):
            raise InvalidRequest("unlimited", "must be true or false")
        return await self.ledger.create_account(name, group, unlimited)

    async def list(self) -> list[Account]:
        return await self.ledger.list_accounts()

    async def get(self, account_id: str) -> Account:
        account = await self.ledger.get_account(account_id)
        if account is None:
            raise NotFound(f"no account {account_id[:64]}")
        return account

    async def topup(self, account_id: str, usd: str | float, note: str | None = None) -> int:
        """Add credit (positive); returns the new balance in micro-dollars."""
        return await self._credit("topup", account_id, usd, note)

    async def adjust(self, account_id: str, usd: str | float, note: str | None) -> int:
        """Correct a balance either way, with a note saying why; returns the new balance."""
        return await self._credit("adjust", account_id, usd, note)

    async def _credit(self, kind: str, account_id: str, usd: str | float, note: str | None) -> int:
        micros = parse_usd(usd, "usd")
        credit = check_credit(kind, micros, note)  # type: ignore[arg-type]
        if kind == "topup":
            return await self.ledger.topup(account_id, credit.micros, credit.note)
        return await self.ledger.adjust(account_id, credit.micros, credit.note)
