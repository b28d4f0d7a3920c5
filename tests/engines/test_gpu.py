"""The GPU probe: only a real GPU counts (ncnn lists software rasterisers as Vulkan devices of type
"cpu"), discrete before integrated before virtual; with no Vulkan loader (this machine) the local
engines run on the CPU and ``/healthz`` says so."""

from __future__ import annotations

import httpx

from conftest import ThreadedServer, free_port
from ideohub.engines.gpu import Gpu, accelerator, pick, usable_gpu


def test_only_real_gpus_count_and_the_best_kind_wins():
    assert pick([]) is None
    assert pick([(0, "llvmpipe (LLVM 15.0.7, 256 bits)", 3)]) is None  # a software rasteriser
    assert pick([(0, "llvmpipe", 3), (1, "Intel(R) UHD Graphics 770", 1)]) == Gpu(1, "Intel(R) UHD Graphics 770",
                                                                                 "integrated")
    chosen = pick([(0, "Intel(R) UHD Graphics 770", 1), (1, "NVIDIA H200", 0)])
    assert chosen == Gpu(1, "NVIDIA H200", "discrete") and chosen.describe() == "vulkan:NVIDIA H200 (discrete)"


def test_this_machine_runs_on_the_cpu_and_healthz_says_so(tmp_path):
    from ideohub.api.app import create_app
    from ideohub.config import load_settings

    assert usable_gpu() is None and accelerator() == "cpu"  # no Vulkan loader here (nor in CI)
    port = free_port()
    settings = load_settings(data_dir=tmp_path, port=port)
    with ThreadedServer(create_app(settings), port):
        body = httpx.get(f"{settings.base_url}/healthz").json()
    assert body["accelerator"] == "cpu" and "upscale" in body["engines"]
