"""Mask rules (reference §5.3, §6.3): black and white only, black = the region to change, not all white."""

from __future__ import annotations

import numpy as np

from ..domain.errors import InvalidRequest
from ..domain.operations import ImageInput
from .decode import decode_pixels

# JPEG masks carry compression noise around edges; grey levels in between are a different mask.
BLACK_MAX = 32
WHITE_MIN = 223


def check_mask_pixels(mask: ImageInput, field: str = "mask") -> np.ndarray:
    """Validate the mask's pixels; return the boolean edit region (True where black)."""
    lum = decode_pixels(mask, field, mode="L")
    grey = (lum > BLACK_MAX) & (lum < WHITE_MIN)
    if grey.any():
        count = int(grey.sum())
        raise InvalidRequest(field, f"must contain only black and white pixels ({count} pixels are grey)")
    region = lum <= BLACK_MAX
    if not region.any():
        raise InvalidRequest(field, "must not be all white: black marks the region to edit")
    return region
