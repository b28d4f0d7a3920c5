"""Upstream channels: add, edit, test, enable/disable, remove and list them with their health —
one set of rules for ``ideohub channels …``, ``/admin/channels`` and the console.

Every channel is built by ``relay.channels.channel_from_options`` (the channel-defaults table, the
config file's rules); its ValueError becomes a 400 naming the field. An edit merges the changes
into the stored channel: the stored key stays unless a new one is given; a change of ``kind``
drops the old kind's auth, path style and base URL unless they are given again. Edits reach
running servers through the database within ``channel_reload_s`` (and this process at once).

The probe (``probe``) checks reachability and the key at no cost: an empty V3 generate must be
refused for its missing prompt (400/422), not for the key (401/403). It never reads the answer's
body, never echoes the key, and names the URL only with credentials masked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..domain.errors import InvalidRequest, NotFound
from ..engines.relay.channel_store import ChannelStore
from ..engines.relay.channels import Channel, ChannelHealth, channel_from_options, describe_operations, mask_url
from .errors import Conflict

FIELDS = ("name", "kind", "base_url", "key", "auth", "path_style", "priority", "weight", "max_in_flight",
          "operations", "models", "timeout_s", "connect_timeout_s", "cost_multiplier", "account_fields", "enabled")
_KIND_BOUND = ("auth", "path_style", "base_url")  # what a change of kind resets unless given again
PROBE_TIMEOUT_S = 30.0  # the most a test waits for an answer
PROBE_CONNECT_S = 10.0
HEALTH_WINDOW = timedelta(hours=1)


class LiveStates(Protocol):
    """The relay router's shared state (``router.ChannelStates``): in-flight slots and cooldowns."""

    async def status(self, name: str) -> Any: ...


def _field_of(message: str) -> str:
    """Which option a ``channel_from_options`` error is about."""
    lowered = message.lower()
    if "base url" in lowered or "base_url" in lowered:
        return "base_url"
    if lowered.startswith("channel name") or "channel name" in lowered:
        return "name"
    if lowered.startswith("unknown channel option"):
        return message.split(":", 1)[1].strip().split(",")[0] or "body"
    for field in ("connect_timeout_s", "timeout_s", "max_in_flight", "cost_multiplier", "account_fields",
                  "path_style", "operations", "models", "priority", "weight", "enabled", "auth", "kind"):
        if field in lowered:
            return field
    if "key" in lowered:
        return "key"
    return "body"


def build(options: dict[str, Any]) -> Channel:
    """A channel from options (omitted or None ones take the defaults table's values); 400 naming
    the field otherwise."""
    try:
        return channel_from_options(options)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        name = options.get("name")
        prefix = f"channel {name}: "
        rule = message[len(prefix):] if isinstance(name, str) and message.startswith(prefix) else message
        field = _field_of(rule)
        error = InvalidRequest(field, rule)
        if rule.startswith(field):  # "weight must be …": already names it
            error.detail = rule
        raise error from None


def options_of(ch: Channel) -> dict[str, Any]:
    """A stored channel as options, so an edit can merge into it (the key included)."""
    return {
        "name": ch.name, "kind": ch.kind.value, "base_url": ch.base_url, "key": ch.key,
        "auth": ch.auth.value, "path_style": ch.path_style.value,  # type: ignore[union-attr]
        "operations": sorted(o.value for o in ch.operations) if ch.operations is not None else None,
        "models": sorted(ch.models) if ch.models is not None else None,
        "priority": ch.priority, "weight": ch.weight, "max_in_flight": ch.max_in_flight, "timeout_s": ch.timeout_s,
        "connect_timeout_s": ch.connect_timeout_s, "cost_multiplier": ch.cost_multiplier,
        "account_fields": ch.account_fields, "enabled": ch.enabled,
    }


def merged(current: Channel, changes: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise InvalidRequest(unknown[0], f"is not a channel field; fields: {', '.join(FIELDS)}")
    if "name" in changes and changes["name"] != current.name:
        raise InvalidRequest("name", "a channel cannot be renamed; add one under the new name and remove this one")
    options = options_of(current)
    if changes.get("kind") is not None and changes["kind"] != current.kind.value:
        for field in _KIND_BOUND:
            options.pop(field, None)
    if "key" in changes and changes["key"] is None:
        changes = {k: v for k, v in changes.items() if k != "key"}  # null keeps the stored key, like omitting it
    if changes.get("base_url") is not None and changes["base_url"] == mask_url(current.base_url or ""):
        changes = {k: v for k, v in changes.items() if k != "base_url"}  # the listing's masked URL: unchanged
    options.update(changes)
    return options


# ------------------------------------------------------------ health

RECENT_ERRORS = 5  # a channel's latest failed attempts of the health window, shown with its health


def health_view(ch: Channel, live: Any | None, window: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """``ok`` | ``failing`` | ``cooling`` | ``disabled`` from the stored health (written on
    transitions, shared by every instance) and this process's or Redis's live state."""
    stored = ch.health or ChannelHealth()
    failures = max(stored.failures, int(getattr(live, "failures", 0) or 0))
    cooling_until = stored.cooling_until if stored.cooling_until is not None and stored.cooling_until > now else None
    left = float(getattr(live, "cooldown_left_s", 0.0) or 0.0)
    if left > 0:
        live_until = now + timedelta(seconds=left)
        cooling_until = max(cooling_until, live_until) if cooling_until else live_until
    if not ch.enabled:
        state = "disabled"
    elif cooling_until is not None:
        state = "cooling"
    elif failures > 0:
        state = "failing"
    else:
        state = "ok"
    window = window or {}
    return {"state": state, "consecutive_failures": failures, "cooling_until": cooling_until,
            "in_flight": int(getattr(live, "in_flight", 0) or 0), "last_error": stored.last_error,
            "last_ok_at": stored.last_ok_at, "latency_ms_p50": window.get("latency_ms_p50"),
            "attempts_1h": int(window.get("attempts", 0)), "errors_1h": int(window.get("errors", 0)),
            "recent_errors": list(window.get("recent_errors", []))}


def channel_view(ch: Channel, source: str | None, live: Any | None = None, window: dict[str, Any] | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """A channel as listings show it: never the key; base-URL credentials masked."""
    p = ch.public()
    return {**{k: p[k] for k in ("name", "kind", "base_url", "auth", "path_style", "priority", "weight",
                                 "max_in_flight", "operations", "models", "timeout_s", "connect_timeout_s",
                                 "cost_multiplier", "account_fields", "enabled")},
            "operations_text": describe_operations(ch.operations), "source": source or "cli",
            "health": health_view(ch, live, window, now or datetime.now(UTC))}


# ------------------------------------------------------------ the probe


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status_code: int | None
    latency_ms: float
    detail: str
    verdict: str  # ok | rejected | unexpected | unreachable

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, "status_code": self.status_code, "latency_ms": self.latency_ms, "detail": self.detail}


async def probe(channel: Channel, transport: Any = None) -> ProbeResult:
    """An empty V3 generate to the channel, answered without reading its body."""
    import httpx

    from ..domain.operations import Operation

    url = channel.url_for(Operation.V3_GENERATE)
    timeout = httpx.Timeout(min(channel.timeout_s, PROBE_TIMEOUT_S),
                            connect=min(channel.connect_timeout_s, PROBE_CONNECT_S))
    started = time.perf_counter()
    try:
        async with (httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                      transport=transport) as client,
                    client.stream("POST", url, json={}, headers=channel.auth_headers()) as r):
            status = r.status_code
    except httpx.HTTPError as exc:
        return ProbeResult(False, None, _ms(started), f"unreachable ({exc.__class__.__name__})", "unreachable")
    latency = _ms(started)
    if status in (400, 422):
        return ProbeResult(True, status, latency, f"reachable, key accepted; HTTP {status} for the empty probe", "ok")
    if status in (401, 403):
        return ProbeResult(False, status, latency, f"the upstream rejected the key (HTTP {status})", "rejected")
    return ProbeResult(False, status, latency, f"unexpected HTTP {status} from {mask_url(url)}", "unexpected")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# ------------------------------------------------------------ the service


class Channels:
    def __init__(self, store: ChannelStore, *, source: str = "cli", live: LiveStates | None = None,
                 reloaders: Iterable[Callable[[], None]] = (), window: Callable[[datetime], Any] | None = None) -> None:
        """``source``: what edits made here are recorded as (``cli`` or ``api``); ``live``: the
        router's state, for in-flight counts and cooldowns; ``reloaders``: make this process's
        relay re-read the channels at once; ``window``: per-channel attempt totals since a time."""
        self.store = store
        self.source = source
        self.live = live
        self.reloaders = list(reloaders)
        self.window = window

    def _changed(self) -> None:
        for reload in self.reloaders:
            reload()

    async def list(self) -> list[Channel]:
        return await self.store.list()

    async def get(self, name: str) -> Channel:
        channel = await self.store.get(name)
        if channel is None:
            raise NotFound(f"no channel named {name[:64]}")
        return channel

    async def views(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every channel with its health (stored, live and the last hour's attempts)."""
        now = now or datetime.now(UTC)
        channels = await self.store.list()
        sources = await self.store.sources()
        window = await self.window(now - HEALTH_WINDOW) if self.window is not None else {}
        out = []
        for ch in channels:
            live = await self._live(ch.name)
            out.append(channel_view(ch, sources.get(ch.name), live, window.get(ch.name), now))
        return out

    async def view(self, name: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        ch = await self.get(name)
        window = await self.window(now - HEALTH_WINDOW) if self.window is not None else {}
        sources = await self.store.sources()
        return channel_view(ch, sources.get(name), await self._live(name), window.get(name), now)

    async def _live(self, name: str) -> Any | None:
        if self.live is None:
            return None
        try:
            return await self.live.status(name)
        except Exception:  # noqa: BLE001 - the shared state unreachable: the stored health still answers
            return None

    async def add(self, options: dict[str, Any], *, replace: bool = False) -> Channel:
        """A new channel (409 if the name exists, unless ``replace``: the CLI's add-or-replace)."""
        channel = build({k: v for k, v in options.items()})
        if not replace and await self.store.get(channel.name) is not None:
            raise Conflict(f"name: a channel named {channel.name} exists; edit it (PATCH) or remove it first")
        await self.store.upsert(channel, source=self.source)
        self._changed()
        return channel

    async def update(self, name: str, changes: dict[str, Any]) -> Channel:
        current = await self.get(name)
        channel = build(merged(current, dict(changes)))
        await self.store.upsert(channel, source=self.source)
        self._changed()
        return channel

    async def set_enabled(self, name: str, enabled: bool) -> None:
        if not await self.store.set_enabled(name, enabled):
            raise NotFound(f"no channel named {name[:64]}")
        self._changed()

    async def remove(self, name: str) -> None:
        if not await self.store.remove(name):
            raise NotFound(f"no channel named {name[:64]}")
        self._changed()

    async def test(self, name: str) -> ProbeResult:
        return await probe(await self.get(name))

