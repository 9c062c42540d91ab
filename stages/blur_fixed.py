"""Stage `blur_fixed`: fixed-window (CFMD-style) blurry samples for every video."""
import argparse
import json
from pathlib import Path

from pipeline.dataset.run import build_stage
from pipeline.dataset.crop import CropParams
from pipeline.dataset.fixed import FixedParams, build_video, chunk_merger
from pipeline.dataset.fixed import merge_gate_records
from pipeline.dataset.ingest import read_catalog
from pipeline.dataset.interpolate import InterpParams
from pipeline.dataset.pngio import PngEncoder
from pipeline.stage import load_params, setup_logging


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
    fixed = FixedParams.from_params(params["blur"])
    build_stage("fixed", build_video, args.catalog, args.landmarks, args.root, args.metrics, params["compute"],
                min_frames=min(fixed.windows), merge_chunks=chunk_merger(fixed), p=fixed, crop=CropParams.from_params(params["crop"]),
                png=PngEncoder.from_params(params["blur"]), interp=InterpParams.from_params(params["blur"]))
    # per video: windows kept and dropped, sharpness distribution against the gate (the report reads it)
    skipped = json.loads((Path(args.root) / "fixed" / "skipped.json").read_text())
    merge_gate_records(args.root, "fixed", read_catalog(args.catalog), skipped)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
