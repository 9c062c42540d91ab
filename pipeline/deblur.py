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

`--output paste` (default) pastes the restored face back into the photo (resized to the crop box,
feathered at its border); `--output crop` writes the crops. Each photo gets its own folder,
`<out>/<stem>/`, or `<out>/<file name>/` when two inputs share a stem (face.jpg, face.png); two
inputs with the same file name (a/face.jpg, b/face.jpg) are refused. `<out>/<...>/info.json`
records the face box, u values and model. Errors name the file: a missing or unreadable image, a
photo without a detectable face, a missing or wrong model file. With a folder, failures are
listed and the other photos still processed (exit status 1 if any failed).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.dataset.crop import CropParams, crop_resize, face_box
from pipeline.dataset.manifest import downscale
from pipeline.dataset.fmr import U_FORMULAS, FMRParams, control_factors

log = logging.getLogger("deblur")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DETECTORS = ("auto", "hog", "cnn")
OUTPUT_MODES = ("paste", "crop")
ANIMATIONS = ("gif", "mp4", "none")
FEATHER = 0.08  # share of the crop side over which a pasted face blends into the photo


class DeblurError(RuntimeError):
    """A photo that cannot be deblurred; the message names the file and the reason."""


@dataclass(frozen=True)
class DeblurSettings:
    """What the dataset decided and a photo must match: the crop (params `crop`) and the u formula
    (params `manifest.fmr.u_formula`), read by the same parsers as the stages."""

    crop: CropParams = CropParams()
    u_formula: str = "authors"

    @classmethod
    def from_params(cls, path: str | Path | None) -> "DeblurSettings":
        if path is None or not Path(path).is_file():
            return cls()
        params = yaml.safe_load(Path(path).read_text()) or {}
        fmr = FMRParams.from_params((params.get("manifest") or {}).get("fmr") or {})
        return cls(CropParams.from_params(params.get("crop") or {}), fmr.u_formula)


@dataclass
class Restored:
    """One photo's result: the restored frames (photo-sized when pasted, else crops), their u."""

    source: Path
    frames: list[np.ndarray]  # RGB uint8
    u: list[float | None]
    blurry: np.ndarray  # the input at the same framing as `frames` (photo or crop), RGB uint8
    box: list[int]  # x0, y0, x1, y1 of the square crop in photo pixels
    edge: str  # none | shift | pad
    detector: str
    info: dict = field(default_factory=dict)


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


def paste(photo: np.ndarray, crop: np.ndarray, box: np.ndarray, feather: float = FEATHER) -> np.ndarray:
    """The photo with `crop` resized into `box` (parts outside the photo dropped), blended over a
    border of `feather` x the box side."""
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    interp = cv2.INTER_AREA if max(bw, bh) < crop.shape[0] else cv2.INTER_CUBIC
    patch = cv2.resize(crop, (bw, bh), interpolation=interp).astype(np.float32)
    band = max(feather * min(bw, bh), 1.0)
    rx = np.clip(np.minimum(np.arange(bw) + 0.5, bw - np.arange(bw) - 0.5) / band, 0, 1)
    ry = np.clip(np.minimum(np.arange(bh) + 0.5, bh - np.arange(bh) - 0.5) / band, 0, 1)
    alpha = np.minimum(ry[:, None], rx[None, :])[..., None]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = photo.copy()
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    region = out[cy0:cy1, cx0:cx1].astype(np.float32)
    sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    a = alpha[sub]
    out[cy0:cy1, cx0:cx1] = np.clip(np.rint(a * patch[sub] + (1 - a) * region), 0, 255).astype(np.uint8)
    return out


# ------------------------------------------------------------------------------ restoring


def deblur_image(path: str | Path, model, frames: int = 7, settings: DeblurSettings = DeblurSettings(),
                 output: str = "paste", detector: str = "auto", upsample: int = 1, max_side: int = 640) -> Restored:
    """One photo -> Restored (see the module doc); DeblurError naming the file on failure."""
    from pipeline.models.inference import restore_many

    path = Path(path)
    if output not in OUTPUT_MODES:
        raise ValueError(f"output must be one of {OUTPUT_MODES}")
    photo = read_image(path)
    points, used = find_face(photo, detector, upsample, max_side, name=str(path))
    crop, box, edge = face_crop(photo, points, settings.crop)
    if model.resolution:  # the face at the size the model was trained at (issue 22), as training saw it
        crop = downscale(crop, model.resolution) if model.resolution < crop.shape[0] else \
            cv2.resize(crop, (model.resolution, model.resolution), interpolation=cv2.INTER_CUBIC)
    if model.multi_output:
        if frames < 1:
            raise ValueError("--frames must be >= 1")
        u = [float(v) for v in control_factors(frames, settings.u_formula)]
    else:
        u = [None]
    restored = list(restore_many(model, crop, u, batch_size=16))
    if output == "paste":
        restored = [paste(photo, r, box) for r in restored]
        blurry = photo
    else:
        blurry = crop
    info = {"source": str(path), "model": model.name, "weights": str(model.path), "u": u,
            "face_box": [int(v) for v in box], "edge": edge, "detector": used, "output": output,
            "crop": {"widen": settings.crop.widen, "size": settings.crop.size, "edge_policy": settings.crop.edge,
                     "square": settings.crop.square, "resize": settings.crop.resize},
            "restored_at": int(crop.shape[0]),  # the model's training resolution (the crop area-downscaled to it)
            "u_formula": U_FORMULAS[settings.u_formula] if model.multi_output else None}
    return Restored(path, restored, u, blurry, [int(v) for v in box], edge, used, info)


def write_animation(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Looping GIF (OpenCV >= 4.11 animation API) or MP4 (mp4v); frames RGB uint8."""
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


def output_names(inputs: list[Path]) -> dict[Path, str]:
    """Each photo's output folder name: its stem (`face.jpg` -> `face`), or its whole file name
    when another input shares the stem (`face.jpg`, `face.png` -> `face.jpg`, `face.png`), so no
    result overwrites another. DeblurError when two inputs share the whole name as well."""
    stems: dict[str, list[Path]] = {}
    for p in inputs:
        stems.setdefault(p.stem, []).append(p)
    names: dict[Path, str] = {}
    taken: dict[str, Path] = {}
    for p in inputs:
        name = p.stem if len(stems[p.stem]) == 1 else p.name
        if name in taken and taken[name].resolve() != p.resolve():
            raise DeblurError(f"{taken[name]} and {p} would both write to <out>/{name}/; rename one or run them "
                              "with different --out folders")
        taken[name] = p
        names[p] = name
    return names


def write_result(out_dir: str | Path, result: Restored, animation: str = "gif", fps: float = 8.0,
                 name: str | None = None) -> dict:
    """frame_XX.png, sequence.<gif|mp4> and info.json in <out_dir>/<name>/ (default: the photo's
    stem; see `output_names`); returns the paths."""
    folder = Path(out_dir) / (name or result.source.stem)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("frame_*.png"):
        old.unlink()
    pngs = []
    for i, frame in enumerate(result.frames):
        p = folder / f"frame_{i:02d}.png"
        if not cv2.imwrite(str(p), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise DeblurError(f"{p}: cannot write")
        pngs.append(p)
    anim = None
    if animation != "none":
        # CFMD-GAN: the N moments in order; one-output models: before / after
        seq = result.frames if len(result.frames) > 1 else [result.blurry, result.frames[0]]
        anim = write_animation(folder / f"sequence.{animation}", seq, fps if len(result.frames) > 1 else 1.0)
    info = {**result.info, "frames": [p.name for p in pngs], "animation": anim.name if anim else None}
    (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return {"folder": folder, "frames": pngs, "animation": anim, "info": folder / "info.json"}


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


def get_args_parser() -> argparse.ArgumentParser:
    from pipeline.models.inference import DEFAULT_WEIGHTS

    p = argparse.ArgumentParser(prog="python -m pipeline.deblur", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photo(s) or folder(s) of photos")
    p.add_argument("--model", choices=sorted(DEFAULT_WEIGHTS), default="cfmd",
                   help="cfmd: N moments (CFMD-GAN); chrysos: the middle frame (Chrysos et al.)")
    p.add_argument("--weights", default=None, help="weights file (default models/cfmd.pt / models/chrysos_gan.pt)")
    p.add_argument("--frames", type=int, default=7, help="CFMD-GAN: number of moments to restore (u = 0 .. 1)")
    p.add_argument("--out", default="deblurred", help="output folder (one sub-folder per photo)")
    p.add_argument("--output", choices=OUTPUT_MODES, default="paste", help="paste faces back into the photo, or crops")
    p.add_argument("--animation", choices=ANIMATIONS, default="gif")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--params", default="params.yaml", help="crop policy and u formula (defaults if missing)")
    p.add_argument("--detector", choices=DETECTORS, default="auto", help="auto: HOG, then CNN if HOG finds no face")
    p.add_argument("--upsample", type=int, default=1, help="dlib upsampling (finds smaller faces, slower)")
    p.add_argument("--max-side", type=int, default=640, help="detect on a copy downscaled to this side")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0: all photos done, 1: some failed).
    Fatal problems (no model, no inputs) raise SystemExit with the message."""
    from pipeline.models.inference import DEFAULT_WEIGHTS, ModelFileError, load_model

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = get_args_parser().parse_args(argv)
    weights = args.weights or DEFAULT_WEIGHTS[args.model]
    try:
        inputs = list(dict.fromkeys(list_inputs(args.inputs)))  # a photo given twice is done once
        names = output_names(inputs)
        settings = DeblurSettings.from_params(args.params)
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
        except DeblurError as e:
            failed.append(str(e))
            log.error("deblur: %s", e)
    if failed:
        log.error("deblur: %d of %d photo(s) failed:\n  %s", len(failed), len(inputs), "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
