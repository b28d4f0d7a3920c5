"""Compare the 2x upscale models of ideohub.engines.ncnn_upscaler (quality vs CPU time).

Method: each original (256x256 crop) is downscaled 2x with Pillow's antialiased
bicubic, upscaled back by each model (``NcnnUpscaler.upscale_raw``, the plain model
output) and compared with the original: PSNR over RGB and SSIM (Gaussian window 11,
sigma 1.5, on BT.601 luma), 4 px border shaved.  Baselines: Lanczos (and bicubic).
Speed is measured separately as seconds per *output* megapixel of ``upscale_raw`` on a
512x512 -> 1024x1024 run with the default tiling (tile 256), so per-tile overheads
are realistic.  ``realesrgan-x4plus`` (4x, opt-in) is shown for reference as 4x
followed by a Lanczos 2x downscale, timed on a 128x128 input.

Photos: scikit-image's bundled samples (astronaut, coffee, chelsea, rocket, camera),
no network needed (``pip install scikit-image`` into the venv; bench only).
Illustrations: flat-colour scenes rendered with Pillow (shapes, outlines, DejaVu
text, gradients) at 4x and Lanczos-reduced to 256x256, plus skimage's ``logo``.

Run:  PYTHONPATH=src python bench/upscale_models.py [--threads 2] [--no-x4plus]

Measured on 2 cores of an AMD EPYC (AVX2+FMA, no AVX-512/AMX), no GPU, ncnn
1.0.20261020 CPU with 2 threads, numpy 2.4, Pillow 13, scikit-image 0.26 samples.
PSNR (dB, RGB) / SSIM (luma), mean over 5 photos and 4 illustrations; speed in
seconds per output megapixel (512x512 -> 1024x1024, tile 256); whole run ~2.5 min:

    model                              photo PSNR  SSIM    illus PSNR  SSIM    s/out-MP
    lanczos (baseline)                     31.09  0.9234       29.19  0.9571      0.02
    bicubic (baseline)                     30.70  0.9174       28.45  0.9531      0.02
    realesr-animavideov3-x2                29.70  0.9044       29.19  0.9733      2.10
    waifu2x-cunet-x2                       33.54  0.9477       38.50  0.9926      3.27
    waifu2x-cunet-x2 +post(50/50)          33.29  0.9376       37.46  0.9819      3.27
    waifu2x-cunet-x2-denoise1              33.28  0.9465       36.82  0.9911      3.37
    waifu2x-photo-x2                       33.31  0.9463       36.02  0.9897      1.08
    waifu2x-photo-x2-denoise1              33.27  0.9455       36.02  0.9897      1.21
    waifu2x-anime-x2                       33.06  0.9430       35.54  0.9882      1.22
    realcugan-se-x2                        28.69  0.8920       29.55  0.9686      3.37
    realcugan-se-x2-conservative           29.95  0.9090       30.55  0.9738      3.14
    realcugan-se-x2-denoise1               28.57  0.8907       29.29  0.9660      3.59
    realesrgan-x4plus (4x->2x)             29.23  0.9054       30.13  0.9747    107.86

(Timings were taken with tile 256 while the machine was otherwise idle; the UNet
models - cunet, cugan - now cap tiles at 192 to bound memory, ~8 % more compute.
Other jobs on the same 2 cores slow everything down 3-4x.)

("+post(50/50)" is ``upscale()`` with the default controls: the loss is mostly the
seeded grain, sigma 1 level; resemblance 50 itself costs < 0.1 dB.)

Reasoning -> DEFAULT_MODEL = "waifu2x-cunet-x2":

* waifu2x CUNet is the most faithful 2x model on both sets: +2.45 dB / +0.024 SSIM
  over Lanczos on photos and +9.3 dB on illustrations, at 3.3 s per output megapixel
  (a 1024x1024 input takes ~11 s of ``upscale_raw`` on these 2 cores).
* waifu2x upconv_7 photo is 3x faster (1.1 s/out-MP) and only 0.23 dB behind on
  photos, but 2.5 dB behind on flat-colour illustrations: the pick if latency matters.
* Real-ESRGAN animevideo v3 and Real-CUGAN are GAN-trained: they look crisper but
  invent texture and shift tones (animevideo v3 brightens mid-tones by ~3 levels), so
  they score below even Lanczos on photos; an upscale endpoint should be faithful
  first (crispness is available through ``detail``).
* realesrgan-x4plus is 33x slower than CUNet and not better once brought to 2x:
  opt-in only (about 7 minutes per input megapixel at 4x on this CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ideohub.engines.ncnn_upscaler import DEFAULT_MODEL, MODELS, NcnnUpscaler  # noqa: E402

CROP = 256
SHAVE = 4


# ------------------------------------------------------------------------------ metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a = a[SHAVE:-SHAVE, SHAVE:-SHAVE].astype(np.float64)
    b = b[SHAVE:-SHAVE, SHAVE:-SHAVE].astype(np.float64)
    mse = np.mean((a - b) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gauss_filter(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    # 'valid' separable convolution
    h, w = x.shape
    tmp = sum(k[i] * x[:, i : w - 2 * radius + i] for i in range(2 * radius + 1))
    return sum(k[i] * tmp[i : h - 2 * radius + i, :] for i in range(2 * radius + 1))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM on BT.601 luma, Gaussian window 11 / sigma 1.5."""

    def luma(x):
        x = x[SHAVE:-SHAVE, SHAVE:-SHAVE].astype(np.float64)
        return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]

    x, y = luma(a), luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gauss_filter(x), _gauss_filter(y)
    sxx = _gauss_filter(x * x) - mx * mx
    syy = _gauss_filter(y * y) - my * my
    sxy = _gauss_filter(x * y) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(m.mean())


# ------------------------------------------------------------------------------ images


def _crop(arr: np.ndarray, cy: float = 0.5, cx: float = 0.5) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    h, w = arr.shape[:2]
    y0 = int(np.clip(cy * h - CROP / 2, 0, h - CROP))
    x0 = int(np.clip(cx * w - CROP / 2, 0, w - CROP))
    return np.ascontiguousarray(arr[y0 : y0 + CROP, x0 : x0 + CROP, :3])


def photos() -> dict[str, np.ndarray]:
    try:
        import skimage.data as d
    except ImportError:  # pragma: no cover
        sys.exit("pip install scikit-image (bench only) for the bundled sample photos")
    return {
        "astronaut": _crop(d.astronaut(), 0.3, 0.45),
        "coffee": _crop(d.coffee(), 0.5, 0.45),
        "chelsea": _crop(d.chelsea(), 0.5, 0.4),
        "rocket": _crop(d.rocket(), 0.45, 0.5),
        "camera": _crop(d.camera(), 0.4, 0.45),
    }


def _font(size: int):
    for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
              "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        if os.path.exists(p):
            return ImageFont.truetype(p, size)
    return ImageFont.load_default()


def illustrations() -> dict[str, np.ndarray]:
    S = CROP * 4
    out: dict[str, np.ndarray] = {}

    # 1) flat shapes with dark outlines (cartoon style)
    im = Image.new("RGB", (S, S), (250, 240, 210))
    d = ImageDraw.Draw(im)
    d.rectangle((0, S * 0.7, S, S), fill=(110, 180, 90))
    d.ellipse((S * 0.6, S * 0.08, S * 0.85, S * 0.33), fill=(255, 200, 40), outline=(40, 30, 20), width=12)
    d.polygon([(S * 0.1, S * 0.7), (S * 0.3, S * 0.3), (S * 0.5, S * 0.7)], fill=(200, 70, 60),
              outline=(40, 30, 20), width=12)
    d.rounded_rectangle((S * 0.55, S * 0.45, S * 0.9, S * 0.85), radius=40, fill=(70, 110, 200),
                        outline=(30, 30, 40), width=12)
    for i in range(6):
        d.line((S * 0.05 + i * 60, S * 0.9, S * 0.15 + i * 60, S * 0.98), fill=(30, 80, 30), width=10)
    out["shapes"] = im

    # 2) text / UI-like
    im = Image.new("RGB", (S, S), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, S, S * 0.18), fill=(35, 60, 120))
    d.text((S * 0.05, S * 0.04), "IdeoHub", font=_font(110), fill=(255, 255, 255))
    d.text((S * 0.05, S * 0.25), "Upscale test 123", font=_font(80), fill=(20, 20, 20))
    d.text((S * 0.05, S * 0.38), "The quick brown fox", font=_font(56), fill=(180, 30, 30))
    d.text((S * 0.05, S * 0.47), "jumps over the lazy dog.", font=_font(48), fill=(30, 120, 30))
    d.rounded_rectangle((S * 0.05, S * 0.65, S * 0.55, S * 0.8), radius=30, fill=(240, 140, 30))
    d.text((S * 0.1, S * 0.68), "Button", font=_font(70), fill=(255, 255, 255))
    out["text"] = im

    # 3) gradients + flat overlay (poster style)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    grad = np.stack([255 * (1 - yy) * 0.9 + 20, 120 + 100 * xx, 200 * yy + 40], axis=-1)
    im = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for i in range(5):
        r = S * (0.08 + 0.05 * i)
        d.ellipse((S * 0.5 - r, S * 0.55 - r, S * 0.5 + r, S * 0.55 + r), outline=(255, 255, 255), width=8)
    d.polygon([(0, S), (S * 0.35, S * 0.6), (S * 0.6, S * 0.85), (S, S * 0.5), (S, S)], fill=(25, 25, 45))
    out["poster"] = im

    res = {k: np.asarray(v.resize((CROP, CROP), Image.Resampling.LANCZOS)) for k, v in out.items()}
    try:
        import skimage.data as d

        logo = Image.fromarray(d.logo())
        bg = Image.new("RGBA", logo.size, (255, 255, 255, 255))
        res["logo"] = _crop(np.asarray(Image.alpha_composite(bg, logo).convert("RGB")), 0.5, 0.5)
    except Exception:  # pragma: no cover
        pass
    return res


# ------------------------------------------------------------------------------ bench


def down2(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BICUBIC))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-x4plus", action="store_true")
    ap.add_argument("--time-size", type=int, default=512)
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args()

    sets = {"photo": photos(), "illus": illustrations()}
    names = args.models or [n for n, s in MODELS.items() if s.scale == 2]
    rows: list[tuple[str, dict[str, tuple[float, float]], float]] = []

    def evaluate(label: str, fn, tsec: float) -> None:
        res = {}
        for kind, imgs in sets.items():
            ps, ss = [], []
            for img in imgs.values():
                up = fn(down2(img))
                assert up.shape == img.shape, (label, up.shape, img.shape)
                ps.append(psnr(up, img))
                ss.append(ssim(up, img))
            res[kind] = (float(np.mean(ps)), float(np.mean(ss)))
        rows.append((label, res, tsec))
        print(f"{label:34s} photo {res['photo'][0]:6.2f} {res['photo'][1]:.4f}   "
              f"illus {res['illus'][0]:6.2f} {res['illus'][1]:.4f}   {tsec:8.2f} s/out-MP", flush=True)

    def pil(filt):
        return lambda x: np.asarray(Image.fromarray(x).resize((x.shape[1] * 2, x.shape[0] * 2), filt))

    t_img = np.asarray(Image.fromarray(sets["photo"]["astronaut"]).resize(
        (args.time_size, args.time_size), Image.Resampling.BICUBIC))
    t0 = time.perf_counter()
    pil(Image.Resampling.LANCZOS)(t_img)
    lz_t = (time.perf_counter() - t0) / (4 * args.time_size**2 / 1e6)
    evaluate("lanczos (baseline)", pil(Image.Resampling.LANCZOS), lz_t)
    evaluate("bicubic (baseline)", pil(Image.Resampling.BICUBIC), lz_t)

    for name in names:
        up = NcnnUpscaler(name, num_threads=args.threads)
        up.upscale_raw(t_img[:64, :64])  # warm-up
        t0 = time.perf_counter()
        up.upscale_raw(t_img)
        sec = (time.perf_counter() - t0) / (4 * args.time_size**2 / 1e6)
        evaluate(name, up.upscale_raw, sec)
        if name == DEFAULT_MODEL:
            evaluate(name + " +post(50/50)", lambda x, u=up: u.upscale(x)[0], sec)

    if not args.no_x4plus:
        up = NcnnUpscaler("realesrgan-x4plus", num_threads=args.threads)
        small = t_img[:128, :128]
        t0 = time.perf_counter()
        up.upscale_raw(small)
        sec = (time.perf_counter() - t0) / (4 * 128 * 128 / 1e6)  # per 2x-output MP

        def x4_to_2(x, u=up):
            big = u.upscale_raw(x)
            return np.asarray(Image.fromarray(big).resize((x.shape[1] * 2, x.shape[0] * 2),
                                                          Image.Resampling.LANCZOS))

        evaluate("realesrgan-x4plus (4x->2x)", x4_to_2, sec)


if __name__ == "__main__":
    main()
