"""Our PNG writer (``media.encode``: Up filter, ISA-L or zlib level 1, deflated in parallel blocks
that join into one stream): every shape and channel count decodes, through Pillow and through
zlib's own checksum, to exactly the pixels written, with either deflater."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ideohub.media import encode
from ideohub.media.encode import encode_png


@pytest.fixture(params=["isal", "zlib"])
def deflater(request, monkeypatch):  # type: ignore[no-untyped-def]
    """Both ways the encoder deflates: ISA-L (installed with ideohub) and zlib (its fallback)."""
    if request.param == "zlib":
        monkeypatch.setattr(encode, "_deflater", None)
    else:
        assert encode._deflater is not None, "isal is a dependency: it must be importable"
    return request.param


def _idat(png: bytes) -> bytes:
    """The concatenated IDAT payload (zlib stream) of a PNG, read by hand: its Adler-32 is checked
    by ``zlib.decompress``, independently of Pillow."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        data = png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + data) == crc
        if kind == b"IDAT":
            out += data
        pos += 12 + length
    return out


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (9, 1, 4), (33, 17, 3), (64, 48, 4), (5, 5, 1),
                                   (31, 29, 2), (700, 600, 3), (1100, 1000, 4)])
def test_round_trip_exact(shape, deflater):
    rng = np.random.default_rng(sum(shape))
    h, w, c = shape
    base = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).sum(-1)[..., None] % 256
    pixels = ((base + rng.integers(0, 40, size=(h, w, c))) % 256).astype(np.uint8)
    array = pixels[..., 0] if c == 1 else pixels
    png = encode_png(array)
    decoded = np.asarray(Image.open(io.BytesIO(png)))
    np.testing.assert_array_equal(decoded.reshape(h, w, c), pixels)
    raw = zlib.decompress(_idat(png))  # one valid zlib stream: checksum over every block
    assert len(raw) == h * (1 + w * c)
