"""The local upscaler engine: ``/upscale`` served by an ncnn Real-ESRGAN-family model.

Semantics of the controls live in ``ncnn_upscaler`` (resemblance, detail, seed variations).
``prompt`` has no generative refiner to go to yet, so it is echoed back unchanged. Image i of
``num_images`` carries seed ``seed + i``: asking again with that seed reproduces it.
"""

from __future__ import annotations

import random
import threading

from ..domain.operations import ImageOutput, ImageResult, UpscaleRequest
from ..domain.operations import SEED_MAX
from ..domain.sizes import Size
from ..media.decode import decode_pixels
from ..media.encode import encode_png
from .base import EngineContext
from .ncnn_upscaler import DEFAULT_MODEL, NcnnUpscaler
from .safety import SafetyClassifier


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

    async def run(self, request: UpscaleRequest, ctx: EngineContext) -> ImageResult:
        return await ctx.pool.run(self.upscale_now, request, deadline=ctx.deadline, ctx=ctx)

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
