"""Locating dlib's model files offline (shipped by the `face-recognition-models` package).

That package's `__init__` imports `pkg_resources`, which recent setuptools no longer has, so we
find its folder through the import system instead of importing it. The 68-point predictor was
trained on iBUG 300-W, whose licence allows research use only.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

ENV_DIR = "DEBLUR_DLIB_MODELS"  # a folder holding the .dat files, to use other copies


class MissingModelError(FileNotFoundError):
    pass


def model_path(name: str) -> Path:
    """Path of a dlib model file, e.g. 'shape_predictor_68_face_landmarks.dat'."""
    candidates = []
    if os.environ.get(ENV_DIR):
        candidates.append(Path(os.environ[ENV_DIR]) / name)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "models" / name)
    for c in candidates:
        if c.is_file():
            return c
    raise MissingModelError(
        f"dlib model '{name}' not found (looked in: {', '.join(map(str, candidates)) or 'nothing'}). "
        f"Install it with `pip install face-recognition-models` or set {ENV_DIR} to a folder holding it.")


# One copy per thread: dlib's detector and predictor are not safe to share between threads (sharing
# them crashed the interpreter under joblib's threading backend); processes each load their own.
_per_thread = threading.local()


def shape_predictor_68():
    predictor = getattr(_per_thread, "predictor", None)
    if predictor is None:
        import dlib
        predictor = _per_thread.predictor = dlib.shape_predictor(
            str(model_path("shape_predictor_68_face_landmarks.dat")))
    return predictor


def frontal_face_detector():
    detector = getattr(_per_thread, "detector", None)
    if detector is None:
        import dlib
        detector = _per_thread.detector = dlib.get_frontal_face_detector()
    return detector
