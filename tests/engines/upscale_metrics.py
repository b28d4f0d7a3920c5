"""What the upscaler tests measure with: PSNR, and the 2x bicubic-down / Lanczos-up pair the
evaluation uses (the same filters as ``bench/upscale.py`` and the issue's method)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR over the whole image, in dB (infinite for identical images)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def down2(img: np.ndarray) -> np.ndarray:
    """Half size with PIL's (antialiased) bicubic filter."""
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BICUBIC))


def lanczos2(img: np.ndarray) -> np.ndarray:
    """Twice the size with PIL's Lanczos filter: the baseline."""
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w * 2, h * 2), Image.Resampling.LANCZOS))
