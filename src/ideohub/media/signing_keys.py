"""The URL-signing key ring: which keys exist, which is newest and how a new one is added. One
module, so the CLI, the server and a later management layer share these rules.

The ring is a document ``{"signing_keys": {id: hex secret}, "signing_key_order": [ids, oldest
first]}``, kept sealed in the database (``store.secrets``; earlier versions kept the same fields
in ``secrets.json``, imported from there once). The newest key is the last one *created*:
ordering ids as strings picked ``k9`` over ``k10``. Documents written before the order was
recorded are read with their ids ordered by number (``k1`` < ``k2`` < ``k10``), which is the
order ``rotate`` always created them in.

A server sees the ring through a ``KeySource``: ``store.secrets`` keeps it in memory and follows a
rotation by another process within about a second; verifying a link whose key id it does not know
yet looks again at once, so a link signed by another process a moment after a rotation verifies too.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

ORDER_FIELD = "signing_key_order"
KEYS_FIELD = "signing_keys"
_NUMBERED = re.compile(r"^k(\d+)$")


@dataclass(frozen=True)
class KeyRing:
    keys: Mapping[str, bytes]  # id → secret
    order: tuple[str, ...]  # ids, oldest first
    pinned: str | None = None  # Settings.signing_key_id: sign with this one instead of the newest

    @property
    def newest(self) -> str:
        return self.order[-1]

    @property
    def active(self) -> str:
        return self.pinned or self.newest


class KeySource(Protocol):
    def current(self) -> KeyRing: ...
    def refresh(self) -> KeyRing:
        """The ring as it is right now (for a key id not seen before)."""
        ...


def _number_order(kid: str) -> tuple[int, int, str]:
    m = _NUMBERED.match(kid)
    return (0, int(m.group(1)), kid) if m else (1, 0, kid)


def key_order(data: Mapping[str, Any]) -> list[str]:
    """Creation order from a ring document (old ones: by number)."""
    keys = data.get(KEYS_FIELD) or {}
    recorded = [k for k in data.get(ORDER_FIELD) or [] if k in keys]
    rest = sorted((k for k in keys if k not in recorded), key=_number_order)
    return recorded + rest


def ring_from(data: Mapping[str, Any], pinned: str | None = None, where: str = "the database") -> KeyRing:
    keys = {kid: bytes.fromhex(v) for kid, v in (data.get(KEYS_FIELD) or {}).items()}
    if not keys:
        raise ValueError(f"{where} holds no signing keys")
    if pinned is not None and pinned not in keys:
        raise ValueError(f"signing_key_id {pinned!r} is not in {where}")
    return KeyRing(keys, tuple(key_order(data)), pinned)


def new_ring_fields() -> dict[str, Any]:
    """A new ring document with one key."""
    return {KEYS_FIELD: {"k1": secrets.token_hex(32)}, ORDER_FIELD: ["k1"]}


def with_order(data: dict[str, Any]) -> bool:
    """Record the creation order in an older document; True if it changed."""
    order = key_order(data)
    if data.get(ORDER_FIELD) == order:
        return False
    data[ORDER_FIELD] = order
    return True


def add_key(data: dict[str, Any]) -> str:
    """Add a new newest key to a ring document; returns its id (``k<n+1>``)."""
    order = key_order(data)
    numbers = [int(m.group(1)) for k in order if (m := _NUMBERED.match(k))]
    kid = f"k{max(numbers, default=0) + 1}"
    data.setdefault(KEYS_FIELD, {})[kid] = secrets.token_hex(32)
    data[ORDER_FIELD] = [*order, kid]
    return kid


class StaticKeys:
    """A fixed ring (tests, tools)."""

    def __init__(self, keys: Mapping[str, bytes], active_kid: str) -> None:
        if active_kid not in keys:
            raise ValueError(f"signing key {active_kid!r} is not among {sorted(keys)}")
        self._ring = KeyRing(dict(keys), tuple(keys), active_kid)

    def current(self) -> KeyRing:
        return self._ring

    def refresh(self) -> KeyRing:
        return self._ring
