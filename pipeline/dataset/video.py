"""Finding, probing and decoding face videos: container files and image-sequence folders.

One abstraction, `VideoSource`, covers both kinds so every later stage streams frames the same
way (`iter_frames`) and never holds a whole video in memory.
"""
from __future__ import annotations

import os
import re
import sys
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
    n_frames: int  # frames that decode cleanly: the usable part of the video
    width: int
    height: int
    declared_frames: int  # what the container claims (-1 when unknown)
    truncated: str | None = None  # why the usable part ends early (`truncated at frame K: ...`), else None


# FFmpeg's messages, as its default logger prints them on file descriptor 2 (OpenCV passes them
# through): `[mpeg1video @ 0x55d0c1a2b3c0] ac-tex damaged at 6 17`. A decoder prints such a
# line when it meets damaged data (and conceals it: the frame still decodes, with wrong pixels).
FFMPEG_LINE = re.compile(rb"^\[[\w.,:-]+ @ (0x)?[0-9a-fA-F]+\] ", re.M)
_STDERR_LOCK = __import__("threading").Lock()


class DecoderMessages:
    """Captures what the decoder prints on file descriptor 2 while a video is decoded, so damage
    can be tied to the frame being decoded: `new()` returns FFmpeg's lines printed since its last
    call. Everything else printed meanwhile is passed on to the real stderr when the block ends.
    File descriptor 2 is process-wide, so captures are serialised (the threading backend decodes
    one video at a time while probing)."""

    def __enter__(self) -> "DecoderMessages":
        import tempfile

        _STDERR_LOCK.acquire()
        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except BaseException:
            _STDERR_LOCK.release()
            raise
        self._read = 0
        self._kept = b""
        return self

    def new(self) -> list[str]:
        size = os.fstat(self._file.fileno()).st_size
        if size == self._read:
            return []
        self._file.seek(self._read)
        text = self._file.read(size - self._read)
        self._read = size
        lines = text.splitlines(keepends=True)
        ffmpeg = [ln for ln in lines if FFMPEG_LINE.match(ln)]
        self._kept += b"".join(ln for ln in lines if not FFMPEG_LINE.match(ln))
        return [ln.decode("utf-8", "replace").strip() for ln in ffmpeg]

    def __exit__(self, *exc) -> None:
        try:
            self.new()
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._file.close()
            if self._kept:
                os.write(2, self._kept)
        finally:
            _STDERR_LOCK.release()


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


MAX_FRAME_NUMBER = 2**31 - 1  # frame numbers are int32 in the landmarks and manifests


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
    return safe_video_id("-".join(parts) if parts else stem)


# Ids name files and folders (`<id>.parquet`, `blurry/<id>/`, `<id>-fixed-n05-f000000.png`): a
# name longer than this (bytes) is shortened, leaving room for the sample-id suffix under the
# 255-byte file-name limit of common filesystems.
MAX_ID_BYTES = 120


def safe_video_id(raw: str) -> str:
    """`raw` as one safe path component: never empty, `.` or `..`, never hidden (a leading `.`
    gets a `_` in front: `..mpg` -> `_.`), no control characters (-> `_`), and at most
    MAX_ID_BYTES bytes (longer names keep their start and gain `~` + 8 hex digits of their sha256,
    so distinct long names stay distinct). The catalog's `path` column keeps the mapping."""
    import hashlib

    vid = "".join("_" if ord(c) < 32 or ord(c) == 127 or c in "/\\" else c for c in raw) or "_"
    if vid.startswith("."):
        vid = "_" + vid
    if len(vid.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        head = vid.encode("utf-8", "surrogatepass")[:MAX_ID_BYTES - 9].decode("utf-8", "ignore")
        vid = f"{head}~{digest}"
    return vid


def printable_path(path: str | Path) -> str:
    """A path for messages and JSON: bytes that are not UTF-8 shown as `\\xNN` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.fsdecode maps undecodable bytes to lone surrogates
        return False


def _annot_dir(container: Path) -> str | None:
    annot = container / ANNOTATION_FOLDER
    return str(annot) if annot.is_dir() and any(annot.glob("*.pts")) else None


def walk_source(source: str | Path, excluded=(), wanted=lambda name: True
                ) -> tuple[list[tuple[Path, list[str], list[str]]], list[tuple[str, str]]]:
    """Every folder under `source` as (folder, subfolder names, file names), names in natural
    order, following symbolic links to folders; and the entries not searched, as (path, reason):

    - a folder reached a second time (a link loop, or two links to one folder: its videos would be
      catalogued twice, maybe on both sides of the split) is searched once, at its first path;
    - a folder inside `excluded` (the pipeline's own outputs) is not searched;
    - a folder, or a file for which `wanted(name)` holds, whose name is not valid UTF-8 is not
      usable (OpenCV's decoder crashes on such paths, and parquet stores only UTF-8) and is named
      with its bytes escaped; other such files are left out silently.
    Files are listed whatever their type; callers pick videos, images and annotations."""
    root = Path(source)
    excluded = [os.path.realpath(e) for e in excluded]
    out, problems = [], []
    seen: dict[tuple[int, int], str] = {}
    stack = [root]
    while stack:
        here = stack.pop()
        try:
            st = os.stat(here)
        except OSError as e:
            problems.append((printable_path(here), f"cannot search this folder ({e.strerror})"))
            continue
        real = os.path.realpath(here)
        inside = next((e for e in excluded if real == e or real.startswith(e + os.sep)), None)
        if inside is not None:
            problems.append((printable_path(here), f"inside the pipeline's own outputs ({inside}): not searched"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            link = f" (a symbolic link to {os.readlink(here)})" if os.path.islink(here) else ""
            problems.append((printable_path(here), f"folder already searched as {seen[key]}{link}: "
                                                   "a link loop or a second link to one folder, searched once"))
            continue
        seen[key] = printable_path(here)
        try:
            entries = sorted(os.scandir(here), key=lambda e: _natural_key(e.name))
        except OSError as e:
            problems.append((printable_path(here), f"cannot list this folder ({e.strerror})"))
            continue
        dirs, files = [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symbolic links
            except OSError:
                is_dir = False
            if not _is_utf8(entry.name):
                if is_dir or wanted(entry.name):
                    problems.append((printable_path(entry.path), "the name is not valid UTF-8: rename it (not used)"))
                continue
            (dirs if is_dir else files).append(entry.name)
        out.append((here, dirs, files))
        stack.extend(here / d for d in reversed(dirs))
    return out, problems


def discover(source: str | Path, excluded=()) -> tuple[list[VideoSource], list[tuple[str, str]]]:
    """Walk `source` (`walk_source`: symbolic links to folders followed, each folder once) for
    videos and image-sequence folders, in a stable (sorted) order.

    Returns (sources, rejects) where rejects are (path, reason): candidates that cannot be told
    apart (two files mapping to one video id) and what `walk_source` did not search.
    """
    root = Path(source)
    if not root.is_dir():
        raise VideoError(f"{root}: the video source folder does not exist (set ingest.source)")
    found: list[VideoSource] = []
    folders, rejects = walk_source(root, excluded, wanted=lambda name: name.lower().endswith(
        VIDEO_EXTENSIONS + IMAGE_EXTENSIONS + (".pts",)))
    for here, _, filenames in folders:
        if here.name == ANNOTATION_FOLDER:
            continue
        images = [f for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS)]
        videos = [f for f in filenames if f.lower().endswith(VIDEO_EXTENSIONS)]
        for name in videos:
            rel = (here / name).relative_to(root)
            found.append(VideoSource(_video_id(rel), str(here / name), "video", _annot_dir(here)))
        if images:
            rel = here.relative_to(root)
            container = here.parent if here.name.lower() in FRAME_FOLDER_NAMES else here
            vid = _video_id(rel) if rel.parts else safe_video_id(root.resolve().name)
            found.append(VideoSource(vid, str(here), "images", _annot_dir(container)))
    sources, seen = [], {}
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


def _open_capture(path: str, threads: int | None = None) -> cv2.VideoCapture:
    """An opened capture; `threads`: the decoder's threads (None: FFmpeg's choice)."""
    if _check_file(path).st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    still = _still_image_format(path)
    if still:
        raise VideoError(f"{path}: a still {still} image, not a video (only the name ends in "
                         f"{Path(path).suffix})")
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads]) if threads else \
        cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoError(f"{path}: not a readable video (OpenCV/FFmpeg cannot open it: corrupt, "
                         "truncated before its index, or not a video)")
    return cap


def probe(src: VideoSource, image_fps: float = 30.0, truncation_tolerance: float = 0.02) -> VideoInfo:
    """Decode the whole stream once (cheaply: grab without converting) to count the usable frames.

    The usable part ends before the first frame the decoder reports damage on (it conceals the
    damage, so the frame would decode with wrong pixels: a file cut short ends that way), or where
    the stream ends when that is short of what the container declares (containers' counts are
    estimates: a tolerance applies). A video shortened either way is kept with its usable frames
    and `truncated` says why (`truncated at frame K: ...`); one with fewer than 2 usable frames is
    rejected.
    """
    if src.kind == "images":
        files = image_files(src.path)
        if not files:
            raise VideoError(f"{src.path}: image folder holds no frames")
        # Every frame is decoded exactly as the later stages decode it, so a sequence that passes
        # ingest cannot fail later on a bad frame; a bad one rejects the sequence, naming the frames.
        size, bad = None, []
        for f in files:
            if not _is_utf8(f.name):
                bad.append(f"{printable_path(f)} (the name is not valid UTF-8)")
                continue
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
        too_big = next((f for f in files if frame_number_of(f, 0) > MAX_FRAME_NUMBER), None)
        if too_big is not None:
            raise VideoError(f"{src.path}: frame numbers in the file names exceed {MAX_FRAME_NUMBER} "
                             f"({too_big.name}: a timestamp?); number the frames 000001{too_big.suffix}, "
                             f"000002{too_big.suffix}, ... (the number orders the frames and finds gaps)")
        h, w = size
        return VideoInfo(float(image_fps), len(files), int(w), int(h), len(files))
    # one decoder thread: its messages come with the frame being decoded, not a thread's time later
    # (frame threads made the frame they were tied to vary from run to run)
    cap = _open_capture(src.path, threads=1)
    damage = None  # (frame, first decoder message): the usable part ends before that frame
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not 0 <= declared < 2**31:  # unknown (OpenCV gives INT64_MIN for image readers)
            declared = -1
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = 0
        with DecoderMessages() as messages:
            while True:
                ok = cap.grab()
                said = messages.new()
                if said and damage is None:
                    # a damaged frame may be decoded a call or two before it is returned (frame
                    # reordering, threads): everything from this call on is suspect
                    damage = (n, said[0])
                if not ok:
                    break
                n += 1
    finally:
        cap.release()
    decoded, reason = n, None
    if damage is not None:
        n = damage[0]
        reason = f"truncated at frame {n}: the decoder reports damaged data there ({damage[1].split('] ', 1)[-1]})"
    elif declared > 0 and n < declared - max(2, truncation_tolerance * declared):
        reason = f"truncated at frame {n}: the container declares {declared} frames but only {n} decode"
    if decoded == 0:
        raise VideoError(f"{src.path}: no frame decodes (empty stream or not a video)")
    if decoded == 1:
        raise VideoError(f"{src.path}: a single frame (a still image?), not a video")
    if n < 2:
        raise VideoError(f"{src.path}: {reason}, which leaves {n} usable frames")
    truncated = None if reason is None else f"{reason}; frames 0-{n - 1} are used"
    if w <= 0 or h <= 0:
        raise VideoError(f"{src.path}: frame size unknown")
    return VideoInfo(float(fps) if fps and fps > 0 else float("nan"), n, w, h, declared, truncated)


def frame_numbers(src: VideoSource, n_frames: int) -> np.ndarray:
    """Per decoded frame, the frame number used to match annotations (1-based, 300VW style).

    For image folders this is the number in each file name, so gaps in a sequence are visible
    to the window builders, which never average across a gap.
    """
    if src.kind == "images":
        return np.array([frame_number_of(p, i + 1) for i, p in enumerate(image_files(src.path))],
                        dtype=np.int64)
    return np.arange(1, n_frames + 1, dtype=np.int64)


def iter_frames(src: VideoSource, stop: int | None = None, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, BGR uint8 frame) in decode order, one at a time, from frame `start` up to frame
    `stop` (exclusive). A video is decoded from its first frame either way (frames before `start`
    are grabbed, not converted): seeking is not frame-exact for every codec."""
    if src.kind == "images":
        for i, f in enumerate(image_files(src.path)):
            if stop is not None and i >= stop:
                return
            if i < start:
                continue
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoError(f"{f}: unreadable image")
            yield i, img
        return
    cap = _open_capture(src.path)
    try:
        i = 0
        while i < start:
            if not cap.grab():
                return
            i += 1
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
    `keep`: the only frames worth caching (one per picture: held copies are decoded, not kept).
    """

    def __init__(self, src: VideoSource, capacity: int = 64, keep: set[int] | None = None):
        from collections import OrderedDict

        self.src, self.capacity, self.keep = src, max(2, int(capacity)), keep
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
            if self.keep is None or self._next in self.keep or self._next == i:
                ok, frame = self._cap.read()
                if ok:
                    self._remember(self._next, frame)
            else:
                ok = self._cap.grab()  # a held copy: decoded (the stream needs it), not kept
            if not ok:
                raise VideoError(f"{self.src.path}: ends before frame {i}")
            self._next += 1
        return self._cache[i]

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
