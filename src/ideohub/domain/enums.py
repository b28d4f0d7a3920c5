"""Every enumeration of the Ideogram API, spelled exactly as the wire has it (reference §3).

Values are upper-case and matched exactly: the API does not document case-insensitive
matching, so neither do we.
"""

from __future__ import annotations

from enum import StrEnum


class Model(StrEnum):
    """Legacy-endpoint models (``ModelEnum``). Schema default: ``V_2``."""

    V_1 = "V_1"
    V_1_TURBO = "V_1_TURBO"
    V_2 = "V_2"
    V_2_TURBO = "V_2_TURBO"
    V_2A = "V_2A"
    V_2A_TURBO = "V_2A_TURBO"
    V_3 = "V_3"
    AUTO = "AUTO"


V1_MODELS = frozenset({Model.V_1, Model.V_1_TURBO})
NEGATIVE_PROMPT_MODELS = frozenset({Model.V_1, Model.V_1_TURBO, Model.V_2, Model.V_2_TURBO})
NO_COLOR_PALETTE_MODELS = frozenset({Model.V_1, Model.V_1_TURBO, Model.V_2A, Model.V_2A_TURBO})
EDIT_MODELS = frozenset({Model.V_2, Model.V_2_TURBO})


class AspectRatio(StrEnum):
    """Legacy aspect ratios (``AspectRatio``)."""

    ASPECT_10_16 = "ASPECT_10_16"
    ASPECT_16_10 = "ASPECT_16_10"
    ASPECT_9_16 = "ASPECT_9_16"
    ASPECT_16_9 = "ASPECT_16_9"
    ASPECT_3_2 = "ASPECT_3_2"
    ASPECT_2_3 = "ASPECT_2_3"
    ASPECT_4_3 = "ASPECT_4_3"
    ASPECT_3_4 = "ASPECT_3_4"
    ASPECT_1_1 = "ASPECT_1_1"
    ASPECT_1_3 = "ASPECT_1_3"
    ASPECT_3_1 = "ASPECT_3_1"


class AspectRatioV3(StrEnum):
    """V3 aspect ratios (``AspectRatioV3``)."""

    R_1x3 = "1x3"
    R_3x1 = "3x1"
    R_1x2 = "1x2"
    R_2x1 = "2x1"
    R_9x16 = "9x16"
    R_16x9 = "16x9"
    R_10x16 = "10x16"
    R_16x10 = "16x10"
    R_2x3 = "2x3"
    R_3x2 = "3x2"
    R_3x4 = "3x4"
    R_4x3 = "4x3"
    R_4x5 = "4x5"
    R_5x4 = "5x4"
    R_1x1 = "1x1"


class StyleType(StrEnum):
    """Legacy style types (``StyleType``); no schema default."""

    AUTO = "AUTO"
    GENERAL = "GENERAL"
    FICTION = "FICTION"
    REALISTIC = "REALISTIC"
    DESIGN = "DESIGN"
    RENDER_3D = "RENDER_3D"
    ANIME = "ANIME"
    CUSTOM = "CUSTOM"
    STYLIZED = "STYLIZED"


class StyleTypeV3(StrEnum):
    """V3 style types (``StyleTypeV3``); schema default ``GENERAL``."""

    AUTO = "AUTO"
    GENERAL = "GENERAL"
    REALISTIC = "REALISTIC"
    DESIGN = "DESIGN"
    CUSTOM = "CUSTOM"
    FICTION = "FICTION"
    STYLIZED = "STYLIZED"


class RenderingSpeed(StrEnum):
    """V3 rendering speed; default ``DEFAULT``. ``BALANCED`` is the old name of ``DEFAULT``."""

    FLASH = "FLASH"
    TURBO = "TURBO"
    BALANCED = "BALANCED"
    DEFAULT = "DEFAULT"
    QUALITY = "QUALITY"


class MagicPrompt(StrEnum):
    AUTO = "AUTO"
    ON = "ON"
    OFF = "OFF"


class MagicPromptVersion(StrEnum):
    V_0 = "V_0"
    V_0_1 = "V_0_1"
    V_0_2 = "V_0_2"
    V_0_3 = "V_0_3"
    V_0_4 = "V_0_4"
    V_0_5 = "V_0_5"
    V_0_6 = "V_0_6"
    V_0_7 = "V_0_7"
    V_0_8 = "V_0_8"


class ColorPaletteName(StrEnum):
    EMBER = "EMBER"
    FRESH = "FRESH"
    JUNGLE = "JUNGLE"
    MAGIC = "MAGIC"
    MELON = "MELON"
    MOSAIC = "MOSAIC"
    PASTEL = "PASTEL"
    ULTRAMARINE = "ULTRAMARINE"


class UpscaleFactor(StrEnum):
    X1 = "X1"
    X2 = "X2"
    X4 = "X4"


class DescribeModelVersion(StrEnum):
    V_2 = "V_2"
    V_3 = "V_3"
    CUSTOM = "CUSTOM"


_STYLE_PRESETS = """
80S_ILLUSTRATION 90S_NOSTALGIA ABSTRACT_ORGANIC ANALOG_NOSTALGIA ART_BRUT ART_DECO ART_POSTER AURA
AVANT_GARDE BAUHAUS BLUEPRINT BLURRY_MOTION BRIGHT_ART C4D_CARTOON CHILDRENS_BOOK COLLAGE
COLORING_BOOK_I COLORING_BOOK_II CUBISM DARK_AURA DOODLE DOUBLE_EXPOSURE DRAMATIC_CINEMA EDITORIAL
EMOTIONAL_MINIMAL ETHEREAL_PARTY EXPIRED_FILM FLAT_ART FLAT_VECTOR FOREST_REVERIE GEO_MINIMALIST GLASS_PRISM
GOLDEN_HOUR GRAFFITI_I GRAFFITI_II HALFTONE_PRINT HIGH_CONTRAST HIPPIE_ERA ICONIC JAPANDI_FUSION
JAZZY LONG_EXPOSURE MAGAZINE_EDITORIAL MINIMAL_ILLUSTRATION MIXED_MEDIA MONOCHROME NIGHTLIFE OIL_PAINTING
OLD_CARTOONS PAINT_GESTURE POP_ART RETRO_ETCHING RIVIERA_POP SPOTLIGHT_80S STYLIZED_RED SURREAL_COLLAGE
TRAVEL_POSTER VINTAGE_GEO VINTAGE_POSTER WATERCOLOR WEIRD WOODBLOCK_PRINT
""".split()

StylePreset = StrEnum("StylePreset", {name: name for name in _STYLE_PRESETS})  # type: ignore[misc]
"""V3 style presets (``StylePresetV3``, 62 values). Built from a list: names may start with a digit."""
