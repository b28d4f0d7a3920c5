"""Upstream channels: where the relay engine sends requests, and with which credentials.

A channel is the official API (``kind="ideogram"``: ``Api-Key`` header, official paths) or a
reseller relay (``kind="relay"``: any base URL, ``bearer`` or ``api-key`` auth, paths under
``/ideogram`` or ``/ideogram/v1``). The secret key is kept encrypted at rest (it must be read
back to call the upstream) and never appears in listings, logs or responses.

Which operations a channel serves:

- ``ideogram`` channels: every Ideogram endpoint of every family (legacy, 3.0, 4.0, /v2) unless
  ``operations`` narrows them.
- ``relay`` channels: only the operations they declare. One created without ``operations``
  gets the legacy and 3.0 operations (``LEGACY_V3_OPERATIONS``), written out as an explicit
  list: a reseller that relays those may not relay 4.0 or /v2, so an operator adds the new
  families to a relay channel by listing them (migration 0008 gave existing relay channels
  the same explicit list).
- Models Ideogram resells from other vendors (``op.resold``: GPT Image, Nano Banana, Topaz, …)
  are served only by a channel, of either kind, that lists the operation in ``operations``.

``account_fields`` (default false): whether the request fields that act on the operator's own
upstream account (``domain.operations.ACCOUNT_FIELDS``: ``target_collection_id``,
``custom_model_uri``, ``magic_prompt_system_prompt_config_id``) are forwarded to this channel;
when false the relay drops them from 4.0 and /v2 requests, and a request whose endpoint
requires one goes only to channels that allow them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken

from ...domain.operations import Family, Operation
from ...net.guard import Origin


class ChannelKind(StrEnum):
    IDEOGRAM = "ideogram"
    RELAY = "relay"


class AuthStyle(StrEnum):
    BEARER = "bearer"
    API_KEY = "api-key"


class PathStyle(StrEnum):
    OFFICIAL = "official"  # /generate, /v1/ideogram-v3/generate
    IDEOGRAM = "ideogram"  # /ideogram/generate, /ideogram/v1/ideogram-v3/generate (AiHubMix, OpenAI-Hub)
    IDEOGRAM_V1 = "ideogram-v1"  # /ideogram/v1/generate for legacy paths (AI-YIAPI)


OFFICIAL_BASE_URL = "https://api.ideogram.ai"
IDEOGRAM_DEFAULT_MAX_IN_FLIGHT = 10  # Ideogram's documented default limit of in-flight requests

# ---------------------------------------------------------------- the channel-defaults table
# One table for the config file's [[channels]], the CLI's `channels add` (whose options default
# to None and take these values) and any later management layer. Documented in the README.
DEFAULT_KIND = ChannelKind.RELAY
KIND_DEFAULTS: dict[ChannelKind, dict[str, object]] = {
    ChannelKind.IDEOGRAM: {"auth": AuthStyle.API_KEY, "path_style": PathStyle.OFFICIAL, "base_url": OFFICIAL_BASE_URL},
    ChannelKind.RELAY: {"auth": AuthStyle.BEARER, "path_style": PathStyle.IDEOGRAM},  # base_url required
}
COMMON_DEFAULTS: dict[str, object] = {
    "priority": 0, "weight": 1, "max_in_flight": IDEOGRAM_DEFAULT_MAX_IN_FLIGHT, "timeout_s": 180.0,
    "connect_timeout_s": 10.0, "cost_multiplier": 1.0, "enabled": True, "account_fields": False,
}
# Accepted ranges of the numbers (inclusive).
LIMITS: dict[str, tuple[float, float]] = {
    "priority": (-1000, 1000), "weight": (1, 1000), "max_in_flight": (1, 10_000),
    "timeout_s": (0.001, 3600.0), "connect_timeout_s": (0.001, 600.0), "cost_multiplier": (0.0, 1000.0),
}
_INTEGERS = ("priority", "weight", "max_in_flight")
_BOOLEANS = ("enabled", "account_fields")
# What a relay channel created without ``operations`` serves (and what migration 0008 wrote into
# existing relay rows that had none): the families that existed before 4.0 and /v2.
LEGACY_V3_OPERATIONS: frozenset[Operation] = frozenset(
    o for o in Operation if o.family in (Family.LEGACY, Family.V3))
# Shorthands for whole families in ``operations`` (resold models are never part of one: list each)
FAMILIES = {"legacy": Family.LEGACY, "3.0": Family.V3, "4.0": Family.V4, "v2": Family.V2}


def family_operations(name: str) -> frozenset[Operation]:
    return frozenset(o for o in Operation if o.family is FAMILIES[name] and not o.resold)


def parse_operations(names: list[str]) -> frozenset[Operation]:
    """Operation names and family shorthands (``legacy``, ``3.0``, ``4.0``, ``v2``)."""
    out: set[Operation] = set()
    for name in names:
        if name in FAMILIES:
            out |= family_operations(name)
            continue
        try:
            out.add(Operation(name))
        except ValueError:
            raise ValueError(f"operations: unknown operation {name[:80]!r}; use a family ({', '.join(FAMILIES)}) "
                             f"or an operation such as v4-generate or v2-generate-ideogram-4") from None
    return frozenset(out)


def describe_operations(operations: frozenset[Operation] | None) -> str:
    """For listings: whole families by their shorthand, the rest by name."""
    if operations is None:
        return "all"
    parts: list[str] = []
    rest = set(operations)
    for name in FAMILIES:
        family = family_operations(name)
        if family <= rest:
            parts.append(name)
            rest -= family
    return ",".join([*parts, *sorted(o.value for o in rest)])


_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEY_BAD = re.compile(r"[\x00-\x20\x7f]")


def defaults_for(kind: ChannelKind | str) -> dict[str, object]:
    """Every default a channel of ``kind`` gets, from the one table."""
    return {**COMMON_DEFAULTS, **KIND_DEFAULTS[ChannelKind(kind)]}


@dataclass(frozen=True)
class ChannelHealth:
    """What the database keeps about a channel's health, written only on transitions (ok →
    failing, failing → ok, a cooldown starting), never once per successful request."""

    failures: int = 0  # consecutive
    cooling_until: datetime | None = None
    last_error: str | None = None  # redacted and printable
    last_ok_at: datetime | None = None

    def describe(self, enabled: bool, now: datetime) -> str:
        """``healthy``, ``cooling until …``, ``failing: reason`` or ``disabled``."""
        if not enabled:
            return "disabled"
        if self.failures <= 0:
            return "healthy"
        reason = f": {self.last_error}" if self.last_error else ""
        if self.cooling_until is not None and self.cooling_until > now:
            until = self.cooling_until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            return f"cooling until {until} ({self.failures} failures){reason}"
        return f"failing ({self.failures} failures){reason}"


@dataclass
class Channel:
    """One upstream channel. ``operations`` None means "every operation" for an ``ideogram``
    channel (resold models aside, which only an explicit list serves); a ``relay`` channel built
    without ``operations`` gets ``LEGACY_V3_OPERATIONS`` as an explicit set, so it never starts
    serving a family its operator did not declare."""

    name: str
    kind: ChannelKind = DEFAULT_KIND
    base_url: str | None = None  # default from the table (kind=ideogram: the official API)
    key: str = field(default="", repr=False)
    auth: AuthStyle | None = None  # None: the kind's default
    path_style: PathStyle | None = None  # None: the kind's default
    operations: frozenset[Operation] | None = None  # None: ideogram: every operation; relay: legacy + 3.0
    models: frozenset[str] | None = None  # legacy models / V3 rendering speeds served; None: all
    priority: int = cast(int, COMMON_DEFAULTS["priority"])  # higher tiers are tried first
    weight: int = cast(int, COMMON_DEFAULTS["weight"])  # within a tier, weighted random
    max_in_flight: int = cast(int, COMMON_DEFAULTS["max_in_flight"])
    connect_timeout_s: float = cast(float, COMMON_DEFAULTS["connect_timeout_s"])
    timeout_s: float = cast(float, COMMON_DEFAULTS["timeout_s"])
    enabled: bool = True
    cost_multiplier: float = cast(float, COMMON_DEFAULTS["cost_multiplier"])  # its price to us vs the list prices
    account_fields: bool = False  # forward ACCOUNT_FIELDS (they act on the operator's upstream account)
    health: ChannelHealth | None = field(default=None, repr=False, compare=False)  # as last read from the database

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"channel name {self.name!r} must be 1-64 letters, digits, '-', '_' or '.'")
        try:
            self.kind = ChannelKind(self.kind)
        except ValueError:
            kinds = ", ".join(k.value for k in ChannelKind)
            raise ValueError(f"channel {self.name}: kind must be one of {kinds}") from None
        table = KIND_DEFAULTS[self.kind]
        if self.kind is ChannelKind.IDEOGRAM:  # the official API only takes Api-Key on official paths
            self.auth, self.path_style = AuthStyle.API_KEY, PathStyle.OFFICIAL
        self.auth = _choice(AuthStyle, self.auth if self.auth is not None else table["auth"], self.name, "auth")
        self.path_style = _choice(PathStyle, self.path_style if self.path_style is not None else table["path_style"],
                                  self.name, "path_style")
        base_url = self.base_url if self.base_url is not None else table.get("base_url")
        if base_url is None:
            raise ValueError(f"channel {self.name}: base_url is required for kind {self.kind.value}")
        self.base_url = validate_base_url(str(base_url))
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"channel {self.name}: a key is required")
        if len(self.key) > 1024 or _KEY_BAD.search(self.key) or not self.key.isascii():
            raise ValueError(f"channel {self.name}: the key must be printable ASCII without spaces (at most 1024)")
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            integer = name in _INTEGERS
            ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not lo <= value <= hi:
                kind = "an integer" if integer else "a number"
                raise ValueError(f"channel {self.name}: {name} must be {kind} from {lo:g} to {hi:g}")
            if not integer:
                setattr(self, name, float(value))
        for name in _BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"channel {self.name}: {name} must be true or false")
        if self.operations is not None:
            if not isinstance(self.operations, (set, frozenset, list, tuple)):
                raise ValueError(f"channel {self.name}: operations must be a set of operations")
            self.operations = frozenset(Operation(o) for o in self.operations)
        elif self.kind is ChannelKind.RELAY:
            self.operations = LEGACY_V3_OPERATIONS

    def __repr__(self) -> str:  # never the key or base-URL credentials (logs, tracebacks)
        return f"Channel({self.public()!r})"

    @property
    def origin(self) -> Origin:
        """The channel's own origin: the one place its private address (if any) is trusted."""
        return Origin.of(self.base_url_without_credentials)

    @property
    def base_url_without_credentials(self) -> str:
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def declares(self, operation: Operation) -> bool:
        """Lists ``operation`` (or, an ``ideogram`` channel without a list, serves every
        operation but the resold models, which only an explicit list serves)."""
        if self.operations is None:
            return not operation.resold
        return operation in self.operations

    def matches(self, operation: Operation, tier: str | None) -> bool:
        """Would serve ``operation`` at ``tier`` if enabled."""
        if not self.declares(operation):
            return False
        return self.models is None or tier is None or tier in self.models

    def serves(self, operation: Operation, tier: str | None) -> bool:
        return self.enabled and self.matches(operation, tier)

    def url_for(self, operation: Operation) -> str:
        """The operation's URL on this channel: official paths; ``ideogram``: ``/ideogram`` + the
        official path; ``ideogram-v1``: ``/ideogram/v1`` + a legacy path and ``/ideogram`` + the
        path of every later family (3.0, 4.0, /v2), as AI-YIAPI serves them."""
        path = operation.official_path
        if self.path_style is PathStyle.IDEOGRAM_V1 and operation.family is Family.LEGACY:
            return self.base_url + "/ideogram/v1" + path
        return self.base_url + self.path_prefix + path

    @property
    def path_prefix(self) -> str:
        """What goes before a non-legacy official path (``/v2/generations/{id}`` too)."""
        return "" if self.path_style is PathStyle.OFFICIAL else "/ideogram"

    def generation_url(self, generation_id: str) -> str:
        """Where an asynchronous /v2 generation is polled (the id already validated)."""
        return f"{self.base_url}{self.path_prefix}/v2/generations/{generation_id}"

    def auth_headers(self) -> dict[str, str]:
        if self.auth is AuthStyle.BEARER:
            return {"Authorization": f"Bearer {self.key}"}
        return {"Api-Key": self.key}

    def public(self) -> dict[str, object]:
        """What listings show: everything but the secret (and base-URL credentials masked)."""
        return {
            "name": self.name, "kind": self.kind.value, "base_url": mask_url(self.base_url),
            "auth": self.auth.value, "path_style": self.path_style.value,  # type: ignore[union-attr]
            "operations": sorted(o.value for o in self.operations) if self.operations is not None else None,
            "models": sorted(self.models) if self.models is not None else None,
            "priority": self.priority, "weight": self.weight, "max_in_flight": self.max_in_flight,
            "timeout_s": self.timeout_s, "connect_timeout_s": self.connect_timeout_s, "enabled": self.enabled,
            "cost_multiplier": self.cost_multiplier, "account_fields": self.account_fields,
        }


def _choice(enum: type[StrEnum], value: object, channel: str, field_name: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"channel {channel}: {field_name} must be one of {', '.join(e.value for e in enum)}") from None


def mask_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (listings, logs)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def validate_base_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"base URL {mask_url(url)!r} cannot be parsed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL {mask_url(url)!r} must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"base URL {mask_url(url)!r} must not have a query or fragment")
    if len(url) > 500 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError(f"base URL {mask_url(url)!r} must be at most 500 characters, without spaces")
    return url.rstrip("/")


class SecretBox:
    """Symmetric encryption (Fernet: AES-128-CBC + HMAC-SHA256) for channel keys at rest."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("a channel key cannot be decrypted: was the database's channel key (its secrets) replaced?") from None


def channel_from_options(options: dict[str, object]) -> Channel:
    """A channel from config-file or CLI options: omitted (or None) options take the values of
    the defaults table for its kind; ``operations``/``models`` may be lists or comma-separated
    strings. Raises ValueError naming the option and the rule."""
    opts = {k: v for k, v in options.items() if v is not None}
    allowed = set(Channel.__dataclass_fields__) - {"health"}
    unknown = set(opts) - allowed
    if unknown:
        raise ValueError(f"unknown channel option(s): {', '.join(sorted(unknown))}")
    for name in ("operations", "models"):
        value = opts.get(name)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is None:
            continue
        if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"channel option {name} must be a list of names or a comma-separated string")
        if name == "operations":
            opts[name] = parse_operations(list(value))
        else:
            opts[name] = frozenset(value)
    return Channel(**opts)  # type: ignore[arg-type]
