"""Rules for moving an account's credit by hand, shared by the CLI, the admin API and (later)
the management layer, so a top-up means the same thing everywhere.

- A **top-up** adds credit: strictly positive. ``ideohub topup ACCT -- -1`` used to debit
  silently; a mistyped sign must be an error, not a movement.
- An **adjustment** corrects a balance either way (a refund by hand, a top-up entered twice):
  non-zero, and it must say why (the note is kept on its ledger row).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from .errors import InvalidRequest
from .untrusted import check_text

MICROS_PER_USD = 1_000_000
MAX_USD = Decimal(1_000_000_000)  # far beyond any real amount, far inside a BIGINT of micro-dollars
MAX_NOTE_CHARS = 200  # the ledger's note column

CreditKind = Literal["topup", "adjust"]
CREDIT_KINDS: tuple[str, ...] = ("topup", "adjust")  # ledger kinds that are not charges


def parse_usd(value: str | float | int, field: str) -> int:
    """A decimal amount of US dollars as integer micro-dollars; 400 naming ``field`` otherwise."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(field, "must be a decimal number of US dollars") from None
    if not amount.is_finite():  # NaN, sNaN, Infinity: Decimal parses them, arithmetic on them raises
        raise InvalidRequest(field, "must be a decimal number of US dollars")
    if abs(amount) > MAX_USD:
        raise InvalidRequest(field, f"must be at most {MAX_USD} US dollars")
    micros = (amount * MICROS_PER_USD).to_integral_value()
    if micros != amount * MICROS_PER_USD:
        raise InvalidRequest(field, "has more precision than a micro-dollar")
    return int(micros)


@dataclass(frozen=True)
class Credit:
    """A checked movement of credit (what the ledger row will say)."""

    kind: CreditKind
    micros: int
    note: str | None


def check_credit(kind: CreditKind, micros: int, note: str | None, *,
                 amount_field: str = "usd", note_field: str = "note") -> Credit:
    """The one rule for top-ups and adjustments (see the module docstring); ``Ledger.topup``
    and ``Ledger.adjust`` apply it, whoever calls them. Field names are the caller's."""
    if note is not None:
        note = note.strip() or None
        if note is not None and (problem := check_text(note, MAX_NOTE_CHARS)):
            raise InvalidRequest(note_field, problem)
    if kind == "topup":
        if micros <= 0:
            raise InvalidRequest(amount_field, "a top-up must be a positive amount; to correct a balance, "
                                               "make an adjustment with a note (ideohub adjust, POST .../adjust)")
    elif kind == "adjust":
        if micros == 0:
            raise InvalidRequest(amount_field, "an adjustment must not be zero")
        if note is None:
            raise InvalidRequest(note_field, "an adjustment needs a note saying why")
    else:  # pragma: no cover - typed
        raise ValueError(kind)
    return Credit(kind, micros, note)
