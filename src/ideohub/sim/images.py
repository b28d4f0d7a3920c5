"""The simulator's images: cheap real PNGs, cached per (size, variant, alpha), behind
Ideogram-style signed ephemeral links ``/api/images/ephemeral/<id>.png?exp=<unix>&sig=<64 hex>``.

Image ids are stateless: they carry the size, variant and alpha flag, so any sim process
with the same secret can serve any link it issued, and nothing grows per request.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..domain.sizes import Size

EPHEMERAL_PREFIX = "/api/images/ephemeral/"
_ID = re.compile(r"^[A-Za-z0-9_-]{12}-(\d{1,5})x(\d{1,5})-(\d{1,3})(a?)$")

# A few colours for the flat blocks; variant i picks its own pair and block placement.
_PALETTE = [(200, 30, 90), (30, 160, 220), (240, 200, 40), (60, 200, 110), (150, 70, 210), (250, 120, 30)]


@dataclass(frozen=True)
class ImageKey:
    width: int
    height: int
    variant: int
    alpha: bool

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)


def new_image_id(key: ImageKey) -> str:
    """An opaque-looking id that still tells the server what to serve."""
    return f"{secrets.token_urlsafe(9)}-{key.width}x{key.height}-{key.variant}{'a' if key.alpha else ''}"


def parse_image_id(image_id: str) -> ImageKey | None:
    m = _ID.match(image_id)
    if not m:
        return None
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0:
        return None
    return ImageKey(w, h, int(m.group(3)), m.group(4) == "a")


def sign(secret: bytes, image_id: str, exp: int) -> str:
    return hmac.new(secret, f"{image_id}\n{exp}".encode(), hashlib.sha256).hexdigest()


def signed_path(secret: bytes, image_id: str, exp: int) -> str:
    return f"{EPHEMERAL_PREFIX}{image_id}.png?exp={exp}&sig={sign(secret, image_id, exp)}"


def verify(secret: bytes, image_id: str, exp: str | None, sig: str | None) -> int | None:
    """``exp`` as an int when the signature is valid, else None (expiry is checked by the caller)."""
    if not exp or not sig or not exp.isdigit() or len(sig) != 64:
        return None
    if not hmac.compare_digest(sign(secret, image_id, int(exp)), sig):
        return None
    return int(exp)


def render_png(key: ImageKey) -> bytes:
    """A gradient with two flat colour blocks (and, with alpha, a transparent border), PNG level 1."""
    w, h = key.width, key.height
    channels = 4 if key.alpha else 3
    arr = np.empty((h, w, channels), np.uint8)
    a = _PALETTE[key.variant % len(_PALETTE)]
    b = _PALETTE[(key.variant + 2) % len(_PALETTE)]
    arr[..., 0] = (np.arange(w, dtype=np.uint32) * 255 // max(1, w - 1)).astype(np.uint8)[None, :]
    arr[..., 1] = 40 + 30 * (key.variant % 4)
    arr[..., 2] = (np.arange(h, dtype=np.uint32) * 255 // max(1, h - 1)).astype(np.uint8)[:, None]
    shift = key.variant % 3
    arr[h * (1 + shift) // 8 : h * (4 + shift) // 8, w // 8 : w // 2, :3] = a
    arr[h // 2 : h * 7 // 8, w * (4 + shift) // 8 : w * 7 // 8, :3] = b
    if key.alpha:
        arr[..., 3] = 0
        arr[h // 8 : h * 7 // 8, w // 8 : w * 7 // 8, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA" if key.alpha else "RGB").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


class ImageBank:
    """An LRU of encoded PNGs; each (size, variant, alpha) is encoded once."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max(1, max_entries)
        self._cache: OrderedDict[ImageKey, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.encodes = 0  # how many PNGs were encoded (a warm bank stops counting up)

    def get(self, key: ImageKey) -> bytes | None:
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
            return data

    def render(self, key: ImageKey) -> bytes:
        """The PNG for ``key``, encoding it if needed (blocking: call from a worker thread)."""
        data = self.get(key)
        if data is not None:
            return data
        data = render_png(key)
        with self._lock:
            self.encodes += 1
            self._cache[key] = data
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return data

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
