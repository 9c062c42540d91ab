"""Make the bundle benchmarks/gpu_check.sh needs on a GPU machine without network or dvc:

    python benchmarks/gpu_pack.py                  # -> benchmarks/gpu/ (git-ignored, ~38 MiB)
    python benchmarks/gpu_pack.py --budget-mib 20  # a smaller dataset subset

Writes benchmarks/gpu/dataset.tar: a subset of the built dataset (data/dataset) with whole
videos, the smallest first, up to --budget-mib (train and test in the ratio of --test-share),
their manifests filtered to them; and benchmarks/gpu/wheels/: the pure-Python or cp312 wheels
of what the GPU machine lacks (kornia + kornia_rs for augmentation and SSIM, PyYAML for
params, tqdm, pytest and its dependencies, cloudpickle, python-dateutil, six), fetched with
`pip download --no-deps` for CPython 3.12 on manylinux x86_64. Training there runs without
dvclive (benchmarks/learning.py uses the tasks directly). The landmarks stage's report goes in too
(dataset/landmarks_report.json: which test videos are repeat-free). The whole working tree plus this
bundle must stay under the 64 MiB the device copy allows (carry `benchmarks/gpu`): the script prints
that total and fails above LIMIT_MIB.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

LIMIT_MIB = 62.0  # the device copy takes 64 MiB: working tree + bundle, with a margin


def tree_bytes() -> int:
    """What the device copy sends of the working tree: tracked and untracked-not-ignored files."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum(Path(n.decode()).stat().st_size for n in names if n and Path(n.decode()).is_file())


WHEELS = ["kornia", "kornia_rs", "pyyaml", "tqdm", "pytest", "pluggy", "iniconfig", "packaging", "cloudpickle",
          "python-dateutil", "six"]


def pick_videos(table: pa.Table, root: Path, budget: int) -> tuple[set[str], int]:
    """Whole videos, smallest (sharp stores + blurry PNGs) first, until `budget` bytes."""
    sizes: dict[str, int] = {}
    for row in table.select(["video_id", "sharp_store", "blurry_path"]).to_pylist():
        key = row["video_id"]
        sizes.setdefault(key, 0)
        sizes[key] += (root / row["blurry_path"]).stat().st_size
    stores = {r["video_id"]: r["sharp_store"] for r in table.select(["video_id", "sharp_store"]).to_pylist()}
    for key, store in stores.items():
        sizes[key] += (root / store).stat().st_size + (root / (store + ".index.parquet")).stat().st_size
    chosen, used = set(), 0
    for key in sorted(sizes, key=sizes.get):
        if used + sizes[key] > budget and chosen:
            continue
        chosen.add(key)
        used += sizes[key]
    return chosen, used


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--out", default="benchmarks/gpu")
    p.add_argument("--budget-mib", type=float, default=28.0, help="dataset subset size")
    p.add_argument("--landmarks-report", default="data/landmarks/report.json")
    p.add_argument("--test-share", type=float, default=0.3)
    p.add_argument("--no-wheels", action="store_true")
    args = p.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = int(args.budget_mib * 2**20)
    with tarfile.open(out / "dataset.tar", "w") as tar:
        for manifest in sorted((root / "manifests").glob("*.parquet")):
            table = pq.read_table(manifest)
            share = args.test_share if "-test" in manifest.name else 1 - args.test_share
            n_manifests = len(list((root / "manifests").glob(f"*-{manifest.stem.split('-')[1]}.parquet")))
            videos, used = pick_videos(table, root, int(budget * share / n_manifests))
            kept = table.filter(pa.array([v in videos for v in table["video_id"].to_pylist()]))
            buffer = io.BytesIO()
            pq.write_table(kept, buffer)
            info = tarfile.TarInfo(f"dataset/manifests/{manifest.name}")
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
            files = sorted({r["blurry_path"] for r in kept.to_pylist()} | {r["sharp_store"] for r in kept.to_pylist()})
            files += sorted({r["sharp_store"] + ".index.parquet" for r in kept.to_pylist()})
            for name in files:
                tar.add(root / name, arcname=f"dataset/{name}")
            print(f"{manifest.name}: {kept.num_rows} of {table.num_rows} samples, {len(videos)} videos, "
                  f"{used / 2**20:.1f} MiB")
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
