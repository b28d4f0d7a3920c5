"""Sizes: the resolution enums and the aspect-ratio → pixel tables (reference §3.4, §3.5, §4).

Width is always first. ``resolution`` in responses is the produced size as ``"WxH"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .enums import V1_MODELS, AspectRatio, AspectRatioV3, Model


@dataclass(frozen=True, order=True)
class Size:
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> "Size":
        """``"1024x768"`` → Size(1024, 768)."""
        w, _, h = text.partition("x")
        return cls(int(w), int(h))

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def pixels(self) -> int:
        return self.width * self.height


# Legacy ``Resolution`` enum (78 values), as WxH; on the wire ``RESOLUTION_<W>_<H>``.
_LEGACY = """
    512x1536 576x1408 576x1472 576x1536 640x1024 640x1344 640x1408 640x1472
    640x1536 704x1152 704x1216 704x1280 704x1344 704x1408 704x1472 720x1280
    736x1312 768x1024 768x1088 768x1152 768x1216 768x1232 768x1280 768x1344
    832x960 832x1024 832x1088 832x1152 832x1216 832x1248 864x1152 896x960
    896x1024 896x1088 896x1120 896x1152 960x832 960x896 960x1024 960x1088
    1024x640 1024x768 1024x832 1024x896 1024x960 1024x1024 1088x768 1088x832
    1088x896 1088x960 1120x896 1152x704 1152x768 1152x832 1152x864 1152x896
    1216x704 1216x768 1216x832 1232x768 1248x832 1280x704 1280x720 1280x768
    1280x800 1312x736 1344x640 1344x704 1344x768 1408x576 1408x640 1408x704
    1472x576 1472x640 1472x704 1536x512 1536x576 1536x640
""".split()
# ``ResolutionV3`` enum (69 values), as on the wire.
_V3 = """
    512x1536 576x1408 576x1472 576x1536 640x1344 640x1408 640x1472 640x1536
    704x1152 704x1216 704x1280 704x1344 704x1408 704x1472 736x1312 768x1088
    768x1216 768x1280 768x1344 800x1280 832x960 832x1024 832x1088 832x1152
    832x1216 832x1248 864x1152 896x960 896x1024 896x1088 896x1120 896x1152
    960x832 960x896 960x1024 960x1088 1024x832 1024x896 1024x960 1024x1024
    1088x768 1088x832 1088x896 1088x960 1120x896 1152x704 1152x832 1152x864
    1152x896 1216x704 1216x768 1216x832 1248x832 1280x704 1280x768 1280x800
    1312x736 1344x640 1344x704 1344x768 1408x576 1408x640 1408x704 1472x576
    1472x640 1472x704 1536x512 1536x576 1536x640
""".split()

LEGACY_RESOLUTIONS: dict[str, Size] = {f"RESOLUTION_{w}".replace("x", "_"): Size.parse(w) for w in _LEGACY}
V3_RESOLUTIONS: dict[str, Size] = {r: Size.parse(r) for r in _V3}

# §4: default output size per aspect ratio; V_1-class models use the first table.
_V1_SIZES = {
    "1x3": Size(512, 1536), "9x16": Size(720, 1280), "10x16": Size(768, 1232), "2x3": Size(768, 1152),
    "3x4": Size(768, 1024), "1x1": Size(1024, 1024), "4x3": Size(1024, 768), "3x2": Size(1152, 768),
    "16x10": Size(1232, 768), "16x9": Size(1280, 720), "3x1": Size(1536, 512),
}
_V2_SIZES = {
    "1x3": Size(512, 1536), "1x2": Size(704, 1408), "9x16": Size(736, 1312), "10x16": Size(800, 1280),
    "2x3": Size(832, 1248), "3x4": Size(864, 1152), "4x5": Size(896, 1120), "1x1": Size(1024, 1024),
    "5x4": Size(1120, 896), "4x3": Size(1152, 864), "3x2": Size(1248, 832), "16x10": Size(1280, 800),
    "16x9": Size(1312, 736), "2x1": Size(1408, 704), "3x1": Size(1536, 512),
}


def _ratio_key(aspect: AspectRatio | AspectRatioV3) -> str:
    if isinstance(aspect, AspectRatio):
        _, w, h = aspect.value.split("_")
        return f"{w}x{h}"
    return aspect.value


def size_for_aspect(aspect: AspectRatio | AspectRatioV3, model: Model | None = None) -> Size:
    """The size Ideogram renders for an aspect ratio; ``model`` picks the V_1 table."""
    table = _V1_SIZES if model in V1_MODELS else _V2_SIZES
    return table[_ratio_key(aspect)]
