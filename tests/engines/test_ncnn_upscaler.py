"""Tests for ideohub.engines.ncnn_upscaler (real ncnn models on CPU, small images).

Regenerate the golden PNGs with:  IDEOHUB_REGEN_GOLDEN=1 PYTHONPATH=src python -m pytest tests/engines
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ideohub.engines import ncnn_upscaler as nu
from ideohub.engines.ncnn_upscaler import DEFAULT_MODEL, MODELS, NcnnUpscaler, model_flops
from upscale_metrics import psnr

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("IDEOHUB_REGEN_GOLDEN") == "1"
FAST_2X = ["realesr-animavideov3-x2", "realcugan-se-x2", "waifu2x-cunet-x2", "waifu2x-photo-x2"]


@pytest.fixture(scope="module")
def upscalers():
    cache: dict[tuple, NcnnUpscaler] = {}

    def get(model: str = DEFAULT_MODEL, **kw) -> NcnnUpscaler:
        key = (model, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = NcnnUpscaler(model, num_threads=1, **kw)
        return cache[key]

    return get


def golden_input() -> np.ndarray:
    """24x24 deterministic input: a gradient plus fixed-seed noise (stored as PNG too)."""
    path = GOLDEN / "input_24x24.png"
    if path.exists() and not REGEN:
        return np.asarray(Image.open(path).convert("RGB"))
    rng = np.random.default_rng(20240601)
    yy, xx = np.mgrid[0:24, 0:24].astype(np.float32)
    base = np.stack([xx * 10, yy * 10, 255 - (xx + yy) * 5], axis=-1)
    arr = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    GOLDEN.mkdir(exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def test_image(h: int = 80, w: int = 100) -> np.ndarray:
    """A small illustration-like test image with edges, gradient and mild texture."""
    img = Image.new("RGB", (w, h), (200, 220, 240))
    d = ImageDraw.Draw(img)
    d.ellipse((w * 0.1, h * 0.1, w * 0.6, h * 0.75), fill=(200, 30, 30), outline=(10, 10, 10), width=2)
    d.rectangle((w * 0.5, h * 0.4, w * 0.95, h * 0.95), fill=(20, 120, 40))
    d.line((0, h - 1, w - 1, 0), fill=(0, 0, 0), width=1)
    arr = np.asarray(img).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    arr += (xx / w * 30)[..., None]
    rng = np.random.default_rng(7)
    arr += rng.normal(0, 4, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


test_image.__test__ = False  # helper, not a test




# ------------------------------------------------------------------------------ registry


def test_registry_has_required_models():
    for name in FAST_2X + ["realesrgan-x4plus"]:
        assert name in MODELS
    assert DEFAULT_MODEL in MODELS
    assert MODELS[DEFAULT_MODEL].scale == 2
    assert not MODELS[DEFAULT_MODEL].slow
    assert MODELS["realesrgan-x4plus"].scale == 4 and MODELS["realesrgan-x4plus"].slow
    for spec in MODELS.values():
        param, binf = nu.model_path(spec)
        assert param.is_file() and binf.is_file()


def test_unknown_model_rejected():
    with pytest.raises(ValueError):
        NcnnUpscaler("no-such-model")


# ------------------------------------------------------------------------------ golden


@pytest.mark.parametrize("model", sorted({DEFAULT_MODEL, "realesr-animavideov3-x2", "realcugan-se-x2"}))
def test_golden_tile(upscalers, model):
    inp = golden_input()
    out = upscalers(model).upscale_raw(inp)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    path = GOLDEN / f"{model}_24x24.png"
    if REGEN or not path.exists():
        Image.fromarray(out).save(path)
        if not REGEN:
            pytest.fail(f"golden {path.name} was missing and has been written; re-run")
    ref = np.asarray(Image.open(path).convert("RGB"))
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 3, f"max abs diff {diff.max()} vs golden {path.name}"


# ------------------------------------------------------------------------------ tiling


@pytest.mark.parametrize("model", FAST_2X)
def test_tiling_is_seam_free(upscalers, model):
    img = test_image(80, 100)
    single = upscalers(model, tile=512).upscale_raw(img).astype(np.int16)
    tiled_up = upscalers(model, tile=32, overlap=8)
    tiled = tiled_up.upscale_raw(img).astype(np.int16)
    assert single.shape == tiled.shape == (160, 200, 3)
    diff = np.abs(single - tiled)
    assert diff.max() <= 2, f"tiled differs from single pass by {diff.max()}"
    # at every internal tile boundary (output coords) the two agree on both sides: no step
    s = tiled_up.scale
    for axis, n in ((0, 80), (1, 100)):
        bounds = [a for a, _ in nu._split(n, 32, tiled_up.spec.align)][1:]
        assert bounds, "test must actually cross tile boundaries"
        for b in bounds:
            before = np.take(tiled - single, [b * s - 1], axis=axis)
            after = np.take(tiled - single, [b * s], axis=axis)
            assert np.abs(after - before).max() <= 2
            assert np.abs(np.take(diff, [b * s - 1, b * s], axis=axis)).mean() < 0.05


def test_progress_reports_all_tiles(upscalers):
    calls = []
    up = upscalers(DEFAULT_MODEL, tile=32, overlap=8)
    up.upscale_raw(test_image(40, 70), progress=lambda d, t: calls.append((d, t)))
    total = len(nu._split(40, 32, up.spec.align)) * len(nu._split(70, 32, up.spec.align))
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == list(range(total + 1))


# ------------------------------------------------------------------------------ sizes, alpha


@pytest.mark.parametrize("model", [DEFAULT_MODEL, "realcugan-se-x2"])
@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (9, 1), (7, 13), (33, 17)])
def test_output_is_exactly_scale_times_input(upscalers, model, hw):
    rng = np.random.default_rng(hw[0] * 100 + hw[1])
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    before = img.copy()
    up = upscalers(model, tile=16, overlap=4)
    out = up.upscale_raw(img)
    assert out.shape == (hw[0] * up.scale, hw[1] * up.scale, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(img, before)  # input untouched


def test_constant_image_stays_constant(upscalers):
    img = np.full((20, 30, 3), (0, 0, 0), np.uint8)
    out = upscalers(DEFAULT_MODEL).upscale_raw(img)
    assert out.max() <= 2


def test_rgba(upscalers):
    img = test_image(30, 40)
    yy, xx = np.mgrid[0:30, 0:40]
    alpha = (xx * 6).clip(0, 255).astype(np.uint8)
    rgba = np.dstack([img, alpha])
    up = upscalers(DEFAULT_MODEL)
    out = up.upscale_raw(rgba)
    assert out.shape == (60, 80, 4)
    np.testing.assert_array_equal(out[..., :3], up.upscale_raw(img))
    ref_alpha = np.asarray(Image.fromarray(alpha).resize((80, 60), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(out[..., 3], ref_alpha)
    res = up.upscale(rgba, seed=3, num_images=2)
    assert [r.shape for r in res] == [(60, 80, 4)] * 2
    for r in res:
        np.testing.assert_array_equal(r[..., 3], ref_alpha)


def test_bad_input_rejected(upscalers):
    up = upscalers()
    with pytest.raises(ValueError):
        up.upscale_raw(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        up.upscale_raw(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError):
        up.upscale(np.zeros((8, 8, 3), np.uint8), num_images=0)


# ------------------------------------------------------------------------------ controls


def _laplacian_var(x: np.ndarray) -> float:
    g = x.astype(np.float64).mean(axis=2)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


@pytest.fixture(scope="module")
def ctl_image():
    return test_image(48, 64)


def test_detail_increases_high_frequency_energy(upscalers, ctl_image):
    up = upscalers()
    energy = [_laplacian_var(up.upscale(ctl_image, detail=d)[0]) for d in (1, 25, 50, 75, 100)]
    assert all(a < b for a, b in zip(energy, energy[1:])), energy
    assert energy[-1] > 1.2 * energy[2] and energy[2] > 1.5 * energy[0]


def test_neutral_controls_are_model_output_plus_grain(upscalers, ctl_image):
    up = upscalers()
    raw = up.upscale_raw(ctl_image)
    out = up.upscale(ctl_image, resemblance=1, detail=50)[0]
    assert psnr(raw, out) > 40


def test_seed_determinism_and_variations(upscalers, ctl_image):
    up = upscalers()
    a1 = up.upscale(ctl_image, seed=11)
    a2 = up.upscale(ctl_image, seed=11)
    assert len(a1) == 1
    np.testing.assert_array_equal(a1[0], a2[0])  # same seed -> byte-identical
    b = up.upscale(ctl_image, seed=12)[0]
    assert not np.array_equal(a1[0], b)  # different seed -> different bytes
    many = up.upscale(ctl_image, seed=11, num_images=3)
    assert len(many) == 3
    np.testing.assert_array_equal(many[0], a1[0])  # image i uses seed + i
    np.testing.assert_array_equal(many[1], b)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(many[i], many[j])
            assert psnr(many[i], many[j]) > 40  # visually near-identical
    assert psnr(many[0], up.upscale(ctl_image, seed=-5)[0]) > 40  # negative seeds work


# ------------------------------------------------------------------------------ flops


def test_model_flops_animavideov3_hand_computed():
    # 17 padded 3x3 convs at input resolution; pixelshuffle/interp carry no MACs.
    w, h = 10, 8
    per_pixel = 3 * 64 * 9 + 16 * (64 * 64 * 9) + 64 * 48 * 9  # = 619200 MACs
    assert model_flops("realesr-animavideov3-x2", w, h) == 2 * w * h * per_pixel
    assert model_flops(MODELS["realesr-animavideov3-x2"], 2 * w, h) == 2 * 2 * w * h * per_pixel


def test_model_flops_upconv7_valid_convs_and_deconv():
    # waifu2x upconv_7: six unpadded 3x3 convs (each shrinks by 2) then a 4x4/2 deconv.
    n = 20
    chans = [3, 16, 32, 64, 128, 128, 256]
    macs, size = 0, n
    for cin, cout in zip(chans, chans[1:]):
        size -= 2
        macs += size * size * cin * cout * 9
    macs += size * size * 256 * 3 * 16  # deconv: per input pixel in*out*k*k
    assert model_flops("waifu2x-photo-x2", n, n) == 2 * macs


def test_model_flops_realcugan_counts_unet_and_se():
    spec = MODELS["realcugan-se-x2"]
    f1 = model_flops(spec, 36 + 64, 36 + 64)
    f2 = model_flops(spec, 36 + 128, 36 + 128)
    assert 0 < f1 < f2
    assert 3.0 < f2 / f1 < 4.2  # ~ proportional to area (valid-conv borders aside)


def test_vulkan_request_never_fails_on_cpu_only_machine():
    import ncnn

    if ncnn.get_gpu_count() > 0:
        pytest.skip("a GPU is present")
    with pytest.warns(RuntimeWarning):
        up = NcnnUpscaler("waifu2x-photo-x2", use_vulkan=True, num_threads=1)
    assert up.use_vulkan is False
    assert NcnnUpscaler("waifu2x-photo-x2", num_threads=1).use_vulkan is False
    assert up.upscale_raw(np.zeros((5, 6, 3), np.uint8)).shape == (10, 12, 3)
