"""Upstream channels: where the relay engine sends requests, and with which credentials.

A channel is the official API (``kind="ideogram"``: ``Api-Key`` header, official paths) or a
reseller relay (``kind="relay"``: any base URL, ``bearer`` or ``api-key`` auth, paths under
``/ideogram`` or ``/ideogram/v1``). The secret key is kept encrypted at rest (it must be read
back to call the upstream) and never appears in listings, logs or responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

from ...domain.operations import Operation


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


@dataclass
class Channel:
    name: str
    kind: ChannelKind
    base_url: str
    key: str = field(repr=False)
    auth: AuthStyle = AuthStyle.API_KEY
    path_style: PathStyle = PathStyle.OFFICIAL
    operations: frozenset[Operation] | None = None  # None: every operation
    models: frozenset[str] | None = None  # legacy models / V3 rendering speeds served; None: all
    priority: int = 0  # higher tiers are tried first
    weight: int = 1  # within a tier, weighted random
    max_in_flight: int = IDEOGRAM_DEFAULT_MAX_IN_FLIGHT
    connect_timeout_s: float = 10.0
    timeout_s: float = 180.0
    enabled: bool = True
    cost_multiplier: float = 1.0  # what this upstream charges us, relative to the list price table

    def __post_init__(self) -> None:
        self.kind = ChannelKind(self.kind)
        self.auth = AuthStyle(self.auth)
        self.path_style = PathStyle(self.path_style)
        if self.kind is ChannelKind.IDEOGRAM:
            self.auth, self.path_style = AuthStyle.API_KEY, PathStyle.OFFICIAL
        self.base_url = validate_base_url(self.base_url)
        if not self.name or not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"channel name {self.name!r} must be letters, digits, '-', '_' or '.'")
        if not self.key:
            raise ValueError(f"channel {self.name}: a key is required")
        if self.weight < 1 or self.max_in_flight < 1:
            raise ValueError(f"channel {self.name}: weight and max_in_flight must be at least 1")

    def serves(self, operation: Operation, tier: str | None) -> bool:
        if not self.enabled:
            return False
        if self.operations is not None and operation not in self.operations:
            return False
        return self.models is None or tier is None or tier in self.models

    def url_for(self, operation: Operation) -> str:
        path = operation.official_path
        if self.path_style is PathStyle.IDEOGRAM:
            path = "/ideogram" + path
        elif self.path_style is PathStyle.IDEOGRAM_V1:
            path = ("/ideogram" if operation.is_v3 else "/ideogram/v1") + path
        return self.base_url + path

    def auth_headers(self) -> dict[str, str]:
        if self.auth is AuthStyle.BEARER:
            return {"Authorization": f"Bearer {self.key}"}
        return {"Api-Key": self.key}

    def public(self) -> dict[str, object]:
        """What listings show: everything but the secret."""
        return {
            "name": self.name, "kind": self.kind.value, "base_url": self.base_url, "auth": self.auth.value,
            "path_style": self.path_style.value,
            "operations": sorted(o.value for o in self.operations) if self.operations is not None else None,
            "models": sorted(self.models) if self.models is not None else None,
            "priority": self.priority, "weight": self.weight, "max_in_flight": self.max_in_flight,
            "timeout_s": self.timeout_s, "enabled": self.enabled, "cost_multiplier": self.cost_multiplier,
        }


def validate_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL {url!r} must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"base URL {url!r} must not have a query or fragment")
    return url.strip().rstrip("/")


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
            raise ValueError("a channel key cannot be decrypted: was secrets.json replaced?") from None


def channel_from_options(options: dict[str, object]) -> Channel:
    """A channel from config-file or CLI options; ``operations``/``models`` may be lists or
    comma-separated strings; the official API's base URL is the default for ``kind="ideogram"``."""
    opts = dict(options)
    kind = ChannelKind(str(opts.get("kind", "relay")))
    if kind is ChannelKind.IDEOGRAM:
        opts.setdefault("base_url", OFFICIAL_BASE_URL)
    for name in ("operations", "models"):
        value = opts.get(name)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is not None:
            opts[name] = frozenset(Operation(v) for v in value) if name == "operations" else frozenset(value)  # type: ignore[union-attr]
    allowed = set(Channel.__dataclass_fields__)
    unknown = set(opts) - allowed
    if unknown:
        raise ValueError(f"unknown channel option(s): {', '.join(sorted(unknown))}")
    return Channel(**opts)  # type: ignore[arg-type]
