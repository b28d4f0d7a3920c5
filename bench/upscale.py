"""Benchmark the local upscaler: the model in-process versus our HTTP ``/upscale``.

Prints, from one run:
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

Run:  .venv/bin/python bench/upscale.py [--skip-4k] [--size 1024]
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

from ideohub.engines.ncnn_upscaler import DEFAULT_MODEL, MODELS, NcnnUpscaler, model_flops

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--skip-4k", action="store_true", help="skip the 4096x4096 peak-RSS run (takes minutes)")
    args = ap.parse_args()
    spec = MODELS[DEFAULT_MODEL]
    peak, peak_formula = cpu_peak_gflops()
    print(f"machine: {platform.machine()}, {peak_formula}; python {platform.python_version()}")
    print(f"model: {DEFAULT_MODEL} (x{spec.scale}), tile {TILE}, ncnn threads {os.cpu_count()}")

    img = test_image(args.size)
    png = encode(img)

    # 1. raw, in-process (warm the model first, as the server is warmed below)
    up = NcnnUpscaler(DEFAULT_MODEL, tile=TILE)
    up.upscale_raw(img[:64, :64])
    t0 = time.perf_counter()
    up.upscale_raw(img)
    raw_s = time.perf_counter() - t0
    del up

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
