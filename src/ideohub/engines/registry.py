"""Engines chosen by configuration: ``[engines]`` maps an operation (``upscale``,
``v3-generate``, … or ``"*"`` for every operation not named) to an engine name.

Defaults: ``upscale`` → ``local-upscaler``, everything else → ``relay`` (which answers 503
until an upstream channel is configured).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from ..config import Secrets, Settings
from ..domain.operations import Operation
from ..observability import Metrics


@dataclass
class EngineResources:
    settings: Settings
    metrics: Metrics
    session: async_sessionmaker
    secrets: Secrets
    clock: Callable[[], float] | None = None  # monotonic seconds; injected by tests, None = the real one


EngineFactory = Callable[[EngineResources], dict[Operation, Any]]


def _local_upscaler(res: EngineResources) -> dict[Operation, Any]:
    from .local_upscaler import LocalUpscaler  # heavy imports only when configured

    settings = res.settings
    safety = None
    if settings.safety_check:
        from .safety import SafetyClassifier

        safety = SafetyClassifier(threshold=settings.safety_threshold)
    engine = LocalUpscaler(
        settings.upscale_model,
        tile=settings.upscale_tile,
        num_threads=settings.upscale_threads,
        model_dir=str(settings.model_dir) if settings.model_dir else None,
        safety=safety,
    )
    return {Operation.UPSCALE: engine, Operation.V2_UPSCALE_AUTO: engine}


def _relay(res: EngineResources) -> dict[Operation, Any]:
    from .relay.channel_store import ChannelStore
    from .relay.channels import SecretBox
    from ..net.guard import GuardedClients, GuardPolicy
    from .relay.engine import ChannelDirectory, RelayEngine
    from .relay.router import Router

    settings = res.settings
    states = None
    if settings.redis_url:  # in-flight limits, cooldowns and probes shared by every process
        from .relay.redis_state import RedisChannelState

        lease_s = settings.request_timeout_s + settings.reservation_grace_s  # outlasts any attempt
        states = RedisChannelState(settings.redis_url, lease_s=lease_s, clock=res.clock)
    clock = res.clock or time.monotonic
    store = ChannelStore(res.session, SecretBox(res.secrets.channel_key))
    engine = RelayEngine(
        ChannelDirectory(store.list, reload_s=res.settings.channel_reload_s, clock=clock),
        router=Router(base_cooldown_s=res.settings.relay_cooldown_s, states=states, clock=clock),
        metrics=res.metrics,
        downloads=GuardedClients(GuardPolicy(tuple(settings.relay_download_hosts))),
        max_download_bytes=settings.max_download_bytes,
        health=store,
    )
    return {op: engine for op in Operation}


FACTORIES: dict[str, EngineFactory] = {"local-upscaler": _local_upscaler, "relay": _relay}


def _check_local_upscale(settings: Settings, request: Any) -> None:
    from .local_upscaler import check_v2

    check_v2(settings, request)


# Checks an engine makes of a request at admission, before anything is reserved (engine name → check)
ADMISSION_CHECKS: dict[str, Callable[[Settings, Any], None]] = {"local-upscaler": _check_local_upscale}


class ConfigError(ValueError):
    pass


def engine_names(settings: Settings, factories: dict[str, EngineFactory] | None = None) -> dict[Operation, str]:
    """Which engine each operation is configured to run on, without building any (an API instance
    of a fleet records it; its workers build them)."""
    factories = factories or FACTORIES
    for op_name, engine_name in settings.engines.items():
        if engine_name not in factories:
            raise ConfigError(f"engines.{op_name}: unknown engine {engine_name!r}; known: {', '.join(sorted(factories))}")
        if op_name != "*" and op_name not in Operation._value2member_map_:
            known = ", ".join(o.value for o in Operation)
            raise ConfigError(f"engines: unknown operation {op_name!r}; known: {known}, or '*'")
    wildcard = settings.engines.get("*")
    names = {op: settings.engines.get(op.value, wildcard) for op in Operation}
    return {op: name for op, name in names.items() if name is not None}


def build_engines(res: EngineResources, factories: dict[str, EngineFactory] | None = None,
                  only: set[Operation] | None = None) -> dict[Operation, Any]:
    """Instantiate each configured engine once and map operations to it (``only``: just the
    operations a worker declared)."""
    settings = res.settings
    factories = factories or FACTORIES
    built: dict[str, dict[Operation, Any]] = {}
    engines: dict[Operation, Any] = {}
    for op, name in engine_names(settings, factories).items():
        if only is not None and op not in only:
            continue
        if name not in built:
            built[name] = factories[name](res)
        served = built[name]
        if op not in served:
            if op.value in settings.engines:
                raise ConfigError(f"engines.{op.value}: engine {name!r} does not serve this operation")
            continue
        engines[op] = served[op]
    return engines
