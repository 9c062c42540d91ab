"""The frame store's subset copy (pipeline.dataset.framestore.write_subset): what
benchmarks/gpu_pack.py carries of a long clip must read back as the dataset's own store does."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import VIDEOS, read_frames
from pipeline.dataset.framestore import FrameStore, FrameStoreWriter, write_subset


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store of 8 regions (frames 0, 2, ..., 14) of a real talking clip, as blur_fixed writes them."""
    path = tmp_path_factory.mktemp("store") / "clip.bin"
    writer = FrameStoreWriter(path)
    for k, frame in enumerate(read_frames(VIDEOS / "talking" / "WDA_KatieHill_000.mp4", 16)[::2]):
        writer.add(2 * k, frame[40:360, 60:420], (60, 40), (frame.shape[1], frame.shape[0]))
    writer.close()
    return path


def _webp(image):
    return cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()


@pytest.mark.parametrize("encode", [None, _webp], ids=["copied", "webp"])
def test_a_subset_reads_back_the_same_regions(store, tmp_path, encode):
    written = write_subset(store, [10, 4, 6], tmp_path / "sub.bin", encode=encode)
    full, sub = FrameStore(store), FrameStore(tmp_path / "sub.bin")
    assert written == (tmp_path / "sub.bin").stat().st_size + (tmp_path / "sub.bin.index.parquet").stat().st_size
    for frame in (4, 6, 10):
        image, origin, size = sub.region(frame)
        expected = full.region(frame)
        assert np.array_equal(image, expected[0]) and (origin, size) == expected[1:]
    assert 2 not in sub and 8 not in sub
    if encode is None:  # the same encoded bytes
        assert (tmp_path / "sub.bin").stat().st_size == sum(full.nbytes(f) for f in (4, 6, 10))
    else:  # lossless WebP: smaller than fpng's PNGs
        assert (tmp_path / "sub.bin").stat().st_size < sum(full.nbytes(f) for f in (4, 6, 10))


def test_a_subset_refuses_missing_frames_and_lossy_encodings(store, tmp_path):
    with pytest.raises(KeyError, match="frames \\[3\\] are not in this store"):
        write_subset(store, [2, 3], tmp_path / "a.bin")
    with pytest.raises(ValueError, match="frame 0 does not read back identical"):
        write_subset(store, [0], tmp_path / "b.bin",
                     encode=lambda image: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
