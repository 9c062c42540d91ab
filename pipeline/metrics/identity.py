"""Identity distance: dlib's ResNet face embedding (128-d, `dlib_face_recognition_resnet_model_v1`).

ArcFace (the CFMD paper's identity metric) has no weights that can be had offline; dlib's model
is the offline stand-in. Each face is aligned by dlib from its 68-point shape (`face.FaceShapes`)
and embedded; the distance between a restored and a ground-truth face is the Euclidean distance
of the embeddings (dlib's convention: below 0.6 means the same person) and, as Chrysos et al.
report it, the cosine distance 1 - cos. Identical images give exactly 0.
"""
from __future__ import annotations

import functools

import numpy as np

from pipeline.dataset.dlib_models import model_path

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@functools.lru_cache(maxsize=None)
def _recognition_model():
    import dlib

    return dlib.face_recognition_model_v1(str(model_path(MODEL_FILE)))


class FaceEmbedder:
    """dlib's face recognition network, loaded once."""

    def __init__(self):
        self.model = _recognition_model()

    def embed(self, image: np.ndarray, shape) -> np.ndarray:
        """RGB uint8 image + its dlib 68- or 5-point shape -> unit-scale 128-d embedding."""
        return np.asarray(self.model.compute_face_descriptor(np.ascontiguousarray(image), shape), dtype=np.float64)

    def embed_crop(self, image: np.ndarray, shapes=None) -> np.ndarray:
        """Embedding of the face in a crop: dlib finds the face (else the crop-policy box)."""
        from pipeline.metrics.face import FaceShapes

        shapes = shapes or FaceShapes()
        box, _ = shapes.face_box(image)
        return self.embed(image, shapes.shape(image, box))


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cosine similarity of two embeddings (0 for the same direction)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(1.0 - a.dot(b) / (np.linalg.norm(a) * np.linalg.norm(b)))
