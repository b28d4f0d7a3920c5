"""Fidelity of the upscaler's controls (``resemblance``, ``detail``) on four photographs.

Method: scikit-image's astronaut, coffee, chelsea and hubble_deep_field (whole images,
cropped to even sizes) are downscaled 2x with Pillow's antialiased bicubic (as
``bench/upscale_models.py::down2``) and restored by ``NcnnUpscaler(model).upscale(...)``.
The model pass (``upscale_raw``) is run once per image and model and reused for every
setting (the controls are post-processing of that output; ``upscale`` itself is called,
with ``upscale_raw`` answered from a cache).  Metrics against the original: RGB PSNR over
the whole image, SSIM = ``skimage.metrics.structural_similarity(channel_axis=-1,
data_range=255)`` with its defaults, no border crop; "consist." is the PSNR between the
output downscaled again (same bicubic) and the input, i.e. how well the output
reproduces the input (inf = identical).  seed 0 everywhere.  Also printed: plain Lanczos,
the raw model, and the post-processing time per output megapixel.

Targets (issue 11, item 3), means over the four photos with waifu2x-cunet-x2:
``{resemblance: 100, detail: 1}`` >= Lanczos + 1.0 dB PSNR; the defaults (50/50) >=
33.6 dB and SSIM >= 0.913 (the controls before the back-projection rewrite).

Run:  PYTHONPATH=src python bench/upscale_controls.py [--threads 2] [--models ...]
      (~1-2 min on 2 busy cores; needs ``pip install scikit-image``)

RESULTS (2 shared cores of an AMD EPYC, loaded by other jobs, ncnn 1.0.20261020 CPU, Pillow 13,
numpy 2.4, scikit-image 0.26; means over the 4 photos, PSNR dB / SSIM / consist. dB), after
issue 11's second round (back-projection on the input grid, binomial grain, no k_d jitter)::

    setting (res/det)       waifu2x-cunet-x2               waifu2x-photo-x2
    lanczos                 31.61 0.8962  42.6             31.61 0.8962  42.6
    raw model               33.81 0.9206  49.1             33.70 0.9205  48.7
    1/50                    33.76 0.9182  48.9             33.66 0.9182  48.8
    50/50 (default)         33.90 0.9221  53.6             33.79 0.9210  53.4
    100/1                   33.03 0.9167  60.1             32.98 0.9158  60.1
    100/50                  33.94 0.9239  63.9             33.84 0.9225  63.0
    50/100                  33.39 0.9176  52.7             33.39 0.9184  51.9
    1/100                   33.23 0.9138  47.9             33.22 0.9164  46.8

    targets (cunet): 100/1 >= lanczos + 1.0 dB: 33.03 >= 32.61 met (+1.42 dB);
                     50/50 >= 33.6 dB / 0.913: 33.90 / 0.9221 met
    (the first round's controls: 50/50 33.89 / 0.9221, 100/1 33.01 / 0.9166, 50/100 33.47;
    before issue 11: 100/1 29.61 / 0.8478, 50/50 33.55 / 0.9118)
    post-processing at 50/50: 0.15 s per output megapixel with the photo model (the printed
    figure includes the cached model lookup; noisy here)

Reading: back-projection (resemblance 100) adds ~0.13-0.17 dB to the model output and
makes the downscaled output equal the input to ~60-64 dB (RMS ~0.2 level, the uint8
rounding); ``detail`` 1 keeps 0.3 of what the model adds over Lanczos, so 100/1 is
Lanczos plus back-projection plus a third of the model's detail (+1.4 dB over Lanczos;
back-projected Lanczos alone would be +0.75 dB).  The seeded grain (sigma 0.5 level,
added before the back-projection) costs ~0.03 dB at the defaults (sigma 1.0 after the
correction would cost ~0.17 dB).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ideohub.engines.ncnn_upscaler import NcnnUpscaler  # noqa: E402

SETTINGS = [(1, 50), (50, 50), (100, 1), (100, 50), (50, 100), (1, 100)]
MODELS = ["waifu2x-cunet-x2", "waifu2x-photo-x2"]
TARGET_MODEL = "waifu2x-cunet-x2"
TARGET_OVER_LANCZOS = 1.0  # dB, {100, 1}
TARGET_DEFAULT = (33.6, 0.913)  # PSNR dB, SSIM of the defaults


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=255))


def down2(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BICUBIC))


def photos() -> dict[str, np.ndarray]:
    try:
        import skimage.data as d
    except ImportError:  # pragma: no cover
        sys.exit("pip install scikit-image (bench only) for the bundled sample photos")
    out = {}
    for name in ("astronaut", "coffee", "chelsea", "hubble_deep_field"):
        a = getattr(d, name)()[..., :3]
        h, w = a.shape[:2]
        out[name] = np.ascontiguousarray(a[: h // 2 * 2, : w // 2 * 2])
    return out


def cached_raw(up: NcnnUpscaler) -> NcnnUpscaler:
    """Make ``up.upscale_raw`` answer repeated inputs from a cache (one model pass each)."""
    cache: dict[bytes, np.ndarray] = {}
    real = up.upscale_raw

    def upscale_raw(rgb, progress=None):
        key = rgb.shape.__repr__().encode() + np.ascontiguousarray(rgb).tobytes()
        if key not in cache:
            cache[key] = real(rgb, progress)
        return cache[key].copy()

    up.upscale_raw = upscale_raw  # type: ignore[method-assign]
    return up


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", nargs="*", default=MODELS)
    args = ap.parse_args()

    imgs = photos()
    lows = {n: down2(a) for n, a in imgs.items()}
    out_mp = sum(a.shape[0] * a.shape[1] for a in imgs.values()) / 1e6

    def score(outs: dict[str, np.ndarray]) -> tuple[float, float, float]:
        return (float(np.mean([psnr(outs[n], imgs[n]) for n in imgs])),
                float(np.mean([ssim(outs[n], imgs[n]) for n in imgs])),
                float(np.mean([psnr(down2(outs[n]), lows[n]) for n in imgs])))

    lz = score({n: np.asarray(Image.fromarray(lo).resize((imgs[n].shape[1], imgs[n].shape[0]),
                                                         Image.Resampling.LANCZOS)) for n, lo in lows.items()})
    table: dict[str, dict[str, tuple[float, float, float]]] = {}
    post_s: dict[str, float] = {}
    for model in args.models:
        up = cached_raw(NcnnUpscaler(model, num_threads=args.threads))
        t0 = time.perf_counter()
        raws = {n: up.upscale_raw(lo) for n, lo in lows.items()}
        print(f"{model}: model pass {time.perf_counter() - t0:.1f} s for {out_mp:.2f} output MP", flush=True)
        rows = {"lanczos": lz, "raw model": score(raws)}
        for r, d in SETTINGS:
            t0 = time.perf_counter()
            outs = {n: up.upscale(lo, resemblance=r, detail=d, seed=0)[0] for n, lo in lows.items()}
            if (r, d) == (50, 50):
                post_s[model] = (time.perf_counter() - t0) / out_mp
            rows[f"{r}/{d}" + (" (default)" if (r, d) == (50, 50) else "")] = score(outs)
        table[model] = rows

    print("\nmeans over astronaut, coffee, chelsea, hubble_deep_field (2x down -> up); "
          "PSNR dB / SSIM / consist. dB")
    print(f"{'setting (res/det)':22s}" + "".join(f"{m:31s}" for m in args.models))
    for label in next(iter(table.values())):
        print(f"{label:22s}" + "".join(f"{table[m][label][0]:6.2f} {table[m][label][1]:.4f} "
                                       f"{table[m][label][2]:5.1f}{'':11s}" for m in args.models))
    for m in args.models:
        print(f"post-processing at 50/50, {m}: {post_s[m]:.2f} s per output MP (incl. the cached model lookup)")
    if TARGET_MODEL in table:
        rows = table[TARGET_MODEL]
        p1 = rows["100/1"][0]
        ok1 = p1 >= lz[0] + TARGET_OVER_LANCZOS
        pd, sd = rows["50/50 (default)"][:2]
        ok2 = pd >= TARGET_DEFAULT[0] and sd >= TARGET_DEFAULT[1]
        print(f"target 100/1 >= lanczos + {TARGET_OVER_LANCZOS} dB: {p1:.2f} vs {lz[0] + TARGET_OVER_LANCZOS:.2f} "
              f"({p1 - lz[0]:+.2f} dB over lanczos): {'MET' if ok1 else 'NOT MET'}")
        print(f"target defaults >= {TARGET_DEFAULT[0]} dB / SSIM {TARGET_DEFAULT[1]}: {pd:.2f} / {sd:.4f}: "
              f"{'MET' if ok2 else 'NOT MET'}")


if __name__ == "__main__":
    main()
