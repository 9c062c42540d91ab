"""Stage `blur_fixed`: fixed-window (CFMD-style) blurry samples for every video."""
import argparse
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.build import counts_by, run_method
from pipeline.fixed import CropParams, FixedParams, build_video
from pipeline.ingest import read_catalog
from pipeline.runtime import load_params, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalog", default="data/ingest/catalog.parquet")
    p.add_argument("--landmarks", default="data/landmarks")
    p.add_argument("--root", default="data/dataset", help="dataset root; writes <root>/fixed/")
    p.add_argument("--metrics", default="metrics/blur_fixed.json")
    return p


def main(args):
    setup_logging()
    params = load_params("crop", "blur", "compute")
    root = Path(args.root)
    shutil.rmtree(root / "fixed", ignore_errors=True)
    (root / "fixed").mkdir(parents=True)
    samples, stats, skipped = run_method(
        "fixed", build_video, read_catalog(args.catalog), args.landmarks, root,
        n_jobs=params["compute"]["n_jobs"], backend=params["compute"].get("backend"),
        p=FixedParams.from_params(params["blur"]), crop=CropParams.from_params(params["crop"]),
        png_level=int(params["blur"].get("png_level", 1)))
    pq.write_table(samples, root / "fixed" / "samples.parquet", compression="zstd")
    write_json(root / "fixed" / "skipped.json", skipped)
    write_json(args.metrics, {"windows": stats, "videos_skipped": len(skipped),
                              "samples": {"total": samples.num_rows, **counts_by(samples, "split", "n_frames")}})
    print(f"blur_fixed: {samples.num_rows} samples, {len(skipped)} videos skipped -> {root / 'fixed'}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
