"""The one price table: what a request costs, in integer micro-dollars.

Keyed by operation × tier (legacy model, or V3 rendering speed) × character reference ×
upscale factor. Generation operations are priced per output image; upscale and describe per
input image. Every combination the API accepts must have a price: a gap is a start-up
error, never a silent $0. Accounts belong to a group; a group multiplies prices.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from .errors import InvalidRequest
from .enums import EDIT_MODELS, Model, RenderingSpeed, UpscaleFactor
from .operations import CanonicalRequest, Family, Operation, SpecRequest

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")
MICROS = 1_000_000
# Priced per input image (or per call), not per output image: the flat fee once anything is delivered
PER_INPUT = frozenset({Operation.UPSCALE, Operation.DESCRIBE, Operation.V4_MAGIC_PROMPT,
                       Operation.V2_REMOVE_BACKGROUND_IDEOGRAM_1,
                       *(op for op in Operation if op.family is Family.V2 and op.v2_parts[0] in ("describe", "upscale"))})
_CHARACTER_OPS = frozenset({Operation.V3_GENERATE, Operation.V3_REMIX, Operation.V3_EDIT, Operation.V3_INPAINT})


class PriceError(ValueError):
    pass


def usd_to_micros(value: Any) -> int:
    """Exact: ``0.025`` → 25000. Floats go through their shortest repr, never binary noise."""
    amount = Decimal(str(value))
    if amount < 0:
        raise PriceError(f"price {value} is negative")
    micros = (amount * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(micros)


def micros_to_usd(micros: int) -> str:
    """``1_250_000`` → ``"1.25"``, ``10_000_000`` → ``"10"`` (never exponent notation)."""
    text = f"{Decimal(micros) / MICROS:.6f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class PriceKey:
    operation: Operation
    tier: str  # legacy model, V3 speed, or "*"
    character_reference: bool = False
    upscale_factor: str = "X1"

    def __str__(self) -> str:
        extra = ".character_reference" if self.character_reference else ""
        extra += f".{self.upscale_factor}" if self.upscale_factor != "X1" else ""
        return f"{self.operation.value}{extra}.{self.tier}"


@dataclass(frozen=True)
class Quote:
    key: PriceKey
    unit_micros: int  # after the group multiplier
    units: int  # output images, or 1 per input image

    @property
    def total_micros(self) -> int:
        return self.unit_micros * self.units

    def charge_for(self, delivered: int) -> int:
        """What ``delivered`` images cost: per image for generation, the flat fee for an
        input-priced operation once anything was delivered."""
        if delivered <= 0:
            return 0
        if self.key.operation in PER_INPUT:
            return self.unit_micros
        return self.unit_micros * min(delivered, self.units)


_V4_SPEEDS = ("TURBO", "BALANCED", "DEFAULT", "QUALITY")  # FLASH is refused by 4.0 (400), so unpriced
_V45_QUALITIES = ("very_low", "low", "medium", "high")
FACTORS = ("X2", "X4", "X8")  # sub-tables of an operation's rows, besides character_reference


def accepted_keys() -> list[PriceKey]:
    """Every price row a request the API accepts can land on. The 4.0 and /v2 operations land on
    rows of their own or of the older families (``key_for``); models Ideogram resells from other
    vendors have no default row: they are offered only with a price the operator sets."""
    legacy_models = [m.value for m in Model]
    speeds = [s.value for s in RenderingSpeed]
    keys: list[PriceKey] = []
    for op in Operation:
        if (op.family is Family.V2 and op is not Operation.V2_REMOVE_BACKGROUND_IDEOGRAM_1) \
                or op is Operation.V4_DESCRIBE:
            continue  # priced on the rows of other operations (key_for), or (resold models) by the operator
        if op in PER_INPUT:
            keys.append(PriceKey(op, "*"))
            if op is Operation.UPSCALE:
                keys.extend(PriceKey(op, "*", upscale_factor=f) for f in ("X4", "X8"))
            continue
        if op is Operation.EDIT:
            tiers = sorted(m.value for m in EDIT_MODELS)
        elif op in (Operation.V4_GENERATE, Operation.V4_REMIX, Operation.V4_GENERATE_TRANSPARENT):
            tiers = list(_V4_SPEEDS)
        elif op is Operation.V45_GENERATE:
            tiers = [*_V4_SPEEDS, *_V45_QUALITIES]
        elif op.is_v3:
            tiers = speeds
        else:
            tiers = legacy_models
        for tier in tiers:
            keys.append(PriceKey(op, tier))
            if op in _CHARACTER_OPS:
                keys.append(PriceKey(op, tier, character_reference=True))
            if op is Operation.V3_GENERATE_TRANSPARENT:
                keys.extend(PriceKey(op, tier, upscale_factor=f.value) for f in UpscaleFactor if f.value != "X1")
    return keys


def _upper(value: Any, default: str) -> str:
    return value.upper() if isinstance(value, str) else default


def _spec_key(request: SpecRequest) -> PriceKey:
    """The row a 4.0 or /v2 request is priced on (the README's price table says the same)."""
    op, p = request.op, request.params
    speed = _upper(p.get("rendering_speed"), "DEFAULT")
    if op.family is Family.V4:
        if op is Operation.V4_DESCRIBE:
            return PriceKey(Operation.DESCRIBE, "*")
        if op is Operation.V4_MAGIC_PROMPT:
            return PriceKey(op, "*")
        return PriceKey(op, speed)
    if op.resold:
        return PriceKey(op, "*")
    cap, model = op.v2_parts
    factor = _upper(p.get("upscale_factor"), "X1")
    if cap == "describe":
        return PriceKey(Operation.DESCRIBE, "*")
    if cap == "upscale":
        return PriceKey(Operation.UPSCALE, "*", upscale_factor="X1" if factor == "X2" else factor)
    if cap == "remove-background":
        return PriceKey(op, "*")
    if model in ("ideogram-4", "ideogram-4-custom-model", "auto"):
        return PriceKey(Operation.V4_REMIX if cap == "remix" else Operation.V4_GENERATE, speed)
    if model == "ideogram-4-transparent":
        return PriceKey(Operation.V4_GENERATE_TRANSPARENT, speed)
    if model == "ideogram-4-5":
        return PriceKey(Operation.V45_GENERATE, str(p.get("quality") or "medium"))
    if model in ("ideogram-2", "ideogram-2a"):
        tier = "V_2A" if model == "ideogram-2a" else "V_2"
        return PriceKey(Operation.GENERATE, tier + ("_TURBO" if speed == "TURBO" else ""))
    v3_rows = {"generate": Operation.V3_GENERATE, "remix": Operation.V3_REMIX, "inpaint": Operation.V3_INPAINT,
               "reframe": Operation.V3_REFRAME, "replace-background": Operation.V3_REPLACE_BACKGROUND}
    if model == "ideogram-3-transparent":
        return PriceKey(Operation.V3_GENERATE_TRANSPARENT, speed, upscale_factor=factor)
    return PriceKey(v3_rows[cap], speed, character_reference=model == "ideogram-3-character")


def key_for(request: CanonicalRequest) -> PriceKey:
    if isinstance(request, SpecRequest):
        return _spec_key(request)
    op = request.operation
    if op in PER_INPUT:
        return PriceKey(op, "*")
    model = getattr(request, "model", None)
    tier = model.value if model is not None else request.rendering_speed.value  # type: ignore[attr-defined]
    return PriceKey(
        op,
        tier,
        character_reference=bool(getattr(request, "character_reference_images", None)),
        upscale_factor=getattr(getattr(request, "upscale_factor", None), "value", "X1"),
    )


def billing_identifier(key: PriceKey) -> str:
    """The ``PriceQuote.billing_identifier`` of a price row: its key, lower-case, ``_``-joined
    (``v4_generate_default``, ``v3_generate_character_reference_turbo``, ``upscale_x4``)."""
    parts = [key.operation.value]
    if key.character_reference:
        parts.append("character_reference")
    if key.upscale_factor != "X1":
        parts.append(key.upscale_factor)
    if key.tier != "*":
        parts.append(key.tier)
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")


class PriceTable:
    def __init__(self, prices: dict[PriceKey, int], groups: dict[str, Decimal] | None = None) -> None:
        self.prices = prices
        self.groups = groups or {"default": Decimal(1)}

    @classmethod
    def load(
        cls,
        path: Path = DEFAULT_PRICES,
        overrides: dict[str, Any] | None = None,
        groups: dict[str, Any] | None = None,
    ) -> "PriceTable":
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
        for op_name, entries in (overrides or {}).items():  # operator overrides, same shape
            merged = table.setdefault(op_name, {})
            for k, v in entries.items():
                if isinstance(v, dict):
                    merged.setdefault(k, {}).update(v)
                else:
                    merged[k] = v
        prices: dict[PriceKey, int] = {}
        for op_name, entries in table.items():
            try:
                op = Operation(op_name)
            except ValueError:
                raise PriceError(f"prices: unknown operation {op_name!r}") from None
            for k, v in entries.items():
                if isinstance(v, dict):
                    char = k == "character_reference"
                    factor = "X1" if char else k
                    if not char and factor not in FACTORS:
                        raise PriceError(f"prices.{op_name}.{k}: expected character_reference, X2, X4 or X8")
                    for tier, price in v.items():
                        prices[PriceKey(op, tier, char, factor)] = usd_to_micros(price)
                else:
                    prices[PriceKey(op, k)] = usd_to_micros(v)
        multipliers = {"default": Decimal(1)}
        for name, factor in (groups or {}).items():
            d = Decimal(str(factor))
            if d < 0:
                raise PriceError(f"groups.{name}: multiplier must not be negative")
            multipliers[name] = d
        result = cls(prices, multipliers)
        result.check_complete()
        return result

    def check_complete(self) -> None:
        missing = [str(k) for k in accepted_keys() if self._lookup(k) is None]
        if missing:
            raise PriceError(f"the price table has no price for: {', '.join(missing[:20])}"
                             + (f" and {len(missing) - 20} more" if len(missing) > 20 else ""))

    def _lookup(self, key: PriceKey) -> int | None:
        found = self.prices.get(key)
        if found is None:
            found = self.prices.get(PriceKey(key.operation, "*", key.character_reference, key.upscale_factor))
        return found

    def base_micros(self, key: PriceKey) -> int:
        """The list price of one unit, before any group multiplier."""
        found = self._lookup(key)
        if found is None:
            raise PriceError(f"no price for {key}")
        return found

    def in_group(self, base_micros: int, group: str) -> int:
        """A unit price for an account of ``group``: the multiplier applied, rounded half up to
        the micro-dollar (the one rule for charges, quotes and the console's price table)."""
        multiplier = self.groups.get(group)
        if multiplier is None:
            raise PriceError(f"account group {group!r} is not configured")
        return int((Decimal(base_micros) * multiplier).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def quote(self, request: CanonicalRequest, group: str = "default") -> Quote:
        key = key_for(request)
        base = self._lookup(key)
        if base is None and key.operation.resold:
            model = key.operation.v2_parts[1]
            raise InvalidRequest("model", f"{model} is another vendor's model that this server does not offer "
                                          "(an operator offers it with a price in [prices] and a channel that declares it)")
        if base is None:  # check_complete makes this unreachable for accepted requests
            raise PriceError(f"no price for {key}")
        unit = self.in_group(base, group)
        units = 1 if request.operation in PER_INPUT else request.num_images
        return Quote(key, unit, units)
