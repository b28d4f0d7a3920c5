"""Engines chosen by configuration: ``[engines]`` maps an operation (``upscale``,
``v3-generate``, … or ``"*"`` for every operation not named) to an engine name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..domain.operations import Operation

EngineFactory = Callable[[Settings], Any]


def _local_upscaler(settings: Settings) -> dict[Operation, Any]:
    from .local_upscaler import LocalUpscaler  # heavy imports only when configured

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
    return {Operation.UPSCALE: engine}


FACTORIES: dict[str, EngineFactory] = {"local-upscaler": _local_upscaler}


class ConfigError(ValueError):
    pass


def build_engines(settings: Settings, factories: dict[str, EngineFactory] | None = None) -> dict[Operation, Any]:
    """Instantiate each configured engine once and map operations to it."""
    factories = factories or FACTORIES
    built: dict[str, dict[Operation, Any]] = {}
    engines: dict[Operation, Any] = {}
    wildcard = settings.engines.get("*")
    for op_name, engine_name in settings.engines.items():
        if engine_name not in factories:
            raise ConfigError(f"engines.{op_name}: unknown engine {engine_name!r}; known: {', '.join(sorted(factories))}")
        if op_name != "*" and op_name not in Operation._value2member_map_:
            known = ", ".join(o.value for o in Operation)
            raise ConfigError(f"engines: unknown operation {op_name!r}; known: {known}, or '*'")
        if engine_name not in built:
            built[engine_name] = factories[engine_name](settings)
    for op in Operation:
        name = settings.engines.get(op.value, wildcard)
        if name is None:
            continue
        served = built[name]
        if op not in served:
            if op.value in settings.engines:
                raise ConfigError(f"engines.{op.value}: engine {name!r} does not serve this operation")
            continue
        engines[op] = served[op]
    return engines
