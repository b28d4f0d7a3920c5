"""Benchmark the local upscaler: model choice ("auto"), quality, and in-process versus HTTP.

Prints, from one run (same inputs, timed runs alternated ABAB, side by side):

A. the router (``engines.upscale_router``): accuracy on the tune and the held-out halves of its
   reference sets, each misclassified image named (``--router`` prints only this; ``--fit`` re-fits
   the constants on the tune half and prints them);
B. the photo table: scikit-image's astronaut, coffee, chelsea and hubble_deep_field.  Time: the
   four as a 2x2 mosaic of 512x512 squares (1024x1024 -> 2048x2048), the default ("auto": router +
   the routed model's ``upscale_raw``) versus ``waifu2x-photo-x2`` alone (targets: auto <= 1.10x
   photo; auto's router time is shown separately) and CUNet for reference.  Quality: each whole
   photo downscaled 2x with PIL's bicubic filter and restored; RGB PSNR over the whole image and
   SSIM (``skimage.metrics.structural_similarity``, ``channel_axis=-1``, defaults), no border crop,
   mean of the four (target: auto >= photo - 0.05 dB); Lanczos for reference;
C. the illustration table: the four illustrations of ``bench/upscale_models.py`` (shapes, text,
   poster, logo; 256x256) and six held-out rendered scenes (seeds 1000-1005, 256x256), same method
   (target: auto >= CUNet), with the model "auto" picked for each;
D. (unless ``--skip-http``) the HTTP comparison below, with the model "auto" routes the test image to:

1. raw: ``NcnnUpscaler.upscale_raw`` (the default model, the server's tiling) called directly
   in this process on a 1024x1024 image at 2x;
2. http: the end-to-end time of ``POST /upscale`` on the same image with default settings
   against ``ideohub serve`` in a subprocess (decode, model, resemblance/detail/grain
   post-processing, safety check, PNG encode, storage, signed URL), and the ratio http/raw
   (target <= 1.10);
3. achieved GFLOP/s, counted from the model's layer shapes (``model_flops``; both for the image
   and for the padded tiles actually computed) and the fraction of this CPU's fp32 peak:
   ``peak = cores x GHz x 2 FMA units x 8 fp32 lanes (AVX2) x 2 flops per FMA``;
4. the peak RSS (VmHWM) of the server process — its worker threads included — after
   upscaling a 4096x4096 input (target <= 2 GB).

Run:  PYTHONPATH=src .venv/bin/python bench/upscale.py [--skip-4k] [--skip-http] [--size 1024] [--router [--fit]]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ideohub.engines import upscale_router as router
from ideohub.engines.local_upscaler import LocalUpscaler
from ideohub.engines.ncnn_upscaler import MODELS, NcnnUpscaler, model_flops

TILE = 256  # Settings.upscale_tile's default: the raw run uses the server's tiling


def test_image(size: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth colour fields, shapes with soft edges, fine noise."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    im = Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 40, size // 8))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    arr = np.asarray(im).astype(np.int16) + rng.normal(0, 4, (size, size, 3)).astype(np.int16)
    return arr.clip(0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {"compress_level": 1}))
    return buf.getvalue()


def cpu_peak_gflops() -> tuple[float, str]:
    cores = os.cpu_count() or 1
    text = Path("/proc/cpuinfo").read_text()
    mhz = max(float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)) if "cpu MHz" in text else 2000.0
    flags = re.search(r"^flags\s*:(.*)$", text, re.M)
    lanes = 16 if flags and "avx512f" in flags.group(1).split() else 8
    peak = cores * mhz / 1000 * 2 * lanes * 2
    model = re.search(r"model name\s*:\s*(.*)", text)
    return peak, f"{cores} cores x {mhz / 1000:.2f} GHz x 2 FMA x {lanes} fp32 lanes x 2 = {peak:.0f} GFLOP/s " \
                 f"({model.group(1).strip() if model else platform.processor()})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def start_server(data_dir: str, port: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "IDEOHUB_LOG_LEVEL": "WARNING", "IDEOHUB_ENGINES": '{"upscale": "local-upscaler"}',
           "IDEOHUB_REQUEST_TIMEOUT_S": "3600"}  # a 4096x4096 upscale takes minutes on 2 cores
    proc = subprocess.Popen([sys.executable, "-m", "ideohub.cli", "serve", "--port", str(port), "--data-dir", data_dir],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    key = proc.stdout.readline().strip()  # the first start prints the new key on its own line
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, key
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def upscale_http(client: httpx.Client, key: str, data: bytes, name: str) -> tuple[float, dict]:
    started = time.perf_counter()
    r = client.post("/upscale", headers={"Api-Key": key}, files={"image_file": (name, data, "image/png")},
                    data={"image_request": "{}"})
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    return elapsed, r.json()


# ------------------------------------------------------------------------------ model choice ("auto")

BENCH_PHOTOS = ("astronaut", "coffee", "chelsea", "hubble_deep_field")
PHOTO, CUNET = router.PHOTO_MODEL, router.ILLUSTRATION_MODEL


def router_accuracy(fit: bool = False) -> None:
    if fit:
        tune = router.reference_sets("tune")
        samples = [(router.features(img), kind == "illustration") for kind, d in tune.items() for img in d.values()]
        mu, sd, w, b = router.fit(samples)
        fmt = lambda a: "np.array([" + ", ".join(f"{v:.6g}" for v in a) + "])"  # noqa: E731
        print(f"fitted on the tune half ({len(samples)} images):\nMEAN = {fmt(mu)}\nSTD = {fmt(sd)}\n"
              f"W = {fmt(w)}\nB = {b:.6g}")
        router.MEAN, router.STD, router.W, router.B = mu, sd, w, b
    print(f"router features {router.FEATURES} on a <= {router.THUMB} px thumbnail")
    for split in ("tune", "held-out"):
        sets = router.reference_sets(split)
        per: dict[str, tuple[int, int]] = {}
        wrong: list[str] = []
        spent = 0.0
        for kind, images in sets.items():
            ok = 0
            for name, img in images.items():
                t0 = time.perf_counter()
                r = router.classify(img)
                spent += time.perf_counter() - t0
                ok += r.kind == kind
                if r.kind != kind:
                    wrong.append(f"{kind}:{name} (p_illustration {r.p_illustration:.2f})")
            per[kind] = (ok, len(images))
        ok_all, n_all = sum(o for o, _ in per.values()), sum(n for _, n in per.values())
        print(f"  {split:8s}: {ok_all}/{n_all} = {100 * ok_all / n_all:.1f}%   photos {per['photo'][0]}/"
              f"{per['photo'][1]}, illustrations {per['illustration'][0]}/{per['illustration'][1]}; "
              f"{1000 * spent / n_all:.1f} ms per image")
        if wrong:
            print("    wrong: " + ", ".join(wrong))


def _down2(a: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((a.shape[1] // 2, a.shape[0] // 2), Image.Resampling.BICUBIC))


def _even(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1))


def _square(a: np.ndarray, n: int) -> np.ndarray:
    h, w = a.shape[:2]
    c = min(h, w)
    y0, x0 = (h - c) // 2, (w - c) // 2
    return np.asarray(Image.fromarray(a[y0 : y0 + c, x0 : x0 + c]).resize((n, n), Image.Resampling.LANCZOS))


def model_choice_tables(ups: dict[str, NcnnUpscaler], rounds: int) -> None:
    auto = LocalUpscaler("auto", tile=TILE)
    auto._local.upscalers = ups  # the same loaded nets: the comparison is the routing, not a reload

    def run_auto(img: np.ndarray) -> tuple[np.ndarray, str]:
        model = auto.choose(img)
        return ups[model].upscale_raw(img), model

    def lanczos(img: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.Resampling.LANCZOS))

    # B. photos: time on the mosaic, alternating
    photos = {n: _even(router.skimage_image(n)) for n in BENCH_PHOTOS}
    sq = [_square(photos[n], 512) for n in BENCH_PHOTOS]
    mosaic = np.ascontiguousarray(np.concatenate([np.concatenate(sq[:2], 1), np.concatenate(sq[2:], 1)], 0))
    for up in ups.values():
        up.upscale_raw(mosaic[:64, :64])  # warm
    times: dict[str, list[float]] = {"auto": [], PHOTO: [], CUNET: []}
    route_ms: list[float] = []
    chosen = ""
    for r in range(rounds):
        order = ["auto", PHOTO] if r % 2 == 0 else [PHOTO, "auto"]
        for label in order:
            t0 = time.perf_counter()
            if label == "auto":
                t1 = time.perf_counter()
                chosen = auto.choose(mosaic)
                route_ms.append(1000 * (time.perf_counter() - t1))
                ups[chosen].upscale_raw(mosaic)
            else:
                ups[label].upscale_raw(mosaic)
            times[label].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ups[CUNET].upscale_raw(mosaic)
    times[CUNET].append(time.perf_counter() - t0)

    q: dict[str, list[tuple[float, float]]] = {"auto": [], PHOTO: [], CUNET: [], "lanczos": []}
    routed: list[str] = []
    for name, img in photos.items():
        low = _down2(img)
        out_auto, m = run_auto(low)
        routed.append(f"{name}->{'photo' if m == PHOTO else 'cunet'}")
        for label, out in (("auto", out_auto), (PHOTO, ups[PHOTO].upscale_raw(low)),
                           (CUNET, ups[CUNET].upscale_raw(low)), ("lanczos", lanczos(low))):
            q[label].append((psnr(out, img), ssim(out, img)))
    mean = {k: (float(np.mean([p for p, _ in v])), float(np.mean([s_ for _, s_ in v]))) for k, v in q.items()}
    best = {k: min(v) for k, v in times.items()}
    print()
    print(f"B. photos: {', '.join(BENCH_PHOTOS)}; time on their 1024x1024 mosaic -> 2048x2048 "
          f"(best of {rounds}, alternated), quality on each whole photo 2x-bicubic-down then up "
          f"(mosaic routed to {chosen}; {', '.join(routed)})")
    print(f"  {'':22s}{'seconds':>9s}{'x photo':>9s}{'PSNR dB':>9s}{'SSIM':>8s}")
    for label in ("auto", PHOTO, CUNET, "lanczos"):
        t = best.get(label)
        ts = f"{t:9.2f}{t / best[PHOTO]:9.2f}" if t is not None else f"{'':9s}{'':9s}"
        name = label + " (default)" if label == "auto" else label
        print(f"  {name:22s}{ts}{mean[label][0]:9.2f}{mean[label][1]:8.3f}")
    ratio = best["auto"] / best[PHOTO]
    dp = mean["auto"][0] - mean[PHOTO][0]
    print(f"  router: {np.median(route_ms):.1f} ms on the mosaic (included in auto's time)")
    print(f"  target auto time <= 1.10 x photo: {ratio:.3f} {'PASS' if ratio <= 1.10 else 'FAIL'};  "
          f"target auto PSNR >= photo - 0.05 dB: {dp:+.3f} dB {'PASS' if dp >= -0.05 else 'FAIL'}")

    # C. illustrations
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from upscale_models import illustrations  # noqa: E402  (shapes, text, poster, logo)

    ill = dict(illustrations())
    for seed in range(1000, 1006):
        ill[f"scene{seed}-{router.SCENE_STYLES[seed % len(router.SCENE_STYLES)]}"] = router.render_scene(seed, 256)
    qi: dict[str, list[tuple[float, float]]] = {"auto": [], PHOTO: [], CUNET: [], "lanczos": []}
    picks: list[str] = []
    for name, img in ill.items():
        low = _down2(img)
        out_auto, m = run_auto(low)
        picks.append(f"{name}->{'photo' if m == PHOTO else 'cunet'}")
        for label, out in (("auto", out_auto), (PHOTO, ups[PHOTO].upscale_raw(low)),
                           (CUNET, ups[CUNET].upscale_raw(low)), ("lanczos", lanczos(low))):
            qi[label].append((psnr(out, img), ssim(out, img)))
    mi = {k: (float(np.mean([p for p, _ in v])), float(np.mean([s_ for _, s_ in v]))) for k, v in qi.items()}
    print()
    print(f"C. illustrations ({len(ill)}, 256x256, 2x-bicubic-down then up): {', '.join(picks)}")
    print(f"  {'':22s}{'PSNR dB':>9s}{'SSIM':>8s}")
    for label in ("auto", PHOTO, CUNET, "lanczos"):
        print(f"  {(label + ' (default)' if label == 'auto' else label):22s}{mi[label][0]:9.2f}{mi[label][1]:8.3f}")
    di = mi["auto"][0] - mi[CUNET][0]
    print(f"  target auto PSNR >= CUNet: {di:+.3f} dB {'PASS' if di >= -1e-9 else 'FAIL'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--skip-4k", action="store_true", help="skip the 4096x4096 peak-RSS run (takes minutes)")
    ap.add_argument("--skip-http", action="store_true", help="skip D (the HTTP / raw comparison)")
    ap.add_argument("--router", action="store_true", help="only A: the router's accuracy")
    ap.add_argument("--fit", action="store_true", help="with --router: re-fit the router on the tune half")
    ap.add_argument("--rounds", type=int, default=2, help="alternated timing rounds per model in B")
    args = ap.parse_args()
    print("A. router")
    router_accuracy(fit=args.fit)
    if args.router:
        return
    peak, peak_formula = cpu_peak_gflops()
    print(f"machine: {platform.machine()}, {peak_formula}; python {platform.python_version()}")
    print(f"ncnn threads {os.cpu_count()}, tile {TILE}")
    ups = {m: NcnnUpscaler(m, tile=TILE) for m in (PHOTO, CUNET)}
    model_choice_tables(ups, args.rounds)
    if args.skip_http:
        return

    img = test_image(args.size)
    png = encode(img)

    # 1. raw, in-process, the model "auto" (the server's default) routes this image to
    model = router.route(img)
    spec = MODELS[model]
    print(f"\nD. HTTP vs raw: model {model} (x{spec.scale}, what \"auto\" picks for the test image)")
    up = ups[model]
    t0 = time.perf_counter()
    up.upscale_raw(img)
    raw_s = time.perf_counter() - t0
    del ups, up

    flops_image = model_flops(spec, args.size + 2 * spec.shrink, args.size + 2 * spec.shrink)
    gflops = flops_image / raw_s / 1e9

    # 2. HTTP end to end, then 4. peak RSS on a 4096x4096 input
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc, key = start_server(tmp, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3700) as client:
                upscale_http(client, key, encode(img[:64, :64]), "warm.png")  # loads the model
                http_s, body = upscale_http(client, key, png, "bench.png")
                item = body["data"][0]
                assert item["upscaled_resolution"] == f"{args.size * spec.scale}x{args.size * spec.scale}", item
                download_s = time.perf_counter()
                client.get(item["url"]).raise_for_status()
                download_s = time.perf_counter() - download_s
                rss_1k = vm_hwm_mb(proc.pid)
                ratio = http_s / raw_s
                print()
                print(f"{'':34s}{'seconds':>10s}")
                print(f"{'raw upscale_raw in-process':34s}{raw_s:10.2f}")
                print(f"{'HTTP /upscale end to end':34s}{http_s:10.2f}   (+ {download_s:.2f} s to download the result)")
                print(f"ratio HTTP / raw: {ratio:.3f}   target <= 1.10: {'PASS' if ratio <= 1.10 else 'FAIL'}")
                # the useful work: one pass over the image (plus the model's own pre-padding); the
                # tiles' overlap is computed too but not counted, so the achieved rate is a lower bound
                print(f"model work: {flops_image / 1e9:.0f} GFLOP for one pass over the image "
                      f"(tile overlap not counted)")
                print(f"achieved: {gflops:.1f} GFLOP/s = {100 * gflops / peak:.1f}% of the fp32 peak {peak:.0f} GFLOP/s")
                print(f"server peak RSS after the {args.size}x{args.size} request: {rss_1k:.0f} MB", flush=True)
                if not args.skip_4k:
                    big = encode(test_image(4096, seed=1), "JPEG")
                    t4 = time.perf_counter()
                    _s, body4 = upscale_http(client, key, big, "big.jpg")
                    t4 = time.perf_counter() - t4
                    rss_4k = vm_hwm_mb(proc.pid)
                    assert body4["data"][0]["upscaled_resolution"] == "8192x8192"
                    print(f"server peak RSS after a 4096x4096 -> 8192x8192 upscale ({t4:.0f} s): {rss_4k:.0f} MB   "
                          f"target <= 2048 MB: {'PASS' if rss_4k <= 2048 else 'FAIL'}")
        finally:
            proc.terminate()
            proc.wait(30)

if __name__ == "__main__":
    main()
