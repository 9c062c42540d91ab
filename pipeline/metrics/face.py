"""Where the face is in a face crop, and its 68 dlib points.

The evaluation crops are the dataset's: each frame's landmark box widened by `crop.widen` on every
side, made square, resized to 256. `face_box` runs dlib's HOG detector on the crop (the largest
face); where it finds none, it falls back to the box the crop policy implies (the centred square
whose side is size / (1 + 2 widen), i.e. the landmark box before widening) and says so.
`shape` runs dlib's 68-point predictor in a given box. Both are loaded once per process
(`pipeline.dataset.dlib_models`). dlib's 68-point model was trained on iBUG 300-W (research use only).
"""
from __future__ import annotations

import numpy as np

from pipeline.dataset.dlib_models import frontal_face_detector, shape_predictor_68

BOX_SOURCES = ("detect", "crop_policy")


def crop_policy_box(size: int, widen: float = 0.5) -> np.ndarray:
    """The landmark box a crop of side `size` was made from (x0, y0, x1, y1), centred."""
    side = size / (1.0 + 2.0 * widen)
    lo = (size - side) / 2.0
    return np.array([lo, lo, lo + side, lo + side], dtype=np.float64)


def _rect(box):
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return dlib.rectangle(x0, y0, x1, y1)


class FaceShapes:
    """dlib face box and 68-point shapes for RGB uint8 face crops."""

    def __init__(self, upsample: int = 0, widen: float = 0.5):
        self.upsample, self.widen = int(upsample), float(widen)
        self.detector = frontal_face_detector()
        self.predictor = shape_predictor_68()

    def face_box(self, image: np.ndarray) -> tuple[np.ndarray, str]:
        """(x0, y0, x1, y1) of the largest detected face, 'detect'; else the crop-policy box."""
        rects = self.detector(np.ascontiguousarray(image), self.upsample)
        if len(rects):
            r = max(rects, key=lambda r: r.width() * r.height())
            return np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64), "detect"
        return crop_policy_box(image.shape[0], self.widen), "crop_policy"

    def shape(self, image: np.ndarray, box):
        """dlib full_object_detection (68 points) of the face in `box`."""
        return self.predictor(np.ascontiguousarray(image), _rect(box))

    @staticmethod
    def points(shape) -> np.ndarray:
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
