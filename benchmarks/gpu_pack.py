"""Make the bundle benchmarks/gpu_check.sh needs on a GPU machine without network or dvc:

    python benchmarks/gpu_pack.py                  # -> benchmarks/gpu/ (git-ignored, ~35 MiB)
    python benchmarks/gpu_pack.py --budget-mib 20  # a smaller dataset subset

Writes benchmarks/gpu/dataset.tar: a subset of the built dataset's fixed windows (data/dataset;
what benchmarks/learning.py reads) up to --budget-mib, train and test in the ratio of --test-share.
The repeat-free test videos go in first (from the landmarks report, which goes in too as
dataset/landmarks_report.json), the validation video first in training, then the rest smallest
first. A video larger than --video-mib goes in as the windows of a span of frames from its start
(at 256 x 256 one 200-frame talking clip is 60-77 MiB), its sharp store cut to the frames they use
and re-encoded as lossless WebP (checked to read back bit-identical). The manifests are filtered
to what went in. Also benchmarks/gpu/wheels/: the pure-Python or cp312 wheels of what the GPU
machine lacks (kornia + kornia_rs for augmentation and SSIM, PyYAML for params, tqdm, pytest and
its dependencies, cloudpickle, python-dateutil, six), fetched with `pip download --no-deps` for
CPython 3.12 on manylinux x86_64. Training there runs without dvclive (benchmarks/learning.py uses
the tasks directly). The whole working tree plus this bundle must stay under the 64 MiB the device
copy allows (carry `benchmarks/gpu`): the script prints that total and fails above LIMIT_MIB.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.dataset.framestore import index_path, open_store, write_subset  # noqa: E402
from pipeline.dataset.holds import repeat_free_videos  # noqa: E402
from pipeline.stage import load_params  # noqa: E402

LIMIT_MIB = 62.0  # the device copy takes 64 MiB: working tree + bundle, with a margin


def tree_bytes() -> int:
    """What the device copy sends of the working tree: tracked and untracked-not-ignored files."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum(Path(n.decode()).stat().st_size for n in names if n and Path(n.decode()).is_file())


WHEELS = ["kornia", "kornia_rs", "pyyaml", "tqdm", "pytest", "pluggy", "iniconfig", "packaging", "cloudpickle",
          "python-dateutil", "six"]


def webp_lossless(image) -> bytes:
    """About half fpng's size for a frame region; the same pixels (write_subset checks)."""
    return cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()


class PackedFrameCost:
    """Bytes a frame region will take in the bundle (re-encoded with `webp_lossless`), measured
    once per frame when a span first reaches it."""

    def __init__(self, root: Path):
        self.root, self._bytes = root, {}

    def __call__(self, store: str, frame: int) -> int:
        key = (store, frame)
        if key not in self._bytes:
            self._bytes[key] = len(webp_lossless(open_store(self.root / store).region(frame)[0]))
        return self._bytes[key]


def windows_in_span(rows: list[dict], root: Path, cap: int, frame_cost) -> tuple[list[dict], list[int], int]:
    """One video's windows whose frames lie in the longest span from its first frame that costs at
    most `cap` bytes (blurry PNGs + `frame_cost(store, frame)` for the frames they use), all of them
    when the whole video fits: (rows, frames, bytes). Consecutive windows share most frames, so a
    span keeps many windows for few stored frames; windows picked across the clip would each need
    their own."""
    rows = sorted(rows, key=lambda r: (max(r["frame_indices"]), r["sample_id"]))
    kept, frames, used = [], set(), 0
    for row in rows:
        new = set(row["frame_indices"]) - frames
        cost = (root / row["blurry_path"]).stat().st_size + sum(frame_cost(row["sharp_store"], f) for f in new)
        if used + cost > cap:
            break
        kept.append(row)
        frames |= new
        used += cost
    return kept, sorted(frames), used


def stored_frame_cost(root: Path):
    """Bytes a frame region takes in the dataset's own store."""
    return lambda store, frame: open_store(root / store).nbytes(frame)


def pack_manifest(table: pa.Table, root: Path, budget: int, video_cap: int, first: list[str], frame_cost):
    """{video: (rows, frames)} for one manifest: the videos in `first` (in that order), then the
    rest smallest first (by their size in the dataset), each cut to a span of at most `video_cap`
    bytes in the bundle, until `budget`."""
    by_video: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        by_video.setdefault(row["video_id"], []).append(row)
    for video, rows in by_video.items():  # a store holds one video's frames (pipeline.dataset.framestore)
        if len({r["sharp_store"] for r in rows}) != 1:
            raise SystemExit(f"{video}: windows in several sharp stores; this packer cuts one store per video")
    stored = stored_frame_cost(root)
    whole = {v: windows_in_span(rows, root, 1 << 62, stored)[2] for v, rows in by_video.items()}
    order = [v for v in first if v in by_video] + sorted((v for v in by_video if v not in first), key=whole.get)
    chosen, left = {}, budget
    for video in order:
        rows, frames, used = windows_in_span(by_video[video], root, min(video_cap, left), frame_cost)
        if rows:
            chosen[video] = (rows, frames)
            left -= used
            print(f"  {video}: {len(rows)} of {len(by_video[video])} windows, {len(frames)} frames, "
                  f"{used / 2**20:.1f} MiB{'' if len(rows) == len(by_video[video]) else ' (a span from its start)'}")
    return chosen, budget - left


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--out", default="benchmarks/gpu")
    p.add_argument("--budget-mib", type=float, default=26.0, help="dataset subset size (in the bundle)")
    p.add_argument("--video-mib", type=float, default=8.0, help="at most this much of one video")
    p.add_argument("--landmarks-report", default="data/landmarks/report.json")
    p.add_argument("--validation-video", default=None, help="default: params.yaml's train_cfmd.validation_video")
    p.add_argument("--test-share", type=float, default=0.4)
    p.add_argument("--no-wheels", action="store_true")
    args = p.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget, video_cap = int(args.budget_mib * 2**20), int(args.video_mib * 2**20)
    validation = args.validation_video or load_params()["train_cfmd"].get("validation_video")
    first = {"test": sorted(repeat_free_videos(args.landmarks_report)), "train": [validation] if validation else []}
    frame_cost = PackedFrameCost(root)
    with tarfile.open(out / "dataset.tar", "w") as tar, tempfile.TemporaryDirectory() as tmp:
        for split, share in (("test", args.test_share), ("train", 1 - args.test_share)):
            manifest = root / "manifests" / f"fixed-{split}.parquet"  # what benchmarks/learning.py reads
            table = pq.read_table(manifest)
            print(f"{manifest.name}:")
            chosen, used = pack_manifest(table, root, int(budget * share), video_cap, first[split], frame_cost)
            ids = {r["sample_id"] for rows, _ in chosen.values() for r in rows}
            kept = table.filter(pa.array([s in ids for s in table["sample_id"].to_pylist()]))
            buffer = io.BytesIO()
            pq.write_table(kept, buffer)
            add_bytes(tar, f"dataset/manifests/{manifest.name}", buffer.getvalue())
            for rows, frames in chosen.values():
                for row in rows:
                    tar.add(root / row["blurry_path"], arcname=f"dataset/{row['blurry_path']}")
                store = rows[0]["sharp_store"]
                write_subset(root / store, frames, Path(tmp) / "store.bin", encode=webp_lossless)
                tar.add(Path(tmp) / "store.bin", arcname=f"dataset/{store}")
                tar.add(index_path(Path(tmp) / "store.bin"), arcname=f"dataset/{index_path(store)}")
            print(f"  {kept.num_rows} of {table.num_rows} windows, {len(chosen)} videos, {used / 2**20:.1f} MiB")
        if Path(args.landmarks_report).is_file():
            tar.add(args.landmarks_report, arcname="dataset/landmarks_report.json")
    print(f"wrote {out / 'dataset.tar'} ({(out / 'dataset.tar').stat().st_size / 2**20:.1f} MiB)")
    if not args.no_wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
                        "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                        "--python-version", "3.12", "--implementation", "cp", "-d", str(out / "wheels"), *WHEELS],
                       check=True)
        total = sum(f.stat().st_size for f in (out / "wheels").glob("*.whl"))
        print(f"wheels in {out / 'wheels'}: {total / 2**20:.1f} MiB")
    bundle = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    tree = tree_bytes()
    print(f"the device copy: working tree {tree / 2**20:.1f} MiB + bundle {bundle / 2**20:.1f} MiB = "
          f"{(tree + bundle) / 2**20:.1f} MiB (limit {LIMIT_MIB:g})")
    if tree + bundle > LIMIT_MIB * 2**20:
        raise SystemExit(f"the device copy would be {(tree + bundle) / 2**20:.1f} MiB, over {LIMIT_MIB:g}: lower --budget-mib")


if __name__ == "__main__":
    main()
