"""Tests for ideohub.engines.upscale_router and "auto" in the local upscaler.

The accuracy thresholds come from ``bench/upscale.py --router`` on the held-out half of the
reference sets (104/108 views: photos 21/21, illustrations 83/87), minus a margin of about one
source image's views.
"""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ideohub.domain.errors import InvalidRequest
from ideohub.domain.operations import ImageInput, UpscaleRequest
from ideohub.engines import upscale_router as R
from ideohub.engines.local_upscaler import LocalUpscaler, check_v2, model_scale
from ideohub.engines.ncnn_upscaler import NcnnUpscaler

pytest.importorskip("skimage")  # the reference photographs are scikit-image's bundled samples

MIN_ACCURACY = {"all": 0.93, "photo": 0.95, "illustration": 0.92}


@pytest.fixture(scope="module")
def held_out() -> dict[str, dict[str, np.ndarray]]:
    return R.reference_sets("held-out")


def test_held_out_accuracy(held_out):
    wrong: list[str] = []
    counts = {"photo": [0, 0], "illustration": [0, 0]}
    for kind, images in held_out.items():
        for name, img in images.items():
            r = R.classify(img)
            counts[kind][1] += 1
            if r.kind == kind:
                counts[kind][0] += 1
            else:
                wrong.append(f"{kind} {name} -> {r.kind} (p_illustration {r.p_illustration:.3f})")
    acc = {k: ok / n for k, (ok, n) in counts.items()}
    acc["all"] = sum(ok for ok, _ in counts.values()) / sum(n for _, n in counts.values())
    failed = {k: (round(acc[k], 3), v) for k, v in MIN_ACCURACY.items() if acc[k] < v}
    assert not failed, f"accuracy below the floor {failed}; misclassified:\n" + "\n".join(wrong)


def test_held_out_is_disjoint_from_tune():
    assert not set(R.PHOTOS_TUNE) & set(R.PHOTOS_HELD_OUT)
    assert not set(R.ILLUS_SKIMAGE_TUNE) & set(R.ILLUS_SKIMAGE_HELD_OUT)
    assert not set(R.SCENE_SEEDS_TUNE) & set(R.SCENE_SEEDS_HELD_OUT)
    # the bench's four photographs are evaluation images, never tuning ones
    assert {"astronaut", "coffee", "chelsea", "hubble_deep_field"} <= set(R.PHOTOS_HELD_OUT)


def test_cost_is_bounded_by_the_thumbnail(monkeypatch):
    """Work is bounded by the thumbnail (THUMB px), not the input: no timed assertion, the per-image
    time is printed (``-s``)."""
    seen: list[tuple[int, ...]] = []
    real = R._thumbnail
    monkeypatch.setattr(R, "_thumbnail", lambda a: seen.append((t := real(a)).shape) or t)
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[..., 0] = np.arange(4000, dtype=np.uint32)[None, :] % 251
    started = time.perf_counter()
    R.classify(big)
    print(f"router on 4000x3000: {1000 * (time.perf_counter() - started):.1f} ms")
    assert max(seen[0][:2]) <= R.THUMB


def test_colour_set_by_brightness_goes_to_cunet():
    """The ``cres`` veto: a two-colour rendering of a photograph's texture is an illustration even
    where the regression calls it a photo; grey images give no evidence (1.0); photographs do not
    trip it."""
    import skimage.data as d

    lum = np.asarray(Image.fromarray(d.camera()).resize((256, 256)), np.float32)[..., None] / 255.0
    dark, light = np.array([30, 90, 20], np.float32), np.array([250, 150, 60], np.float32)
    duo = (dark + (light - dark) * lum).astype(np.uint8)  # the camera man in green-to-orange
    r = R.classify(duo)
    assert r.features["cres"] < R.CRES_MAX and r.model == R.ILLUSTRATION_MODEL, r
    assert R.features(np.repeat((lum * 255).astype(np.uint8), 3, axis=2))["cres"] == 1.0
    for name in ("astronaut", "coffee", "chelsea"):
        assert R.features(getattr(d, name)())["cres"] > 2 * R.CRES_MAX, name


def test_odd_inputs():
    for img in (np.zeros((1, 1, 3), np.uint8), np.zeros((5, 300), np.uint8), np.zeros((40, 40, 4), np.uint8)):
        assert R.route(img) in (R.PHOTO_MODEL, R.ILLUSTRATION_MODEL)


# ------------------------------------------------------------------ end to end through LocalUpscaler


def _png(a: np.ndarray) -> ImageInput:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return ImageInput(data=buf.getvalue(), media_type="image/png", width=a.shape[1], height=a.shape[0])


@pytest.fixture(scope="module")
def small() -> dict[str, np.ndarray]:
    import skimage.data as d

    return {"photo": np.ascontiguousarray(d.astronaut()[100:164, 200:264]),
            "illustration": R.render_scene(1002, size=64)}


def _run(engine: LocalUpscaler, img: np.ndarray) -> np.ndarray:
    res = engine.upscale_now(UpscaleRequest(image_file=_png(img), seed=7))
    out = res.images[0]
    assert out.upscaled_resolution.width == 2 * img.shape[1]
    return np.asarray(Image.open(io.BytesIO(out.data)).convert("RGB"))


@pytest.mark.parametrize("kind, expected", [("photo", R.PHOTO_MODEL), ("illustration", R.ILLUSTRATION_MODEL)])
def test_auto_routes_end_to_end(small, kind, expected):
    engine = LocalUpscaler("auto", num_threads=1)
    assert engine.name == "local-upscaler:auto" and engine.scale == 2
    out = _run(engine, small[kind])
    assert engine.last_model == expected
    assert engine.models_used == {expected: 1}
    # the bytes are exactly what that model (and only it) makes with the same seed
    ref = NcnnUpscaler(expected, num_threads=1).upscale(small[kind], seed=7)[0]
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("model", [R.PHOTO_MODEL, R.ILLUSTRATION_MODEL])
def test_named_model_is_forced(small, model):
    engine = LocalUpscaler(model, num_threads=1)
    assert engine.name == f"local-upscaler:{model}"
    for kind in ("photo", "illustration"):
        _run(engine, small[kind])
        assert engine.last_model == model
    assert engine.models_used == {model: 2}


def test_auto_in_v2_x4_and_unknown_names(small):
    from ideohub.domain.operations import Operation, SpecRequest

    assert model_scale("auto") == 2 and model_scale(None) == 2 and model_scale("realesr-animavideov3-x4") == 4
    img = small["illustration"][:32, :32]
    request = SpecRequest(op=Operation.V2_UPSCALE_AUTO, params={"upscale_factor": "x4"},
                          images=(("image", _png(img)),), seed=3)
    settings = SimpleNamespace(upscale_model="auto", upscale_allow_x8=False, max_output_pixels=8192 * 8192)
    check_v2(settings, request)  # admission with "auto": two passes of a 2x model
    with pytest.raises(InvalidRequest):
        check_v2(SimpleNamespace(**{**vars(settings), "max_output_pixels": 100}), request)
    engine = LocalUpscaler("auto", num_threads=1)
    out = engine.upscale_v2(request).images[0]
    assert (out.upscaled_resolution.width, out.upscaled_resolution.height) == (128, 128)
    assert engine.models_used == {R.ILLUSTRATION_MODEL: 2}  # routed once, on the input
    with pytest.raises(ValueError):
        LocalUpscaler("no-such-model")
