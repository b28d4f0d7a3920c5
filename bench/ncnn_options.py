"""Which ``ncnn.Option`` settings help the routed upscale models on this CPU?

For ``waifu2x-photo-x2`` and ``waifu2x-cunet-x2`` (what ``upscale_model = "auto"`` routes to),
on one 512x512 photo-like input (``bench/upscale.py::test_image``), ``NcnnUpscaler.upscale_raw``
is timed for the defaults (ncnn's own option defaults, the server's tile) and for one change
at a time: threads (1 vs all cores), packing layout, Winograd (off, or only the 23 / 43 / 63
variant), SGEMM, fp16 storage/packed/arithmetic (on by default; x86 F16C converts fp16 storage),
bf16 storage, ``lightmode`` and the tile size.  All configurations are loaded once and timed
round-robin, the order reversed every round (noise on a shared machine hits all of them alike);
the table shows medians, GFLOP/s (``model_flops`` over the padded input, one pass; the tiles'
overlap not counted) and the output's difference from the defaults' (max level difference,
PSNR).  Then the changes that were faster by more than ``--keep`` (5 %) and numerically safe
(max difference <= 1 level or PSNR >= 50 dB) are combined, and "defaults" vs "best" are timed
again, alternated.

Run:  PYTHONPATH=src .venv/bin/python bench/ncnn_options.py [--size 512] [--rounds 3] [--models photo,cunet]

RESULTS (2 shared AMD EPYC cores, AVX-512 + F16C + AVX512_BF16, ncnn 1.0.20261020, other jobs
running on the same cores, so +-10 % is noise: compare "fp16 off" and "lightmode off", whose
outputs are byte-identical to the defaults).  Nothing is kept: ncnn's defaults stay (see the
module docstring of ``engines/ncnn_upscaler.py``).

``--threads 1`` (kernels screened on one thread, less sensitive to the other jobs)::

    ncnn options on 2 cores (ncnn threads 1), input 512x512, 3 alternated rounds, medians

    waifu2x-photo-x2 (defaults: tile 256; 293 GFLOP per pass)
      configuration           median s  x defaults  GFLOP/s  max diff  PSNR dB
      defaults                   2.046       1.000    143.3         0     99.0
      packing off                2.320       1.134    126.3         0     99.0
      winograd off               5.094       2.490     57.5         1     91.5
      winograd 23 only           2.831       1.384    103.5         1     93.0
      winograd 43 only           2.149       1.051    136.4         1     93.1
      winograd 63 only           2.917       1.426    100.5         1     93.8
      sgemm off                  3.218       1.573     91.1         1     95.4
      fp16 off                   2.048       1.001    143.1         0     99.0
      fp16 arith off             2.229       1.089    131.5         0     99.0
      bf16 storage               3.009       1.471     97.4         2     53.8
      lightmode off              2.019       0.987    145.2         0     99.0
      threads=2                  2.727       1.333    107.5         0     99.0
      tile 128                   2.156       1.054    135.9         1     94.6
      tile 192                   2.377       1.162    123.3         1     93.0
      tile 384                   2.310       1.129    126.9         0     99.0
      tile 512                   3.318       1.622     88.4         1     94.0
      kept: nothing -> options none, tile 256

    waifu2x-cunet-x2 (defaults: tile 192; 420 GFLOP per pass)
      configuration           median s  x defaults  GFLOP/s  max diff  PSNR dB
      defaults                   6.043       1.000     69.6         0     99.0
      packing off                6.875       1.138     61.2         1     96.8
      winograd off              10.352       1.713     40.6         1     92.6
      winograd 23 only           6.478       1.072     64.9         1     93.7
      winograd 43 only           5.629       0.931     74.7         1     93.8
      winograd 63 only           6.933       1.147     60.6         1     96.0
      sgemm off                  6.955       1.151     60.5         1     96.4
      fp16 off                   6.339       1.049     66.3         0     99.0
      fp16 arith off             6.328       1.047     66.4         0     99.0
      bf16 storage               6.228       1.031     67.5         2     54.0
      lightmode off              6.639       1.099     63.3         0     99.0
      threads=2                  7.982       1.321     52.7         0     99.0
      tile 96                    5.894       0.975     71.3         1     96.0
      tile 128                   7.065       1.169     59.5         1     94.4
      tile 256                   6.630       1.097     63.4         1     94.0
      kept: ['winograd 43 only'] -> options {'use_winograd23_convolution': False, 'use_winograd63_convolution': False}, tile 192

    waifu2x-cunet-x2: defaults vs best (and its parts), alternated
      configuration           median s  x defaults  GFLOP/s  max diff  PSNR dB
      defaults                   6.749       1.000     62.3         0     99.0
      best                       6.138       0.910     68.5         1     93.8
      winograd 43 only           6.341       0.940     66.3         1     93.8

default threads (2), the candidates only (``--only "winograd 43 only,omp blocktime 0,threads=1"
--no-tiles --rounds 4``)::

    ncnn options on 2 cores (ncnn threads 2), input 512x512, 4 alternated rounds, medians

    waifu2x-photo-x2 (defaults: tile 256; 293 GFLOP per pass)
      configuration           median s  x defaults  GFLOP/s  max diff  PSNR dB
      defaults                   1.396       1.000    210.0         0     99.0
      threads=1                  2.281       1.634    128.5         0     99.0
      winograd 43 only           1.401       1.004    209.2         1     93.1
      omp blocktime 0            1.480       1.060    198.1         0     99.0
      kept: nothing -> options none, tile 256

    waifu2x-cunet-x2 (defaults: tile 192; 420 GFLOP per pass)
      configuration           median s  x defaults  GFLOP/s  max diff  PSNR dB
      defaults                   4.182       1.000    100.5         0     99.0
      threads=1                  6.170       1.475     68.2         0     99.0
      winograd 43 only           3.907       0.934    107.6         1     93.8
      omp blocktime 0            3.839       0.918    109.5         0     99.0
      kept: ['winograd 43 only', 'omp blocktime 0'] -> options {'use_winograd23_convolution': False, 'use_winograd63_convolution': False, 'openmp_blocktime': 0}, tile 192

    waifu2x-cunet-x2: defaults vs best (and its parts), alternated
      configuration           median s  x defaults  GFLOP/s  max diff  PSNR dB
      defaults                   3.586       1.000    117.2         0     99.0
      best                       3.719       1.037    113.1         1     93.8
      omp blocktime 0            3.834       1.069    109.7         0     99.0
      winograd 43 only           3.688       1.028    114.0         1     93.8
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upscale import test_image  # noqa: E402

from ideohub.engines.ncnn_upscaler import NcnnUpscaler, model_flops  # noqa: E402

MODELS = {"photo": "waifu2x-photo-x2", "cunet": "waifu2x-cunet-x2"}
SERVER_TILE = 256  # Settings.upscale_tile's default (CUNet caps it at its max_tile, 192)

FP16_OFF = {"use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False}
VARIANTS: dict[str, dict] = {
    "defaults": {},
    "threads=1": {"num_threads": 1},
    "packing off": {"use_packing_layout": False},
    "winograd off": {"use_winograd_convolution": False},
    "winograd 23 only": {"use_winograd43_convolution": False, "use_winograd63_convolution": False},
    "winograd 43 only": {"use_winograd23_convolution": False, "use_winograd63_convolution": False},
    "winograd 63 only": {"use_winograd23_convolution": False, "use_winograd43_convolution": False},
    "sgemm off": {"use_sgemm_convolution": False},
    "fp16 off": FP16_OFF,
    "fp16 arith off": {"use_fp16_arithmetic": False},
    "bf16 storage": {"use_bf16_storage": True, "use_bf16_packed": True},
    "lightmode off": {"lightmode": False},
    "omp blocktime 0": {"openmp_blocktime": 0},  # no spin-wait at barriers (default 20 ms)
}
TILES = {"photo": (128, 192, 384, 512), "cunet": (96, 128, 256)}  # cunet's cap is 192 (memory)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


THREADS: int | None = None  # --threads: ncnn threads of every configuration but "threads=..."


def build(model: str, opts: dict, tile: int | None) -> NcnnUpscaler:
    opts = dict(opts)
    threads = opts.pop("num_threads", THREADS)
    up = NcnnUpscaler(model, tile=SERVER_TILE, num_threads=threads, options=opts)
    if tile is not None:
        up.tile = tile  # bypasses the max_tile cap on purpose (only to measure)
    return up


def race(ups: dict[str, NcnnUpscaler], img: np.ndarray, rounds: int) -> tuple[dict, dict]:
    times: dict[str, list[float]] = {k: [] for k in ups}
    outs: dict[str, np.ndarray] = {}
    names = list(ups)
    for up in ups.values():
        up.upscale_raw(img[:48, :48])  # warm (first-run allocations)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            out = ups[k].upscale_raw(img)
            times[k].append(time.perf_counter() - t0)
            outs.setdefault(k, out)
    return {k: float(np.median(v)) for k, v in times.items()}, outs


def report(title: str, med: dict, outs: dict, flops: float, base: str = "defaults") -> None:
    print(f"\n{title}")
    print(f"  {'configuration':22s}{'median s':>10s}{'x defaults':>12s}{'GFLOP/s':>9s}{'max diff':>10s}{'PSNR dB':>9s}")
    for k, t in med.items():
        d = int(np.abs(outs[k].astype(np.int16) - outs[base].astype(np.int16)).max())
        print(f"  {k:22s}{t:10.3f}{t / med[base]:12.3f}{flops / t / 1e9:9.1f}{d:10d}{psnr(outs[k], outs[base]):9.1f}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=float, default=0.05, help="min. relative gain to keep a change")
    ap.add_argument("--models", default="photo,cunet")
    ap.add_argument("--threads", type=int, default=None,
                    help="ncnn threads (default: all cores); 1 screens kernels with less noise on a shared machine")
    ap.add_argument("--only", help="comma-separated configurations to time (default: all; tiles as 'tile 128')")
    ap.add_argument("--no-tiles", action="store_true")
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    if args.threads == 1:
        del VARIANTS["threads=1"]
        VARIANTS["threads=2"] = {"num_threads": 2}
    img = test_image(args.size)
    print(f"ncnn options on {os.cpu_count()} cores (ncnn threads {args.threads or os.cpu_count()}), "
          f"input {args.size}x{args.size}, "
          f"{args.rounds} alternated rounds, medians")
    for short in args.models.split(","):
        model = MODELS[short]
        only = set(args.only.split(",")) | {"defaults"} if args.only else None
        ups = {k: build(model, v, None) for k, v in VARIANTS.items() if only is None or k in only}
        base_tile = ups["defaults"].tile
        for t in () if args.no_tiles else TILES[short]:
            if only is None or f"tile {t}" in only:
                ups[f"tile {t}"] = build(model, {}, t)
        shrink = ups["defaults"].spec.shrink
        flops = model_flops(model, args.size + 2 * shrink, args.size + 2 * shrink)
        med, outs = race(ups, img, args.rounds)
        report(f"{model} (defaults: tile {base_tile}; {flops / 1e9:.0f} GFLOP per pass)", med, outs, flops)
        # combine what helped and is numerically safe; exclusive groups keep their fastest member
        def ok(k: str) -> bool:
            d = int(np.abs(outs[k].astype(np.int16) - outs["defaults"].astype(np.int16)).max())
            return med[k] <= med["defaults"] * (1 - args.keep) and (d <= 1 or psnr(outs[k], outs["defaults"]) >= 50)

        groups: dict[str, list[str]] = {}
        for k in med:
            if k in ("defaults", "threads=1", "threads=2") or not ok(k):  # threads=1 only matters for concurrent jobs
                continue
            g = "tile" if k.startswith("tile") else "winograd" if k.startswith("winograd") else \
                "fp16" if k.startswith("fp16") else k
            groups.setdefault(g, []).append(k)
        picks = [min(ks, key=lambda k: med[k]) for ks in groups.values()]
        best_opts: dict = {}
        best_tile = None
        for k in picks:
            if k.startswith("tile"):
                best_tile = int(k.split()[1])
            else:
                best_opts.update(VARIANTS[k])
        print(f"  kept: {picks or 'nothing'} -> options {best_opts or 'none'}, tile {best_tile or base_tile}")
        if picks:
            ups2 = {"defaults": ups["defaults"], "best": build(model, best_opts, best_tile)}
            for k in sorted(picks, key=lambda k: med[k])[:3]:  # re-check the single changes too
                ups2[k] = ups[k]
            del ups
            med2, outs2 = race(ups2, img, max(args.rounds, 5))
            report(f"{model}: defaults vs best (and its parts), alternated", med2, outs2, flops)
        else:
            del ups


if __name__ == "__main__":
    main()
