"""Throughput and peak memory of the data half (ingest -> manifest), against a naive reference.

Run by hand (not collected by pytest):

    .venv/bin/python benchmarks/data_speed.py --max-videos 3 --frames 75
    .venv/bin/python benchmarks/data_speed.py --long            # also: short vs 10x-long webcam clip
    .venv/bin/python benchmarks/data_speed.py --no-naive --interpolate 4   # averaging with interpolation on vs off

Every stage runs the real stage `main()` in a fresh child process (so peak memory is that stage's
own: VmHWM of the child, max with ru_maxrss of its reaped workers), in a scratch folder with a params.yaml derived from the
repository's. The NAIVE REFERENCE does what published scripts do: decode every frame into memory,
dlib HOG detection (upsample 1) + 68 landmarks on every frame, then for every fixed window crop
every frame again with the window's mean box and write the blurry PNG and all N sharp PNGs
(cv2.imwrite defaults). For equal work the sharpness gate is OFF (blur.fixed.min_sharpness 0) in both; the
naive reference does fixed windows only, so our figure is given with and without blur_vla.
The FLOOR (`_child_floor`) is the least work that makes the same outputs: decode every frame once,
and crop, resize and encode each output image once.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

STAGES = ("ingest", "landmarks", "blur_fixed", "blur_vla", "manifest")
NAIVE_WINDOWS = (5, 7, 9, 11, 13)
NAIVE_STRIDE = 5


# ------------------------------------------------------------------ child process entry points
def _child_stage(stage: str, workdir: str, source: str, result: str) -> None:
    from stages import blur_fixed, blur_vla, ingest, landmarks, manifest
    ns = argparse.Namespace
    os.chdir(workdir)
    t0 = time.perf_counter()
    if stage == "ingest":
        ingest.main(ns(source=source, out="data/ingest", metrics="metrics/ingest.json"))
    elif stage == "landmarks":
        landmarks.main(ns(catalog="data/ingest/catalog.parquet", out="data/landmarks",
                          metrics="metrics/landmarks.json"))
    elif stage == "blur_fixed":
        blur_fixed.main(ns(catalog="data/ingest/catalog.parquet", landmarks="data/landmarks",
                           root="data/dataset", metrics="metrics/blur_fixed.json"))
    elif stage == "blur_vla":
        blur_vla.main(ns(catalog="data/ingest/catalog.parquet", landmarks="data/landmarks",
                         root="data/dataset", metrics="metrics/blur_vla.json"))
    elif stage == "manifest":
        manifest.main(ns(samples=[f"data/dataset/{m}/samples.parquet" for m in ("fixed", "vla")],
                         root="data/dataset", metrics="metrics/dataset.json"))
    Path(result).write_text(json.dumps({"wall": time.perf_counter() - t0, "peak_mib": _peak_mib()}))


def naive_detect(gray, detector, predictor):
    import numpy as np
    rects = detector(gray, 1)  # HOG, upsample 1, on the full frame, every frame
    if len(rects) == 0:
        return None
    r = max(rects, key=lambda r: r.width() * r.height())
    shape = predictor(gray, r)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def naive_crop(frame, box, size=256):
    import cv2
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = box
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return cv2.resize(frame[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_CUBIC)


def _child_naive(catalog: str, out: str, result: str) -> None:
    """The naive reference on every video of `catalog`; writes per-frame landmarks as .npy."""
    import cv2
    import numpy as np
    import pyarrow.parquet as pq

    from pipeline.dataset.dlib_models import frontal_face_detector, shape_predictor_68

    detector, predictor = frontal_face_detector(), shape_predictor_68()
    out = Path(out)
    frames_total = samples = 0
    t0 = time.perf_counter()
    for video in pq.read_table(catalog).to_pylist():
        vid = video["video_id"]
        cap = cv2.VideoCapture(video["path"])
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)  # the whole video in memory, as published scripts do
        cap.release()
        pts = [naive_detect(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), detector, predictor) for f in frames]
        frames_total += len(frames)
        lm = np.full((len(frames), 68, 2), np.nan, np.float32)
        for i, p in enumerate(pts):
            if p is not None:
                lm[i] = p
        np.save(out / f"{vid}.npy", lm)
        vdir = out / vid
        vdir.mkdir(parents=True, exist_ok=True)
        for n in NAIVE_WINDOWS:
            for s in range(0, len(frames) - n + 1, NAIVE_STRIDE):
                win = pts[s:s + n]
                if any(p is None for p in win):
                    continue
                boxes = []
                for p in win:
                    lo, hi = p.min(0), p.max(0)
                    sz = hi - lo
                    boxes.append(np.concatenate([lo - 0.5 * sz, hi + 0.5 * sz]))
                b = np.mean(boxes, 0)
                cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                side = int(round(max(b[2] - b[0], b[3] - b[1])))
                x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
                box = (x0, y0, x0 + side, y0 + side)
                crops = [naive_crop(frames[i], box) for i in range(s, s + n)]
                blurry = np.mean(np.stack(crops).astype(np.float64), 0).round().astype(np.uint8)
                sdir = vdir / f"n{n:02d}-f{s:06d}"
                sdir.mkdir()
                cv2.imwrite(str(sdir / "blurry.png"), blurry)
                for k, c in enumerate(crops):
                    cv2.imwrite(str(sdir / f"sharp_{k:02d}.png"), c)
                samples += 1
    Path(result).write_text(json.dumps({"wall": time.perf_counter() - t0, "frames": frames_total,
                                        "samples": samples, "peak_mib": _peak_mib()}))


def _child_floor(workdir: str, result: str) -> None:
    """The FLOOR: the least work that makes these outputs, in one process. Decode every frame of
    every video once, and for each output sample (fixed and VLA, from our run's rows) crop one
    frame (its middle one) with the sample's box, resize it to the output size as the protocol
    does (crop.resize), and encode it (blur.png) once. No averaging, no gate, no frame store."""
    import cv2
    import pyarrow.parquet as pq
    import yaml

    from pipeline.dataset.crop import CropParams, crop_resize
    from pipeline.dataset.ingest import read_catalog, source_of, with_absolute_paths
    from pipeline.dataset.pngio import PngEncoder
    from pipeline.dataset.video import iter_frames

    cv2.setNumThreads(1)  # as in the stages' workers
    os.chdir(workdir)
    params = yaml.safe_load(Path("params.yaml").read_text())
    crop, png = CropParams.from_params(params["crop"]), PngEncoder.from_params(params["blur"])
    boxes: dict[tuple[str, int], list] = {}
    for method in ("fixed", "vla"):
        for r in pq.read_table(f"data/dataset/{method}/samples.parquet",
                               columns=["video_id", "frame_indices", "crop_box"]).to_pylist():
            frames = r["frame_indices"]
            boxes.setdefault((r["video_id"], frames[len(frames) // 2]), []).append([int(v) for v in r["crop_box"]])
    t0 = time.perf_counter()
    frames_total = images = 0
    for video in read_catalog("data/ingest/catalog.parquet"):
        vid = video["video_id"]
        for i, frame in iter_frames(source_of(with_absolute_paths(video))):
            frames_total += 1
            for box in boxes.get((vid, i), ()):
                png.encode(crop_resize(frame, box, crop.size, resize=crop.resize))
                images += 1
    Path(result).write_text(json.dumps({"wall": time.perf_counter() - t0, "frames": frames_total,
                                        "samples": images, "peak_mib": _peak_mib()}))


# ------------------------------------------------------------------ parent
def _peak_mib() -> float:
    """This process's own peak RSS (VmHWM: per address space, so fresh after exec, unlike ru_maxrss
    which keeps the forking parent's peak), and that of its reaped children."""
    import resource
    hwm = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = float(line.split()[1]) / 1024.0
    return max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0)


def run_child(args: list[str]) -> tuple[dict, float]:
    """Run this file as a child with `args`; return (its result JSON, its peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    p = subprocess.Popen([sys.executable, __file__, *args, "--result", result],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "TQDM_DISABLE": "1"})
    p.wait()
    if p.returncode != 0:
        raise SystemExit(f"child {args} failed with {p.returncode} (rerun it by hand to see why)")
    res = json.loads(Path(result).read_text())
    os.unlink(result)
    return res, res["peak_mib"]


def prepare_source(videos: list[str], dst: Path, frames: int | None) -> None:
    """Copy (or truncate to `frames`, re-encoded as MJPG .avi) each video to dst/<folder>/."""
    from conftest import read_frames, write_clip
    for v in videos:
        v = Path(v)
        sub = dst / v.parent.name
        sub.mkdir(parents=True, exist_ok=True)
        if frames:
            write_clip(sub / (v.stem + ".avi"), read_frames(v, frames))
        else:
            shutil.copy(v, sub / v.name)


def make_held_out_style(dst: Path) -> list[str]:
    """Two clips shaped like issue 25's held-out pair (1,008 frames at 480², 125 at 590²), made from
    the repeat-free talking clips: the four clips and Katie Hill's first 208 frames back to back
    (shot cuts between them), resized to 480²; Ed Markey's first 125 frames resized to 590²."""
    import cv2

    from conftest import read_frames, write_clip
    talking = sorted(glob.glob(str(REPO / "data/videos/talking/*.mp4")))
    katie = next(v for v in talking if "KatieHill" in v)
    markey = next(v for v in talking if "EdMarkey" in v)
    sub = dst / "held_out_style"
    sub.mkdir(parents=True, exist_ok=True)
    long = [f for v in talking for f in read_frames(Path(v))] + read_frames(Path(katie), 208)
    write_clip(sub / "long_480.avi", [cv2.resize(f, (480, 480), interpolation=cv2.INTER_AREA) for f in long])
    write_clip(sub / "short_590.avi", [cv2.resize(f, (590, 590), interpolation=cv2.INTER_CUBIC)
                                       for f in read_frames(Path(markey), 125)])
    return [str(sub / "long_480.avi"), str(sub / "short_590.avi")]


def make_uhd(dst: Path, frames: int) -> list[str]:
    """A 4K clip (3840x2160) for peak memory: Katie Hill's first `frames` frames upscaled to
    2160x2160 and centred on black, the face about 1,000 px wide."""
    import cv2
    import numpy as np

    from conftest import read_frames, write_clip
    katie = REPO / "data/videos/talking/WDA_KatieHill_000.mp4"
    sub = dst / "uhd"
    sub.mkdir(parents=True, exist_ok=True)
    out = []
    for f in read_frames(katie, frames):
        canvas = np.zeros((2160, 3840, 3), np.uint8)
        canvas[:, 840:3000] = cv2.resize(f, (2160, 2160), interpolation=cv2.INTER_CUBIC)
        out.append(canvas)
    write_clip(sub / "uhd_3840x2160.avi", out)
    return [str(sub / "uhd_3840x2160.avi")]


def make_long(video: str, dst: Path, repeat: int, frames: int | None) -> None:
    from conftest import read_frames, write_clip
    clip = read_frames(Path(video), frames)
    sub = dst / "long"
    sub.mkdir(parents=True, exist_ok=True)
    write_clip(sub / "long.avi", clip * repeat)


def run_ours(workdir: Path, source: Path, n_jobs: int, backend: str, gate_off: bool = True,
             changes: dict | None = None) -> dict:
    """Every data stage in `workdir` on `source`, the repository's params but for the source, the
    compute settings, (`gate_off`) blur.fixed.min_sharpness 0 and `changes`."""
    import yaml
    from conftest import deep_update, repo_params
    params = deep_update(repo_params(), {"ingest": {"source": str(source), "test_videos": []},
                                         "compute": {"n_jobs": n_jobs, "backend": backend}})
    if gate_off:
        params = deep_update(params, {"blur": {"fixed": {"min_sharpness": 0.0}}})
    params = deep_update(params, changes or {})
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    out = {}
    for stage in STAGES:
        res, rss = run_child(["--_stage", stage, str(workdir), str(source)])
        out[stage] = {"wall": res["wall"], "rss": rss}
    m = lambda name: json.loads((workdir / "metrics" / name).read_text())  # noqa: E731
    frames = m("ingest.json")["frames"]
    import pyarrow.parquet as pq
    n_fixed = pq.read_metadata(workdir / "data/dataset/fixed/samples.parquet").num_rows
    n_vla = pq.read_metadata(workdir / "data/dataset/vla/samples.parquet").num_rows
    samples = {"ingest": n_fixed + n_vla, "landmarks": n_fixed + n_vla, "blur_fixed": n_fixed,
               "blur_vla": n_vla, "manifest": n_fixed + n_vla}
    for s in STAGES:
        out[s].update(frames=frames, samples=samples[s])
    out["n_fixed"], out["n_vla"], out["frames"] = n_fixed, n_vla, frames
    return out


def rerun_blur(workdir: Path, source: Path, interpolate: int) -> dict:
    """The averaging stages again in `workdir` (ingest and landmarks reused) with blur.interpolate."""
    import yaml
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["blur"]["interpolate"] = interpolate
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    out = {}
    for stage in ("blur_fixed", "blur_vla"):
        res, rss = run_child(["--_stage", stage, str(workdir), str(source)])
        m = json.loads((workdir / "metrics" / f"{stage}.json").read_text())
        out[stage] = {"wall": res["wall"], "rss": rss, "samples": m["samples"]["total"],
                      "energy": m.get("blurry", {}).get("gradient_energy")}
    return out


def fmt_row(name, frames, samples, wall, rss):
    return (f"{name:<22}{frames / wall:>10.1f}{samples / wall:>11.1f}{wall:>9.2f}{rss:>10.0f}"
            f"   ({frames} frames, {samples} samples)")


def landmark_difference(ours_dir: Path, naive_dir: Path) -> tuple[float, int, int]:
    import numpy as np
    from pipeline.dataset.landmarks import interocular_error, read_tracks
    errs, missing = [], 0
    for npy in sorted(naive_dir.glob("*.npy")):
        naive = np.load(npy)
        tracks = [t["points"] for t in read_tracks(ours_dir / f"{npy.stem}.parquet").values()]
        for i, b in enumerate(naive):  # several face tracks (shot cuts): the one nearest the naive face
            faces = [t[i] for t in tracks if not np.isnan(t[i]).any()]
            if not faces or np.isnan(b).any():
                missing += int(bool(faces) != (not np.isnan(b).any()))
                continue
            errs.append(min(interocular_error(a, b) for a in faces))
    return (float(np.mean(errs)) if errs else float("nan")), len(errs), missing


# Where time goes: cProfile's builtin calls grouped into the operations the issue names.
OPERATIONS = {
    "decode": ("'read' of 'cv2.VideoCapture", "'grab' of 'cv2.VideoCapture", "<imread>", "<imdecode>"),
    "detection (dlib HOG)": ("_dlib_pybind11.run",),
    "landmarks (dlib predictor)": ("landmarks.py:_predict",),
    "crops (colour, resize)": ("<resize>", "<warpAffine>", "<cvtColor>"),
    "averaging": ("averaging.py",),
    "flow + SSIM (VLA checks)": ("DenseOpticalFlow", "<remap>", "<GaussianBlur>", "ssim_grey"),
    "image encoding (PNG)": ("<imencode>", "<imwrite>", "fpng", "encode_ndarray"),
    "file I/O": ("BufferedWriter", "write_table", "ParquetWriter", "io.open", "posix.mkdir"),
}


def time_breakdown(catalog_path: Path, landmarks_dir: Path, video_id: str) -> dict[str, float]:
    """Seconds per operation for landmarks + blur_fixed + blur_vla of one video, in this process."""
    import cProfile
    import pstats

    import yaml

    from conftest import deep_update
    from pipeline.dataset.crop import CropParams
    from pipeline.dataset.fixed import FixedParams, build_video as fixed_video
    from pipeline.dataset.ingest import read_catalog, source_of
    from pipeline.dataset.landmarks import LandmarkParams, extract_video, read_landmarks
    from pipeline.dataset.vla import VLAParams, build_video as vla_video

    import cv2

    cv2.setNumThreads(1)  # as in the stages' workers
    video = next(v for v in read_catalog(catalog_path) if v["video_id"] == video_id)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    out = Path(tempfile.mkdtemp(prefix="breakdown-"))
    prof = cProfile.Profile()
    prof.enable()
    extract_video(source_of(video), LandmarkParams.from_params(params["landmarks"]), video["n_frames"])
    lm = read_landmarks(landmarks_dir / f"{video_id}.parquet")
    fixed_video(source_of(video), video, lm, out, FixedParams.from_params(deep_update(params["blur"], {"fixed": {"min_sharpness": 0}})),
                CropParams.from_params(params["crop"]))
    vla_video(source_of(video), video, lm, out, VLAParams.from_params(params["blur"]),
              CropParams.from_params(params["crop"]))
    prof.disable()
    shutil.rmtree(out, ignore_errors=True)
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())  # every function's own time adds up to the run
    spent = {k: 0.0 for k in OPERATIONS}
    for (filename, _, name), (_, _, tottime, _, _) in stats.items():
        label = f"{filename}:{name}"
        for op, needles in OPERATIONS.items():
            if any(n in label for n in needles):
                spent[op] += tottime
                break
    spent["other (Python, numpy, arrow)"] = max(0.0, total - sum(spent.values()))
    spent["total"] = total
    return spent


def main():
    from pipeline.params import dotted_settings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", help="default: data/videos/grid/*.mpg data/videos/webcam/*.mp4")
    ap.add_argument("--max-videos", type=int, default=None, help="use at most this many videos")
    ap.add_argument("--frames", type=int, default=None, help="truncate every video to its first N frames")
    ap.add_argument("--n-jobs", type=int, default=1, help="compute.n_jobs for our stages (peak RSS "
                    "is then the largest single process, workers included once reaped)")
    ap.add_argument("--backend", default="loky")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive reference")
    ap.add_argument("--held-out-style", action="store_true",
                    help="run on two clips shaped like issue 25's held-out pair (1,008 frames 480², 125 frames 590²)")
    ap.add_argument("--uhd", type=int, default=None, metavar="FRAMES",
                    help="run on one 3840x2160 clip of FRAMES frames (peak memory at 4K)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a params change for our stages, e.g. crop.resize=opencv (repeatable)")
    ap.add_argument("--no-floor", action="store_true", help="skip the floor (decode + one crop and encode per output)")
    ap.add_argument("--long", action="store_true", help="also run ours on a short vs long webcam clip")
    ap.add_argument("--long-repeat", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--interpolate", type=int, default=None, metavar="K",
                    help="also rerun blur_fixed and blur_vla with blur.interpolate K (off vs on)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also profile landmarks + blur_fixed + blur_vla of the longest video by operation")
    args = ap.parse_args()

    videos = args.videos or (sorted(glob.glob(str(REPO / "data/videos/grid/*.mpg")))
                             + sorted(glob.glob(str(REPO / "data/videos/webcam/*.mp4"))))
    if args.max_videos and len(videos) > args.max_videos:
        # keep at least one webcam clip (head motion) when limiting
        web = [v for v in videos if "webcam" in v][:1]
        videos = [v for v in videos if v not in web][:args.max_videos - len(web)] + web
    scratch = Path(tempfile.mkdtemp(prefix="data_speed-"))
    if args.held_out_style:
        videos = make_held_out_style(scratch / "made")
    if args.uhd:
        videos = make_uhd(scratch / "made", args.uhd)
    print(f"videos: {len(videos)} ({', '.join(Path(v).name for v in videos)}), frames limit: {args.frames}, "
          f"n_jobs {args.n_jobs} ({args.backend}), {os.cpu_count()} CPUs; sharpness gate OFF (min_sharpness 0)")
    try:
        source = scratch / "src"
        prepare_source(videos, source, args.frames)
        ours = run_ours(scratch / "ours", source, args.n_jobs, args.backend, changes=dotted_settings(args.set))
        print(f"\n{'stage':<22}{'frames/s':>10}{'samples/s':>11}{'wall s':>9}{'peak MiB':>10}")
        for s in STAGES:
            r = ours[s]
            print(fmt_row(s, r["frames"], r["samples"], r["wall"], r["rss"]))
        wall_all = sum(ours[s]["wall"] for s in STAGES)
        wall_fixed = wall_all - ours["blur_vla"]["wall"]
        rss_all = max(ours[s]["rss"] for s in STAGES)
        frames = ours["frames"]
        print(fmt_row("data half (ours)", frames, ours["n_fixed"] + ours["n_vla"], wall_all, rss_all))
        print(fmt_row("  without blur_vla", frames, ours["n_fixed"], wall_fixed,
                      max(ours[s]["rss"] for s in STAGES if s != "blur_vla")))
        print("(stage walls are measured inside each child, excluding interpreter start-up;"
              " samples/s of ingest/landmarks/manifest count all samples)")
        if not args.no_floor:
            floor, rss = run_child(["--_floor", str(scratch / "ours")])
            print(fmt_row("floor (one process)", floor["frames"], floor["samples"], floor["wall"], rss))
            print(f"each stage against the floor (decode each frame once; crop, resize and encode each output "
                  f"image once: {floor['wall']:.2f} s):")
            for s in STAGES:
                print(f"  {s:<20}{ours[s]['wall'] / floor['wall']:>6.2f}x the floor")
            blur = ours["blur_fixed"]["wall"] + ours["blur_vla"]["wall"]
            print(f"  {'blur stages':<20}{blur / floor['wall']:>6.2f}x the floor"
                  f"   (n_jobs {args.n_jobs}; the floor runs in one process)")
        if args.interpolate and args.interpolate > 1:
            off = {s: {**ours[s], "energy": json.loads((scratch / "ours/metrics" / f"{s}.json").read_text())
                       .get("blurry", {}).get("gradient_energy")} for s in ("blur_fixed", "blur_vla")}
            on = rerun_blur(scratch / "ours", source, args.interpolate)
            print(f"\ninterpolation: blur.interpolate 1 (off) vs {args.interpolate} (DIS flow, both directions)")
            print(f"{'stage':<22}{'frames/s':>10}{'samples/s':>11}{'wall s':>9}{'peak MiB':>10}{'grad energy':>13}")
            for s in ("blur_fixed", "blur_vla"):
                for k, r in ((1, off[s]), (args.interpolate, on[s])):
                    print(fmt_row(f"{s} k={k}", frames, r["samples"], r["wall"], r["rss"]).split("   (")[0]
                          + f"{r['energy'] if r['energy'] is not None else float('nan'):>13.1f}")
                print(f"  {s}: {on[s]['wall'] / off[s]['wall']:.1f}x the time with interpolation")
        if not args.no_naive:
            ndir = scratch / "naive"
            ndir.mkdir()
            res, rss = run_child(["--_naive", str(scratch / "ours/data/ingest/catalog.parquet"), str(ndir)])
            print(fmt_row("naive reference", res["frames"], res["samples"], res["wall"], rss))
            print(f"\nspeed-up, frames/s of the data half: ours / naive = "
                  f"{(frames / wall_all) / (res['frames'] / res['wall']):.1f}x "
                  f"(ours without blur_vla, the same work as naive: "
                  f"{(frames / wall_fixed) / (res['frames'] / res['wall']):.1f}x)")
            print(f"samples: ours fixed {ours['n_fixed']} vs naive {res['samples']} (ours + vla {ours['n_vla']})")
            err, n, missing = landmark_difference(scratch / "ours/data/landmarks", ndir)
            print(f"landmarks, ours (detect every k + tracking) vs naive (HOG upsample 1 every frame): "
                  f"mean normalised difference {err:.4f} of the inter-ocular distance over {n} frames; "
                  f"{missing} frames with a face in only one of them")
        if args.breakdown:
            import pyarrow.parquet as pq
            cat = pq.read_table(scratch / "ours/data/ingest/catalog.parquet").to_pylist()
            longest = max(cat, key=lambda v: v["n_frames"])
            spent = time_breakdown(scratch / "ours/data/ingest/catalog.parquet", scratch / "ours/data/landmarks",
                                   longest["video_id"])
            print(f"\nwhere time goes, landmarks + blur_fixed (gate off) + blur_vla of {longest['video_id']} "
                  f"({longest['n_frames']} frames, {longest['width']}x{longest['height']}, one process):")
            for op, sec in spent.items():
                print(f"  {op:<30}{sec:8.2f} s {1000 * sec / longest['n_frames']:7.2f} ms/frame"
                      f"{100 * sec / spent['total']:6.0f}%")
        if args.long:
            web = [v for v in videos if "webcam" in v] or videos[:1]
            rows = {}
            for name, repeat in (("short", 1), (f"long x{args.long_repeat}", args.long_repeat)):
                src = scratch / f"src-{repeat}"
                make_long(web[0], src, repeat, args.frames)
                r = run_ours(scratch / f"ours-{repeat}", src, 1, "sequential")
                rows[name] = r
            print(f"\npeak memory, one video, short vs long ({Path(web[0]).name}, sequential):")
            print(f"{'':<22}{'frames':>8}" + "".join(f"{s:>12}" for s in STAGES))
            for name, r in rows.items():
                print(f"{name:<22}{r['frames']:>8}" + "".join(f"{r[s]['rss']:>9.0f}MiB" for s in STAGES))
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--_stage", "--_naive", "--_floor"):
        a = sys.argv[1:]
        result = a[a.index("--result") + 1]
        if a[0] == "--_stage":
            _child_stage(a[1], a[2], a[3], result)
        elif a[0] == "--_floor":
            _child_floor(a[1], result)
        else:
            _child_naive(a[1], a[2], result)
    else:
        main()
