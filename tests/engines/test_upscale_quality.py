"""Model choice ("auto") keeps the upscaler's quality promises, on 256x256 crops.

The crops: the centre 256x256 of scikit-image's astronaut, coffee, chelsea and hubble_deep_field
(the photographs of ``bench/upscale.py``), and the held-out illustrations of the bench (shapes,
text, poster and logo from ``bench/upscale_models.py``; rendered scenes with seeds 1000-1005),
none of them used to tune the router.  Each is downscaled 2x with Pillow's bicubic filter and
restored; RGB PSNR over the whole crop.  Each model runs once per crop; "auto" is the output
of the model the router picks.  Thresholds are the values measured on these crops (printed by
``python tests/engines/test_upscale_quality.py``) less 0.2 dB.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ideohub.engines import upscale_router as R
from ideohub.engines.ncnn_upscaler import NcnnUpscaler
from upscale_metrics import down2, lanczos2, psnr

pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "coffee", "chelsea", "hubble_deep_field")
MARGIN = 0.2  # dB below the measured value

# measured on these crops (this file's __main__): mean PSNR, dB
# (CUNet on the photograph crops, not run by the test: 33.18)
MEASURED = {
    "photo": {"auto": 33.121, R.PHOTO_MODEL: 33.121, "lanczos": 30.858},
    "illustration": {"auto": 39.48, R.PHOTO_MODEL: 35.27, R.ILLUSTRATION_MODEL: 39.48, "lanczos": 28.164},
}








def crops() -> dict[str, dict[str, np.ndarray]]:
    photos = {n: R._views(R.skimage_image(n))["crop256"] for n in PHOTOS}
    path = Path(__file__).resolve().parents[2] / "bench" / "upscale_models.py"
    spec = importlib.util.spec_from_file_location("_bench_upscale_models", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ill = {k: np.ascontiguousarray(v[..., :3]) for k, v in mod.illustrations().items()}
    for seed in range(1000, 1006):
        ill[f"scene{seed}"] = R.render_scene(seed, 256)
    return {"photo": photos, "illustration": ill}


def measure() -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Mean PSNR per set and contender, and the router's pick per crop."""
    ups = {m: NcnnUpscaler(m, num_threads=2) for m in (R.PHOTO_MODEL, R.ILLUSTRATION_MODEL)}
    means: dict[str, dict[str, float]] = {}
    picks: dict[str, str] = {}
    for kind, images in crops().items():
        # CUNet (0.6 s a crop here) runs on photographs only where the router picks it
        models = list(ups) if kind == "illustration" else [R.PHOTO_MODEL]
        scores: dict[str, list[float]] = {k: [] for k in ("auto", *models, "lanczos")}
        for name, hr in images.items():
            lo = down2(hr)
            outs = {m: ups[m].upscale_raw(lo) for m in models}
            picks[name] = R.route(lo)
            outs["auto"] = outs[picks[name]] if picks[name] in outs else ups[picks[name]].upscale_raw(lo)
            outs["lanczos"] = lanczos2(lo)
            for k, v in outs.items():
                scores[k].append(min(psnr(v, hr), 99.0))  # finite, for the mean
        means[kind] = {k: float(np.mean(v)) for k, v in scores.items()}
    return means, picks


@pytest.fixture(scope="module")
def measured() -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    return measure()


def test_photos_auto_as_good_as_the_photo_model(measured):
    means, picks = measured
    m = means["photo"]
    assert m["auto"] >= m[R.PHOTO_MODEL] - 0.05, (m, picks)
    assert m["auto"] >= MEASURED["photo"]["auto"] - MARGIN, m
    assert m[R.PHOTO_MODEL] >= MEASURED["photo"][R.PHOTO_MODEL] - MARGIN, m
    assert m["auto"] >= m["lanczos"] + 1.0, m
    # the fast model: every photograph crop is routed to it
    assert all(picks[n] == R.PHOTO_MODEL for n in PHOTOS), picks


def test_illustrations_auto_as_good_as_cunet(measured):
    means, picks = measured
    m = means["illustration"]
    assert m["auto"] >= m[R.ILLUSTRATION_MODEL] - 1e-9, (m, picks)
    assert m["auto"] >= MEASURED["illustration"]["auto"] - MARGIN, m
    assert m[R.ILLUSTRATION_MODEL] >= MEASURED["illustration"][R.ILLUSTRATION_MODEL] - MARGIN, m
    assert m[R.ILLUSTRATION_MODEL] >= m[R.PHOTO_MODEL] + 1.0, m  # why illustrations go to CUNet


if __name__ == "__main__":  # print the measurements the thresholds come from
    means, picks = measure()
    for kind, m in means.items():
        print(kind, {k: round(v, 3) for k, v in m.items()})
    print(picks)
