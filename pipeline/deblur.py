"""Deblur the face in your own photos with a trained model.

    python -m pipeline.deblur photo.jpg --model cfmd --frames 7 --out deblurred/
    python -m pipeline.deblur photos/ --model chrysos --out deblurred/ --output crop

For each photo (a file, or every image directly inside a folder): dlib finds the largest face
(HOG detector on a copy downscaled to --max-side, then dlib's CNN detector if HOG finds none) and
its 68 landmarks; the face is cropped exactly as the dataset crops it (params.yaml `crop`: landmark
box widened by `widen` on every side, made square, resized to `size`, `edge` policy at the
borders), then brought to the size the model was trained at (its weights record it: 64 for the
CPU configuration, area-downscaled as training did); the model restores it:

- CFMD-GAN (`--model cfmd`): N sharp moments, u = 0 .. 1 (params.yaml `manifest.fmr.u_formula`,
  by default u = i / (N - 1)): `frame_00.png` .. `frame_<N-1>.png` and `sequence.gif` (or .mp4);
- Chrysos et al. (`--model chrysos`): the middle frame, `frame_00.png`, and a before/after
  animation.

The model never replaces the photo's own pixels: what it changes at its resolution (the
restoration minus its input, the *correction*) is upsampled to the face box and added to the
photo, so every detail the photo has above the model's resolution stays (a 64-px model pasted as
an image would soften a 512-px face tenfold). Where the crop reached past the photo's edge (the
`pad` policy's black border), the correction is zero: padding is never pasted back.

`--output paste` (default) adds the correction to the photo inside the face box (feathered at its
border); `--output crop` writes the dataset's crop (`crop.size`, 256 by default) with the
correction added. Each photo gets its own folder, `<out>/<stem>/`, or `<out>/<file name>/` when
two inputs share a stem (face.jpg, face.png); names are made safe path components as ingest's
video ids are (`..jpg` -> `_.`, control characters -> `_`), so nothing is written outside `--out`;
two inputs that would share a folder are refused. A photo's folder is written beside it and swapped
in when complete. `<out>/<...>/info.json` records the face box, u values, model and the sharpness
(variance of the Laplacian) of the face before and after. Errors name the file: a missing,
unreadable or too small image, a photo without a detectable face, a missing, wrong or non-finite
model file. With a folder, failures are listed and the other photos still processed (exit status
1 if any failed).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.dataset.crop import CropParams, crop_resize, face_box
from pipeline.dataset.manifest import downscale
from pipeline.dataset.fmr import U_FORMULAS, FMRParams, control_factors
from pipeline.dataset.video import safe_video_id

log = logging.getLogger("deblur")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DETECTORS = ("auto", "hog", "cnn")
OUTPUT_MODES = ("paste", "crop")
ANIMATIONS = ("gif", "mp4", "none")
FEATHER = 0.08  # share of the crop side over which a pasted face blends into the photo
MAX_FRAMES = 64  # --frames: CFMD-GAN moments per photo (the dataset's windows hold 5 to 21 frames)
MIN_SIDE = 32  # pixels: a smaller photo holds no face the detector can find
LARGE_PIXELS = 50_000_000  # photos above this are processed (the face region only) with a warning
ANIMATION_MAX_SIDE = 1920  # the animation's frames: the photo downscaled to at most this side (full HD kept)


class DeblurError(RuntimeError):
    """A photo that cannot be deblurred; the message names the file and the reason."""


@dataclass(frozen=True)
class DeblurSettings:
    """What the dataset decided and a photo must match: the crop (params `crop`) and the u formula
    (params `manifest.fmr.u_formula`), read by the same parsers as the stages."""

    crop: CropParams = CropParams()
    u_formula: str = "authors"

    @classmethod
    def from_params(cls, path: str | Path | None, required: bool = False) -> "DeblurSettings":
        """The `crop` and `manifest.fmr` sections of a params file, validated as the stages validate
        them; the defaults when the file is absent (an error instead when `required`: a path the
        user named)."""
        from pipeline.params import ParamError, load_yaml, validate

        if path is None or not Path(path).is_file():
            if required:
                raise DeblurError(f"--params {path}: no such file")
            return cls()
        try:
            params = load_yaml(path)
            validate(params, ["crop", "manifest.fmr"])
        except ParamError as e:
            raise DeblurError(f"{path}: {e}") from None
        fmr = FMRParams.from_params((params.get("manifest") or {}).get("fmr") or {})
        return cls(CropParams.from_params(params.get("crop") or {}), fmr.u_formula)


@dataclass
class Restored:
    """One photo's result: the model's corrections and where they go.

    `base` is what the corrections are added to: the photo (paste) or the face crop (crop);
    `box` is where, in `base` pixels. `frames()` composes the output images one at a time, so a
    large photo is held once, not once per frame."""

    source: Path
    base: np.ndarray  # RGB uint8
    box: list[int]  # x0, y0, x1, y1 in `base` pixels (the face box; the whole crop in crop mode)
    corrections: np.ndarray  # N x r x r x 3 float32: restored minus input at the model's size r, grey levels
    weight: np.ndarray  # r x r float32 in [0, 1]: 0 where the crop was padding outside the photo
    u: list[float | None]
    edge: str  # none | shift | pad
    detector: str
    feather: float = FEATHER
    info: dict = field(default_factory=dict)

    def frames(self):
        """The output images in order (RGB uint8). Each is the same array, changed in place for the
        next: write it before asking for the next one.

        No harm: a frame whose face region comes out less sharp than the input's (variance of the
        Laplacian; a model that smooths, or a correction clipped at black or white) is the input
        unchanged instead. `output_sharpness` and `kept_input` record, per frame, what was written."""
        work = self.base.copy()
        self.output_sharpness, self.kept_input = [], []
        region = _inside(self.box, self.base.shape)
        if region is None:
            for _ in self.corrections:
                yield work
            return
        (ry, rx), (sy, sx) = region
        original = self.base[ry, rx]
        before = sharpness(original)
        x0, y0, x1, y1 = self.box
        alpha = feather_mask(x1 - x0, y1 - y0, self.feather)[sy, sx]
        weight = cv2.resize(self.weight, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)[sy, sx]
        for i, correction in enumerate(self.corrections):
            up = cv2.resize(correction, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)[sy, sx]
            patch = np.clip(np.rint(original + (alpha * weight)[..., None] * up), 0, 255).astype(np.uint8)
            after = sharpness(patch)
            if after < before:
                patch, after = original, before
                self.kept_input.append(i)
            work[ry, rx] = patch
            self.output_sharpness.append(round(after, 2))
            yield work


# ------------------------------------------------------------------------------ reading and finding the face


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (EXIF orientation applied by OpenCV), or DeblurError naming the file."""
    if not path.is_file():
        raise DeblurError(f"{path}: no such file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, cv2.error):
        image = None
    if image is None:
        raise DeblurError(f"{path}: cannot read it as an image (unsupported format, empty or corrupt file)")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise DeblurError(f"{path}: {w} x {h} pixels, too small to hold a face (at least {MIN_SIDE} pixels a side)")
    if h * w > LARGE_PIXELS:
        log.warning("%s: a very large photo (%d x %d, %.0f megapixels): only the face region is restored; each "
                    "output frame is a full-size PNG", path, w, h, h * w / 1e6)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def find_face(image: np.ndarray, detector: str = "auto", upsample: int = 1, max_side: int = 640,
              name: str = "image") -> tuple[np.ndarray, str]:
    """68 landmarks (photo pixels) of the largest face and the detector that found it."""
    import dlib

    from pipeline.dataset.dlib_models import frontal_face_detector, model_path, shape_predictor_68

    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, max_side / max(grey.shape))
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else grey
    rects, used = [], None
    if detector in ("auto", "hog"):
        rects, used = list(frontal_face_detector()(small, upsample)), "hog"
    if not rects and detector in ("auto", "cnn"):
        cnn = dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))
        rects, used = [d.rect for d in cnn(cv2.cvtColor(small, cv2.COLOR_GRAY2RGB), upsample)], "cnn"
    if not rects:
        tried = {"auto": "HOG and CNN detectors", "hog": "HOG detector", "cnn": "CNN detector"}[detector]
        raise DeblurError(f"{name}: no face found (dlib {tried}, upsample {upsample}); the photo needs a visible "
                          f"face — try --upsample 2 for small faces")
    r = max(rects, key=lambda r: r.width() * r.height())
    rect = dlib.rectangle(int(round(r.left() / scale)), int(round(r.top() / scale)),
                          int(round(r.right() / scale)), int(round(r.bottom() / scale)))
    shape = shape_predictor_68()(grey, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64), used


def face_crop(image: np.ndarray, points: np.ndarray, crop: CropParams) -> tuple[np.ndarray, np.ndarray, str]:
    """The dataset's crop of one face: (crop size x size RGB, crop box, edge action); the box is
    square, or one pixel off with crop.square: shorter (the authors' rounding)."""
    h, w = image.shape[:2]
    box, edge = face_box(points[None], w, h, crop)
    return crop_resize(image, box, crop.size, resize=crop.resize), box, edge


def feather_mask(width: int, height: int, feather: float = FEATHER) -> np.ndarray:
    """height x width float32 weights: 1 inside, falling linearly to 0 over `feather` x the shorter
    side at the border, so a pasted face blends into the photo."""
    band = max(feather * min(width, height), 1.0)
    rx = np.clip(np.minimum(np.arange(width) + 0.5, width - np.arange(width) - 0.5) / band, 0, 1)
    ry = np.clip(np.minimum(np.arange(height) + 0.5, height - np.arange(height) - 0.5) / band, 0, 1)
    return np.minimum(ry[:, None], rx[None, :]).astype(np.float32)


def _inside(box, shape) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """((rows, cols) of the image inside `box`, (rows, cols) of the box inside the image), or None
    when the box misses the image."""
    h, w = shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return (slice(cy0, cy1), slice(cx0, cx1)), (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))


def paste(photo: np.ndarray, crop: np.ndarray, box: np.ndarray, feather: float = FEATHER) -> np.ndarray:
    """The photo with `crop` resized into `box` (parts outside the photo dropped), blended over a
    border of `feather` x the box side. (Replaces the photo's pixels; `pipeline.deblur` adds a
    correction instead, see the module doc.)"""
    x0, y0, x1, y1 = (int(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    out = photo.copy()
    region = _inside(box, photo.shape)
    if region is None:
        return out
    (ry, rx), sub = region
    interp = cv2.INTER_AREA if max(bw, bh) < crop.shape[0] else cv2.INTER_CUBIC
    patch = cv2.resize(crop, (bw, bh), interpolation=interp).astype(np.float32)[sub]
    a = feather_mask(bw, bh, feather)[sub][..., None]
    out[ry, rx] = np.clip(np.rint(a * patch + (1 - a) * out[ry, rx].astype(np.float32)), 0, 255).astype(np.uint8)
    return out


def inside_weight(box, shape, size: int, resolution: int) -> np.ndarray:
    """resolution x resolution float32: 1 where the model's input pixels came wholly from the photo,
    0 where any of it was padding past the photo's edge and two pixels further in (where the model
    sees the padding's edge), so no correction is made from or pasted over padding."""
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    xs = x0 + (np.arange(size) + 0.5) * (x1 - x0) / size
    ys = y0 + (np.arange(size) + 0.5) * (y1 - y0) / size
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    if inside.all():
        return np.ones((resolution, resolution), np.float32)
    share = cv2.resize(inside.astype(np.float32), (resolution, resolution), interpolation=cv2.INTER_AREA)
    whole = (share >= 1 - 1e-6).astype(np.uint8)
    return cv2.erode(whole, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_REPLICATE).astype(np.float32)


def sharpness(image: np.ndarray, box=None) -> float:
    """Variance of the Laplacian of the grey image (inside `box` when given): the dataset's gate."""
    if box is not None:
        region = _inside(box, image.shape)
        image = image[region[0]] if region is not None else image[:0, :0]
    if image.size == 0:
        return 0.0
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


# ------------------------------------------------------------------------------ restoring


def model_corrections(model, crop: np.ndarray, u: list[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """(the face crop at the size the model was trained at, as training saw it (area-downscaled),
    N x r x r x 3 float32: the model's restoration at each u minus that input, in grey levels)."""
    from pipeline.models.inference import restore_many

    small = crop
    if model.resolution:
        small = downscale(crop, model.resolution) if model.resolution < crop.shape[0] else \
            cv2.resize(crop, (model.resolution, model.resolution), interpolation=cv2.INTER_CUBIC)
    restored = restore_many(model, small, u, batch_size=16)
    return small, restored.astype(np.float32) - small.astype(np.float32)[None]


def restore_crop(model, crop: np.ndarray, u: list[float | None], path: str | Path = "crop") -> list[np.ndarray]:
    """A dataset-sized face crop restored at each u as `pipeline.deblur --output crop` restores it
    (the correction at the model's size upsampled and added; never less sharp than the input)."""
    small, corrections = model_corrections(model, crop, u)
    size = crop.shape[0]
    result = Restored(Path(path), crop, [0, 0, crop.shape[1], size], corrections,
                      np.ones(small.shape[:2], np.float32), u, "none", "none", feather=0.0)
    return [frame.copy() for frame in result.frames()]


def deblur_image(path: str | Path, model, frames: int = 7, settings: DeblurSettings = DeblurSettings(),
                 output: str = "paste", detector: str = "auto", upsample: int = 1, max_side: int = 640) -> Restored:
    """One photo -> Restored (see the module doc); DeblurError naming the file on failure."""
    path = Path(path)
    if output not in OUTPUT_MODES:
        raise ValueError(f"output must be one of {OUTPUT_MODES}")
    if model.multi_output and not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"--frames must be in [1, {MAX_FRAMES}]")
    photo = read_image(path)
    points, used = find_face(photo, detector, upsample, max_side, name=str(path))
    crop, box, edge = face_crop(photo, points, settings.crop)
    u = [float(v) for v in control_factors(frames, settings.u_formula)] if model.multi_output else [None]
    small, corrections = model_corrections(model, crop, u)
    weight = inside_weight(box, photo.shape, crop.shape[0], small.shape[0])
    if output == "paste":
        base, where = photo, [int(v) for v in box]
    else:
        base, where = crop, [0, 0, crop.shape[1], crop.shape[0]]
    result = Restored(path, base, where, corrections, weight, u, edge, used,
                      feather=FEATHER if output == "paste" else 0.0)
    result.info = {
        "source": str(path), "model": model.name, "weights": str(model.path), "u": u,
        "face_box": [int(v) for v in box], "edge": edge, "detector": used, "output": output,
        "crop": {"widen": settings.crop.widen, "size": settings.crop.size, "edge_policy": settings.crop.edge,
                 "square": settings.crop.square, "resize": settings.crop.resize},
        "restored_at": int(small.shape[0]),  # the model's training resolution (the crop area-downscaled to it)
        "output_size": [int(base.shape[1]), int(base.shape[0])],
        "method": "the model's correction at restored_at px, upsampled and added to the photo's own pixels",
        "padding_px": int((weight < 1).sum()),  # model pixels left uncorrected: padding past the photo's edge
        # variance of the Laplacian of the face region (the box in paste mode, the crop in crop mode);
        # write_result adds each output frame's
        "sharpness": {"input": round(sharpness(base, where), 2)},
        "u_formula": U_FORMULAS[settings.u_formula] if model.multi_output else None}
    return result


def write_animation(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Looping GIF (OpenCV >= 4.11 animation API) or MP4 (mp4v); frames RGB uint8 (already at
    most ANIMATION_MAX_SIDE, see `animation_frame`)."""
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]
    if path.suffix == ".gif":
        if not hasattr(cv2, "imwriteanimation"):
            raise DeblurError(f"{path}: this OpenCV ({cv2.__version__}) cannot write GIFs; use --animation mp4")
        anim = cv2.Animation()
        anim.frames = bgr
        anim.durations = [int(round(1000 / fps))] * len(bgr)
        anim.loop_count = 0
        if not cv2.imwriteanimation(str(path), anim):
            raise DeblurError(f"{path}: cannot write the animation")
        return path
    h, w = (s - s % 2 for s in bgr[0].shape[:2])  # mp4v wants even sizes
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise DeblurError(f"{path}: cannot open an MP4 writer")
    for f in bgr:
        writer.write(np.ascontiguousarray(f[:h, :w]))
    writer.release()
    return path


def animation_frame(frame: np.ndarray) -> np.ndarray:
    """A copy of `frame` downscaled to at most ANIMATION_MAX_SIDE pixels a side (GIF frames of a
    12000-pixel photo would take gigabytes)."""
    scale = ANIMATION_MAX_SIDE / max(frame.shape[:2])
    if scale >= 1:
        return frame.copy()
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def output_names(inputs: list[Path]) -> dict[Path, str]:
    """Each photo's output folder name: its stem (`face.jpg` -> `face`), or its whole file name
    when another input shares the stem (`face.jpg`, `face.png` -> `face.jpg`, `face.png`), so no
    result overwrites another; made a safe path component (`safe_video_id`: `..jpg` -> `_.`,
    control characters -> `_`), so no folder lies outside `--out`. DeblurError when two inputs
    would still share a folder."""
    stems: dict[str, list[Path]] = {}
    for p in inputs:
        stems.setdefault(p.stem, []).append(p)
    names: dict[Path, str] = {}
    taken: dict[str, Path] = {}
    for p in inputs:
        name = safe_video_id(p.stem if len(stems[p.stem]) == 1 else p.name)
        if name in taken and taken[name].resolve() != p.resolve():
            raise DeblurError(f"{taken[name]} and {p} would both write to <out>/{name}/; rename one or run them "
                              "with different --out folders")
        taken[name] = p
        names[p] = name
    return names


def write_result(out_dir: str | Path, result: Restored, animation: str = "gif", fps: float = 8.0,
                 name: str | None = None) -> dict:
    """frame_XX.png, sequence.<gif|mp4> and info.json in <out_dir>/<name>/ (default: the photo's
    stem made safe; see `output_names`), written beside it and swapped in whole; returns the paths."""
    from pipeline.stage import replacing_dir

    folder = Path(out_dir) / safe_video_id(name or result.source.stem)
    if folder.resolve().parent != Path(out_dir).resolve():  # never outside --out, whatever the name
        raise DeblurError(f"{result.source}: output folder name {name!r} is not a plain name inside {out_dir}")
    pngs, still = [], []
    with replacing_dir(folder) as work:
        for i, frame in enumerate(result.frames()):
            p = work / f"frame_{i:02d}.png"
            if not cv2.imwrite(str(p), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                raise DeblurError(f"{folder / p.name}: cannot write")
            pngs.append(folder / p.name)
            if animation != "none":
                still.append(animation_frame(frame))
        anim = None
        if animation != "none":
            # CFMD-GAN: the N moments in order; one-output models: before / after
            seq = still if len(still) > 1 else [animation_frame(result.base), still[0]]
            anim = write_animation(work / f"sequence.{animation}", seq, fps if len(still) > 1 else 1.0)
        info = {**result.info, "frames": [p.name for p in pngs], "animation": anim.name if anim else None,
                "sharpness": {**result.info.get("sharpness", {}), "output": result.output_sharpness},
                # frames written as the input: the model's correction would have made the face less sharp
                "kept_input": result.kept_input}
        if result.kept_input:
            log.warning("%s: %d of %d frame(s) kept as the input: the model's correction would have made the face "
                        "less sharp than the photo's (info.json: sharpness, kept_input)", result.source,
                        len(result.kept_input), len(pngs))
        (work / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return {"folder": folder, "frames": pngs, "animation": folder / anim.name if anim else None,
            "info": folder / "info.json"}


# ------------------------------------------------------------------------------ command line


def list_inputs(paths: list[str]) -> list[Path]:
    """Files as given; folders -> their images (sorted, not recursive). DeblurError if none."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            images = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                raise DeblurError(f"{p}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            out += images
        elif p.exists():
            out.append(p)
        else:
            raise DeblurError(f"{p}: no such file or folder")
    return out


def _ranged(kind, low, high=None, name=""):
    """An argparse type: `kind` within [low, high] (high None: no upper bound), one-line error otherwise."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (value >= low and (high is None or value <= high)) or value != value:
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {'in [%g, %g]' % (low, high) if high is not None else '>= %g' % low}")
        return value
    parse.__name__ = name or kind.__name__
    return parse


def get_args_parser() -> argparse.ArgumentParser:
    from pipeline.models.inference import DEFAULT_WEIGHTS

    p = argparse.ArgumentParser(prog="python -m pipeline.deblur", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photo(s) or folder(s) of photos")
    p.add_argument("--model", choices=sorted(DEFAULT_WEIGHTS), default="cfmd",
                   help="cfmd: N moments (CFMD-GAN); chrysos: the middle frame (Chrysos et al.)")
    p.add_argument("--weights", default=None, help="weights file (default models/cfmd.pt / models/chrysos_gan.pt)")
    p.add_argument("--frames", type=_ranged(int, 1, MAX_FRAMES), default=7,
                   help=f"CFMD-GAN: number of moments to restore (u = 0 .. 1), 1 to {MAX_FRAMES}")
    p.add_argument("--out", default="deblurred", help="output folder (one sub-folder per photo)")
    p.add_argument("--output", choices=OUTPUT_MODES, default="paste", help="paste faces back into the photo, or crops")
    p.add_argument("--animation", choices=ANIMATIONS, default="gif")
    p.add_argument("--fps", type=_ranged(float, 0.1, 60.0), default=8.0, help="animation frames per second, 0.1 to 60")
    p.add_argument("--params", default=None,
                   help="crop policy and u formula (default: ./params.yaml when present, else the defaults)")
    p.add_argument("--detector", choices=DETECTORS, default="auto", help="auto: HOG, then CNN if HOG finds no face")
    p.add_argument("--upsample", type=_ranged(int, 0, 4), default=1,
                   help="dlib upsampling, 0 to 4 (finds smaller faces; each step doubles the detection size)")
    p.add_argument("--max-side", type=_ranged(int, MIN_SIDE, 8192), default=640,
                   help=f"detect on a copy downscaled to this side ({MIN_SIDE} to 8192)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return p


def check_out_dir(out: str | Path) -> Path:
    """The output folder, created if needed and checked writable before any photo runs."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DeblurError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".deblur-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise DeblurError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0: all photos done, 1: some failed).
    Fatal problems (no model, no inputs, an output folder that cannot be written) raise SystemExit
    with the message before any photo is processed."""
    from pipeline.models.inference import DEFAULT_WEIGHTS, ModelFileError, load_model

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = get_args_parser().parse_args(argv)
    weights = args.weights or DEFAULT_WEIGHTS[args.model]
    try:
        inputs = list(dict.fromkeys(list_inputs(args.inputs)))  # a photo given twice is done once
        names = output_names(inputs)
        settings = DeblurSettings.from_params(args.params or "params.yaml", required=args.params is not None)
        check_out_dir(args.out)
        model = load_model(weights, device=args.device)
    except (DeblurError, ModelFileError, ValueError) as e:
        raise SystemExit(f"deblur: {e}") from None
    if model.name != args.model:
        raise SystemExit(f"deblur: {weights}: holds a {model.kind} model, not --model {args.model}")
    failed = []
    for path in inputs:
        try:
            result = deblur_image(path, model, args.frames, settings, args.output, args.detector, args.upsample,
                                  args.max_side)
            written = write_result(args.out, result, args.animation, args.fps, names[path])
            log.info("%s: face at %s (%s) -> %d frame(s)%s in %s", path, result.box, result.detector,
                     len(written["frames"]), f" + {written['animation'].name}" if written["animation"] else "",
                     written["folder"])
        except (DeblurError, ModelFileError) as e:
            failed.append(str(e))
            log.error("deblur: %s", e)
        except (cv2.error, ValueError, RuntimeError) as e:  # an odd photo the libraries refuse: this photo only
            message = f"{path}: cannot be processed ({type(e).__name__}: {' '.join(str(e).split())[:300]})"
            failed.append(message)
            log.error("deblur: %s", message)
    if failed:
        log.error("deblur: %d of %d photo(s) failed:\n  %s", len(failed), len(inputs), "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
