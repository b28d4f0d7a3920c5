"""The local upscaler engine: ``/upscale`` served by an ncnn Real-ESRGAN-family model.

Semantics of the controls live in ``ncnn_upscaler`` (resemblance, detail, seed variations).
``prompt`` has no generative refiner to go to yet, so it is echoed back unchanged. Image i of
``num_images`` carries seed ``seed + i``: asking again with that seed reproduces it.
"""

from __future__ import annotations

import random
import threading

from typing import Any

from ..domain.errors import InvalidRequest
from ..domain.operations import SEED_MAX, ImageOutput, ImageResult, SpecRequest, UpscaleRequest
from ..domain.sizes import Size
from ..media.decode import decode_pixels
from ..media.encode import encode_png
from .base import EngineContext
from .ncnn_upscaler import DEFAULT_MODEL, NcnnUpscaler
from .ncnn_upscaler import _spec as spec_of
from .safety import SafetyClassifier


_FACTORS = {"x2": 2, "x4": 4, "x8": 8}


def passes_for(request: SpecRequest, scale: int) -> int:
    """How many passes of a model that upscales by ``scale`` make the asked factor (None: cannot)."""
    factor = _FACTORS[str(request.params.get("upscale_factor", "x2"))]
    passes, reached = 0, 1
    while reached < factor:
        reached *= scale
        passes += 1
    if reached != factor:
        raise InvalidRequest("upscale_factor", f"the local upscaler's model ({scale}x per pass) cannot make "
                                               f"x{factor}; use a factor that is a power of {scale}")
    return passes


def check_v2(settings: Any, request: Any) -> None:
    """At admission (so a refused request is never charged or queued): ``x8`` only where the
    operator enabled it, and the output within ``max_output_pixels``."""
    if not isinstance(request, SpecRequest):
        return
    factor_name = str(request.params.get("upscale_factor", "x2"))
    if factor_name == "x8" and not settings.upscale_allow_x8:
        raise InvalidRequest("upscale_factor", "x8 is not enabled on this server (the operator's upscale_allow_x8)")
    passes_for(request, spec_of(settings.upscale_model or DEFAULT_MODEL).scale)
    image = request.image("image")
    factor = _FACTORS[factor_name]
    if image is not None and image.width * image.height * factor * factor > settings.max_output_pixels:
        raise InvalidRequest("upscale_factor", f"x{factor} of a {image.width}x{image.height} image exceeds this "
                                               f"server's max_output_pixels ({settings.max_output_pixels})")


class LocalUpscaler:
    def __init__(
        self,
        model: str | None = None,
        *,
        tile: int = 256,
        num_threads: int | None = None,
        model_dir: str | None = None,
        safety: SafetyClassifier | None = None,
    ) -> None:
        self.model = model or DEFAULT_MODEL
        self.name = f"local-upscaler:{self.model}"
        self._kwargs = dict(tile=tile, num_threads=num_threads, model_dir=model_dir)
        self._local = threading.local()  # one loaded model per worker thread
        self._safety = safety

    def _upscaler(self) -> NcnnUpscaler:
        up = getattr(self._local, "upscaler", None)
        if up is None:
            up = self._local.upscaler = NcnnUpscaler(self.model, **self._kwargs)  # type: ignore[arg-type]
        return up

    async def run(self, request: UpscaleRequest | SpecRequest, ctx: EngineContext) -> ImageResult:
        job = self.upscale_v2 if isinstance(request, SpecRequest) else self.upscale_now
        return await ctx.pool.run(job, request, deadline=ctx.deadline, ctx=ctx)

    def upscale_v2(self, request: SpecRequest) -> ImageResult:
        """``/v2/image/upscale/auto``: ``upscale_factor`` as passes of the model (x4 = two passes of
        an x2 model); the pixel bound and the factor were checked at admission (``check_v2``)."""
        image = request.image("image")
        assert image is not None  # the dialect requires it (file or RESPONSE asset)
        passes = passes_for(request, spec_of(self.model).scale)
        seed = request.seed if request.seed is not None else random.randint(0, SEED_MAX - 8)
        pixels = decode_pixels(image, "image", mode="auto")
        for n in range(passes):
            pixels = self._upscaler().upscale(pixels, seed=seed + n)[0]
        safe = self._safety.is_safe(pixels[..., :3]) if self._safety is not None else True
        return ImageResult([ImageOutput(
            data=encode_png(pixels) if safe else None, media_type="image/png", resolution=image.size,
            upscaled_resolution=Size(pixels.shape[1], pixels.shape[0]), prompt="", seed=seed, is_image_safe=safe)])

    def upscale_now(self, request: UpscaleRequest) -> ImageResult:
        """The whole job, synchronously (runs in a worker thread)."""
        pixels = decode_pixels(request.image_file, "image_file", mode="auto")
        seed = request.seed if request.seed is not None else random.randint(0, SEED_MAX - 8)
        outputs = self._upscaler().upscale(
            pixels,
            resemblance=request.resemblance,
            detail=request.detail,
            seed=seed,
            num_images=request.num_images,
        )
        images: list[ImageOutput] = []
        for i, out in enumerate(outputs):
            safe = self._safety.is_safe(out[..., :3]) if self._safety is not None else True
            images.append(
                ImageOutput(
                    data=encode_png(out) if safe else None,
                    media_type="image/png",
                    resolution=request.image_file.size,
                    upscaled_resolution=Size(out.shape[1], out.shape[0]),
                    prompt=request.prompt or "",
                    seed=(seed + i) % (SEED_MAX + 1),
                    is_image_safe=safe,
                )
            )
        return ImageResult(images)
