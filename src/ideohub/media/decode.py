"""Safe intake of uploaded images: type from the bytes, byte and pixel limits, bomb guard.

Clients in the wild send PNG bytes named ``image.jpg`` or parts typed
``application/octet-stream``; the declared name and type are never trusted.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..domain.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from ..domain.operations import ImageInput

# Pillow's own bomb check must never be the one that fires: ours is explicit and configurable.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 4096 * 4096

    def describe_bytes(self) -> str:
        return f"{self.max_bytes // (1024 * 1024)} MB" if self.max_bytes % (1024 * 1024) == 0 else f"{self.max_bytes} bytes"


def sniff_media_type(data: bytes) -> str | None:
    """The image type from its magic bytes, or None when it is not JPEG, PNG or WebP."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_image(field: str, data: bytes, limits: ImageLimits, filename: str | None = None) -> ImageInput:
    """Validate one uploaded file and return it as an ``ImageInput`` (header read only, no decode)."""
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(field, f"file is {len(data)} bytes; the limit is {limits.describe_bytes()}")
    if not data:
        raise InvalidRequest(field, "file is empty")
    media_type = sniff_media_type(data)
    if media_type is None:
        raise UnsupportedMediaType(field, "only JPEG, PNG and WebP images are supported")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise InvalidRequest(field, f"could not be read as {media_type}: {exc.__class__.__name__}") from None
    if width <= 0 or height <= 0:
        raise InvalidRequest(field, "image has no pixels")
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            field, f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels} pixels"
        )
    return ImageInput(data=data, media_type=media_type, width=width, height=height, filename=filename)


def decode_pixels(image: ImageInput, field: str = "image", mode: str = "RGB") -> np.ndarray:
    """Decode to an HxWxC uint8 array; ``mode="auto"`` keeps alpha when the image has it.
    Corrupt image data is the client's error, not ours."""
    try:
        with Image.open(io.BytesIO(image.data)) as im:
            im.load()
            if mode == "auto":
                mode = "RGBA" if _has_alpha(im) else "RGB"
            return np.asarray(im.convert(mode))
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidRequest(field, f"image data is corrupt: {exc}") from None


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
