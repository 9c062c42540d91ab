"""Finding, probing and decoding face videos: container files and image-sequence folders.

One abstraction, `VideoSource`, covers both kinds so every later stage streams frames the same
way (`iter_frames`) and never holds a whole video in memory.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mpg", ".mpeg", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Folder names that hold a video's frames rather than naming the video (300VW-style `NNN/imgs/`).
FRAME_FOLDER_NAMES = ("imgs", "images", "frames", "img")
# 300VW names every clip `NNN/vid.avi`: the folder, not the file, is the video's name.
GENERIC_VIDEO_STEMS = ("vid", "video")
ANNOTATION_FOLDER = "annot"


class VideoError(Exception):
    """A video that cannot be used; the message names the file and the problem."""


def is_input_error(e: BaseException) -> bool:
    """Is `e` a bad *input* (skip the video, list the reason, go on) rather than the environment
    (disk full, permissions, memory: OSError, MemoryError) or a bug, which must fail the stage?

    Only the readers decide an input is bad: they raise VideoError (decoder errors, unreadable or
    inconsistent frames, a stream ending early) or PtsError (a malformed annotation file).
    """
    from pipeline.dataset.pts import PtsError

    return isinstance(e, (VideoError, PtsError))


# First bytes of still-image formats: such a file renamed .mp4/.avi/.mkv is not a video (OpenCV
# opens it through its image-sequence reader and reports a frame count of INT64_MIN).
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"GIF8": "GIF",
                    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": None}  # RIFF: AVI or WebP, see below


def _still_image_format(path: str) -> str | None:
    with open(path, "rb") as f:
        head = f.read(16)
    for sig, name in IMAGE_SIGNATURES.items():
        if head.startswith(sig):
            if sig == b"RIFF":
                return "WebP" if head[8:12] == b"WEBP" else None
            return name
    return None


@dataclass(frozen=True)
class VideoSource:
    video_id: str
    path: str  # the file (kind "video") or the folder of frames (kind "images")
    kind: str  # "video" | "images"
    annot_dir: str | None = None  # folder of 68-point .pts files, 300VW layout


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    n_frames: int  # frames that actually decode
    width: int
    height: int
    declared_frames: int  # what the container claims (-1 when unknown)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def frame_number_of(path: str | Path, fallback: int) -> int:
    """The frame number a file name carries (300VW: `000123.jpg` is frame 123), else `fallback`."""
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else fallback


def _video_id(rel: Path) -> str:
    parts = list(rel.parts)
    stem = Path(parts[-1]).stem if parts else ""
    if stem.lower() in GENERIC_VIDEO_STEMS or stem.lower() in FRAME_FOLDER_NAMES:
        parts = parts[:-1]
    else:
        parts[-1] = stem
    return "-".join(parts) if parts else stem


def _annot_dir(container: Path) -> str | None:
    annot = container / ANNOTATION_FOLDER
    return str(annot) if annot.is_dir() and any(annot.glob("*.pts")) else None


def discover(source: str | Path) -> tuple[list[VideoSource], list[tuple[str, str]]]:
    """Walk `source` for videos and image-sequence folders, in a stable (sorted) order.

    Returns (sources, rejects) where rejects are (path, reason) for candidates that cannot be
    told apart (two files mapping to one video id).
    """
    root = Path(source)
    if not root.is_dir():
        raise VideoError(f"{root}: the video source folder does not exist (set ingest.source)")
    found: list[VideoSource] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort(key=_natural_key)
        here = Path(dirpath)
        if here.name == ANNOTATION_FOLDER:
            continue
        images = [f for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS)]
        videos = [f for f in filenames if f.lower().endswith(VIDEO_EXTENSIONS)]
        for name in sorted(videos, key=_natural_key):
            rel = (here / name).relative_to(root)
            found.append(VideoSource(_video_id(rel), str(here / name), "video", _annot_dir(here)))
        if images:
            rel = here.relative_to(root)
            container = here.parent if here.name.lower() in FRAME_FOLDER_NAMES else here
            vid = _video_id(rel) if rel.parts else root.name
            found.append(VideoSource(vid, str(here), "images", _annot_dir(container)))
    sources, rejects, seen = [], [], {}
    # A 300VW folder may hold both `vid.avi` and extracted frames: keep the video.
    for src in sorted(found, key=lambda s: (s.kind != "video", _natural_key(s.path))):
        if src.video_id in seen:
            rejects.append((src.path, f"duplicate video id '{src.video_id}' (also {seen[src.video_id]})"))
            continue
        seen[src.video_id] = src.path
        sources.append(src)
    sources.sort(key=lambda s: _natural_key(s.video_id))
    return sources, rejects


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: _natural_key(p.name))


def _check_file(path: str) -> os.stat_result:
    """stat() of an input file, or VideoError: missing, a dangling or looping symbolic link."""
    try:
        return os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            raise VideoError(f"{path}: broken symbolic link ({e.strerror}: -> {os.readlink(path)})") from None
        raise VideoError(f"{path}: file does not exist ({e.strerror})") from None


def _open_capture(path: str) -> cv2.VideoCapture:
    if _check_file(path).st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    still = _still_image_format(path)
    if still:
        raise VideoError(f"{path}: a still {still} image, not a video (only the name ends in "
                         f"{Path(path).suffix})")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoError(f"{path}: not a readable video (OpenCV/FFmpeg cannot open it: corrupt, "
                         "truncated before its index, or not a video)")
    return cap


def probe(src: VideoSource, image_fps: float = 30.0, truncation_tolerance: float = 0.02) -> VideoInfo:
    """Decode the whole stream once (cheaply: grab without converting) to count real frames.

    Containers' frame counts are estimates; a file whose count of decodable frames falls short
    of what its index declares is truncated and rejected rather than silently shortened.
    """
    if src.kind == "images":
        files = image_files(src.path)
        if not files:
            raise VideoError(f"{src.path}: image folder holds no frames")
        # Every frame is decoded exactly as the later stages decode it, so a sequence that passes
        # ingest cannot fail later on a bad frame; a bad one rejects the sequence, naming the frames.
        size, bad = None, []
        for f in files:
            try:
                if _check_file(str(f)).st_size == 0:
                    bad.append(f"{f} (empty image file)")
                    continue
            except VideoError as e:
                bad.append(f"{f} ({str(e).split(': ', 1)[1]})")
                continue
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                bad.append(f"{f} (unreadable image)")
            elif size is None:
                size = img.shape[:2]
            elif img.shape[:2] != size:
                bad.append(f"{f} ({img.shape[1]}x{img.shape[0]}, not {size[1]}x{size[0]} like the first frame)")
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise VideoError(f"{src.path}: {len(bad)} of {len(files)} frames cannot be used: "
                             f"{', '.join(bad[:5])}{more}; fix or remove them (a removed frame is a gap: "
                             "no window averages across it)")
        h, w = size
        return VideoInfo(float(image_fps), len(files), int(w), int(h), len(files))
    cap = _open_capture(src.path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not 0 <= declared < 2**31:  # unknown (OpenCV gives INT64_MIN for image readers)
            declared = -1
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{src.path}: no frame decodes (empty stream or not a video)")
    if n == 1:
        raise VideoError(f"{src.path}: a single frame (a still image?), not a video")
    if declared > 0 and n < declared - max(2, truncation_tolerance * declared):
        raise VideoError(f"{src.path}: truncated: the container declares {declared} frames "
                         f"but only {n} decode")
    if w <= 0 or h <= 0:
        raise VideoError(f"{src.path}: frame size unknown")
    return VideoInfo(float(fps) if fps and fps > 0 else float("nan"), n, w, h, declared)


def frame_numbers(src: VideoSource, n_frames: int) -> np.ndarray:
    """Per decoded frame, the frame number used to match annotations (1-based, 300VW style).

    For image folders this is the number in each file name, so gaps in a sequence are visible
    to the window builders, which never average across a gap.
    """
    if src.kind == "images":
        return np.array([frame_number_of(p, i + 1) for i, p in enumerate(image_files(src.path))],
                        dtype=np.int64)
    return np.arange(1, n_frames + 1, dtype=np.int64)


def iter_frames(src: VideoSource, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, BGR uint8 frame) in decode order, one at a time, up to frame `stop` (exclusive)."""
    if src.kind == "images":
        for i, f in enumerate(image_files(src.path)):
            if stop is not None and i >= stop:
                return
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoError(f"{f}: unreadable image")
            yield i, img
        return
    cap = _open_capture(src.path)
    try:
        i = 0
        while stop is None or i < stop:
            ok, frame = cap.read()
            if not ok:
                return
            yield i, frame
            i += 1
    finally:
        cap.release()


class FrameReader:
    """Random access to frames with bounded memory: a cache of `capacity` decoded frames.

    Forward access decodes sequentially. A backward miss (VLA's reverse pass) re-opens the video
    and decodes the `capacity` frames ending at the requested one, so walking a video backwards
    costs extra decoding (about n^2 / (2 capacity) skipped frames) but never more memory.
    """

    def __init__(self, src: VideoSource, capacity: int = 64):
        from collections import OrderedDict

        self.src, self.capacity = src, max(2, int(capacity))
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._files = image_files(src.path) if src.kind == "images" else None
        self._cap = None
        self._next = 0  # index the open capture decodes next

    def _remember(self, i: int, frame: np.ndarray) -> None:
        self._cache[i] = frame
        self._cache.move_to_end(i)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def get(self, i: int) -> np.ndarray:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        if self._files is not None:
            img = cv2.imread(str(self._files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoError(f"{self._files[i]}: unreadable image")
            self._remember(i, img)
            return img
        if self._cap is None or i < self._next:
            if self._cap is not None:
                self._cap.release()
            self._cap = _open_capture(self.src.path)
            self._next = 0
            target = max(0, i - self.capacity + 1)
            while self._next < target:
                if not self._cap.grab():
                    raise VideoError(f"{self.src.path}: ends before frame {i}")
                self._next += 1
        while self._next <= i:
            ok, frame = self._cap.read()
            if not ok:
                raise VideoError(f"{self.src.path}: ends before frame {i}")
            self._remember(self._next, frame)
            self._next += 1
        return self._cache[i]

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
