"""The local upscaler engine: ``/upscale`` served by an ncnn super-resolution model.

Which model: ``model="auto"`` (``Settings.upscale_model``'s default) picks one per image with
``upscale_router.route`` (a few milliseconds on a thumbnail): photographs go to the fast
``waifu2x-photo-x2``, illustrations, text and flat-colour art to ``waifu2x-cunet-x2``.  A named
model is always used.  Each worker thread keeps one loaded ``NcnnUpscaler`` per model it has
actually run.  The engine's ``name`` stays ``local-upscaler:auto``; the model that ran is logged
(``upscale model=... kind=... p_illustration=...``), counted in ``models_used`` and kept in
``last_model`` (per thread).

Semantics of the controls live in ``ncnn_upscaler`` (resemblance, detail, seed variations).
``prompt`` has no generative refiner to go to yet, so it is echoed back unchanged. Image i of
``num_images`` carries seed ``seed + i``: asking again with that seed reproduces it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

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
from .upscale_router import AUTO, ILLUSTRATION_MODEL, PHOTO_MODEL, classify

log = logging.getLogger(__name__)

# The safety check (onnxruntime, ~40 ms) runs on this pool while the worker thread encodes the PNG
# (~0.1 s for 2048x2048); an unsafe result's bytes are dropped.  Both release the GIL.
_SAFETY_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ideohub-safety")


_FACTORS = {"x2": 2, "x4": 4, "x8": 8}


def model_scale(model: str | None) -> int:
    """Upscale factor of one pass of the configured choice (``None``: DEFAULT_MODEL; ``"auto"``: the
    routed models', which share one scale: 2)."""
    if model == AUTO:
        scales = {spec_of(PHOTO_MODEL).scale, spec_of(ILLUSTRATION_MODEL).scale}
        assert len(scales) == 1, "the routed models must share one scale"
        return scales.pop()
    return spec_of(model or DEFAULT_MODEL).scale


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
    passes_for(request, model_scale(settings.upscale_model))
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
        if self.model != AUTO:
            spec_of(self.model)  # fail at startup on an unknown name
        self.name = f"local-upscaler:{self.model}"
        self.scale = model_scale(self.model)
        self._kwargs = dict(tile=tile, num_threads=num_threads, model_dir=model_dir)
        self._local = threading.local()  # per worker thread: {model name: loaded NcnnUpscaler}
        self._safety = safety
        self.models_used: Counter[str] = Counter()  # model name -> model runs (passes) with it

    @property
    def last_model(self) -> str | None:
        """The model this thread ran last (None before its first job)."""
        return getattr(self._local, "last", None)

    def choose(self, pixels) -> str:
        """The model for these pixels: the configured one, or the router's pick under "auto"."""
        if self.model != AUTO:
            return self.model
        r = classify(pixels)
        log.info("upscale model=%s kind=%s p_illustration=%.3f", r.model, r.kind, r.p_illustration)
        return r.model

    def _upscaler(self, model: str | None = None) -> NcnnUpscaler:
        model = model or (self.model if self.model != AUTO else ILLUSTRATION_MODEL)
        loaded = getattr(self._local, "upscalers", None)
        if loaded is None:
            loaded = self._local.upscalers = {}
        up = loaded.get(model)
        if up is None:
            up = loaded[model] = NcnnUpscaler(model, **self._kwargs)  # type: ignore[arg-type]
        self._local.last = model
        self.models_used[model] += 1
        return up

    async def run(self, request: UpscaleRequest | SpecRequest, ctx: EngineContext) -> ImageResult:
        job = self.upscale_v2 if isinstance(request, SpecRequest) else self.upscale_now
        return await ctx.pool.run(job, request, deadline=ctx.deadline, ctx=ctx)

    def upscale_v2(self, request: SpecRequest) -> ImageResult:
        """``/v2/image/upscale/auto``: ``upscale_factor`` as passes of the model (x4 = two passes of
        an x2 model); the pixel bound and the factor were checked at admission (``check_v2``)."""
        image = request.image("image")
        assert image is not None  # the dialect requires it (file or RESPONSE asset)
        passes = passes_for(request, self.scale)
        seed = request.seed if request.seed is not None else random.randint(0, SEED_MAX - 8)
        pixels = decode_pixels(image, "image", mode="auto")
        model = self.choose(pixels)  # once, on the input: every pass runs the same model
        for n in range(passes):
            pixels = self._upscaler(model).upscale(pixels, seed=seed + n)[0]
        safe, data = self._check_and_encode(pixels)
        return ImageResult([ImageOutput(
            data=data, media_type="image/png", resolution=image.size,
            upscaled_resolution=Size(pixels.shape[1], pixels.shape[0]), prompt="", seed=seed, is_image_safe=safe)])

    def _check_and_encode(self, pixels) -> tuple[bool, bytes | None]:
        """(is_safe, PNG bytes or None when unsafe): the safety check overlaps the encoding."""
        if self._safety is None:
            return True, encode_png(pixels)
        check = _SAFETY_POOL.submit(self._safety.is_safe, pixels[..., :3])
        data = encode_png(pixels)
        safe = check.result()
        return safe, (data if safe else None)

    def upscale_now(self, request: UpscaleRequest) -> ImageResult:
        """The whole job, synchronously (runs in a worker thread)."""
        started = time.perf_counter()
        pixels = decode_pixels(request.image_file, "image_file", mode="auto")
        seed = request.seed if request.seed is not None else random.randint(0, SEED_MAX - 8)
        decoded = time.perf_counter()
        upscaler = self._upscaler(self.choose(pixels))
        routed = time.perf_counter()
        outputs = upscaler.upscale(
            pixels,
            resemblance=request.resemblance,
            detail=request.detail,
            seed=seed,
            num_images=request.num_images,
        )
        upscaled = time.perf_counter()
        images: list[ImageOutput] = []
        for i, out in enumerate(outputs):
            safe, data = self._check_and_encode(out)
            images.append(
                ImageOutput(
                    data=data,
                    media_type="image/png",
                    resolution=request.image_file.size,
                    upscaled_resolution=Size(out.shape[1], out.shape[0]),
                    prompt=request.prompt or "",
                    seed=(seed + i) % (SEED_MAX + 1),
                    is_image_safe=safe,
                )
            )
        t = getattr(upscaler, "last_timings", {})
        log.info("upscale timings: decode %.3f s, route %.3f s, model %.3f s, post-processing %.3f s, "
                 "safety + encode %.3f s", decoded - started, routed - decoded, t.get("model", 0.0),
                 t.get("post", 0.0), time.perf_counter() - upscaled)
        return ImageResult(images)
