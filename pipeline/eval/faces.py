"""dlib face tools for scoring: face boxes, 68-point shapes and identity embeddings, loaded once."""
from __future__ import annotations

import functools
import logging




log = logging.getLogger("evaluate")

@functools.lru_cache(maxsize=4)
def face_tools(upsample: int, widen: float, identity: bool):
    from pipeline.metrics.face import FaceShapes
    from pipeline.metrics.identity import FaceEmbedder

    return FaceShapes(upsample, widen), (FaceEmbedder() if identity else None)


def face_data(images: dict, box_image_key, upsample: int, widen: float, identity: bool) -> dict:
    """dlib on one sample's images (run in a worker process or inline): the face box found on
    `images[box_image_key]` (the temporal middle sharp frame), then per image its 68 points and
    (when `identity`) its 128-d embedding, all in that box."""
    shapes, embedder = face_tools(upsample, widen, identity)
    box, source = shapes.face_box(images[box_image_key])
    out = {"box": box, "box_source": source, "points": {}, "embedding": {}}
    for key, image in images.items():
        shape = shapes.shape(image, box)
        out["points"][key] = shapes.points(shape)
        if embedder is not None:
            out["embedding"][key] = embedder.embed(image, shape)
    return out
