"""The effective price table: every row (list price, or the operator's override from the
configuration), what each price group pays for it, and the groups with their multipliers."""

from __future__ import annotations

from typing import Any

from ..domain.operations import Operation
from ..domain.prices import FACTORS, PriceKey, PriceTable, micros_to_usd

_ORDER = {op: n for n, op in enumerate(Operation)}


def override_keys(overrides: dict[str, Any]) -> set[PriceKey]:
    """The rows the configuration's ``[prices]`` sets (the same shape ``PriceTable.load`` reads)."""
    keys: set[PriceKey] = set()
    for op_name, entries in (overrides or {}).items():
        try:
            op = Operation(op_name)
        except ValueError:
            continue  # PriceTable.load refused it at start-up already
        for k, v in (entries or {}).items():
            if isinstance(v, dict):
                char = k == "character_reference"
                factor = "X1" if char else k
                if char or factor in FACTORS:
                    keys.update(PriceKey(op, tier, char, factor) for tier in v)
            else:
                keys.add(PriceKey(op, k))
    return keys


def price_view(table: PriceTable, overrides: dict[str, Any]) -> dict[str, Any]:
    overridden = override_keys(overrides)
    rows = [{"operation": key.operation.value, "tier": key.tier, "character_reference": key.character_reference,
             "upscale_factor": key.upscale_factor, "usd": micros_to_usd(micros),
             "by_group": {group: micros_to_usd(table.in_group(micros, group)) for group in table.groups},
             "source": "override" if key in overridden else "default"}
            for key, micros in sorted(table.prices.items(),
                                      key=lambda kv: (_ORDER[kv[0].operation], kv[0].character_reference,
                                                      kv[0].upscale_factor, kv[0].tier))]
    return {"groups": {name: float(m) for name, m in table.groups.items()}, "rows": rows}


def operations_catalogue() -> list[dict[str, str]]:
    """Every operation with its family and official path (what keys and channels name)."""
    return [{"operation": op.value, "family": op.family.value, "path": op.official_path} for op in Operation]
