"""Whether the local engines can use a GPU: ncnn's Vulkan devices, probed once per process.

A device counts only when it is really a GPU: ncnn lists software rasterisers (Mesa's llvmpipe,
SwiftShader) as Vulkan devices of type "cpu", which would run slower than ncnn's own CPU path, so
those are ignored. With no Vulkan loader at all (this project's CI) ncnn reports no device and the
engines run on the CPU. ``/healthz`` reports the result as ``accelerator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# ncnn's GpuInfo.type(): 0 discrete, 1 integrated, 2 virtual, 3 cpu (software)
_GPU_TYPES = {0: "discrete", 1: "integrated", 2: "virtual"}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    kind: str  # discrete, integrated or virtual

    def describe(self) -> str:
        return f"vulkan:{self.name} ({self.kind})"


def pick(devices: list[tuple[int, str, int]]) -> Gpu | None:
    """The first real GPU among ``(index, name, type)``: discrete before integrated before virtual."""
    real = [(t, i, name) for i, name, t in devices if t in _GPU_TYPES]
    if not real:
        return None
    t, i, name = min(real)
    return Gpu(i, name, _GPU_TYPES[t])


@cache
def usable_gpu() -> Gpu | None:
    """The GPU the upscaler should run on, or None for the CPU (cached: probing loads Vulkan)."""
    try:
        import ncnn  # logs to stderr when no Vulkan loader is installed; harmless

        count = ncnn.get_gpu_count()
        devices = [(i, ncnn.get_gpu_info(i).device_name(), ncnn.get_gpu_info(i).type()) for i in range(count)]
    except Exception:  # a build without Vulkan, or a driver that fails to enumerate: the CPU
        return None
    return pick(devices)


def accelerator() -> str:
    """``vulkan:<device> (<kind>)`` or ``cpu``, for ``/healthz``."""
    gpu = usable_gpu()
    return gpu.describe() if gpu is not None else "cpu"
