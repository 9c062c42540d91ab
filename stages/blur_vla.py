"""Stage `blur_vla`: variable-length averaging (Chrysos et al.) samples for every video."""
import argparse
import json
from pathlib import Path

from pipeline.dataset.run import build_stage
from pipeline.dataset.crop import CropParams
from pipeline.dataset.vla import VLAParams, build_video
from pipeline.dataset.fixed import merge_gate_records
from pipeline.dataset.ingest import read_catalog
from pipeline.dataset.interpolate import InterpParams
from pipeline.dataset.pngio import PngEncoder
from pipeline.stage import load_params, setup_logging


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--catalog", default="data/ingest/catalog.parquet")
    p.add_argument("--landmarks", default="data/landmarks")
    p.add_argument("--root", default="data/dataset", help="dataset root; writes <root>/vla/")
    p.add_argument("--metrics", default="metrics/blur_vla.json")
    return p


def main(args):
    setup_logging()
    params = load_params("crop", "blur", "compute")
    vla = VLAParams.from_params(params["blur"])
    build_stage("vla", build_video, args.catalog, args.landmarks, args.root, args.metrics, params["compute"],
                min_frames=vla.min_len, p=vla, crop=CropParams.from_params(params["crop"]),
                png=PngEncoder.from_params(params["blur"]), interp=InterpParams.from_params(params["blur"]))
    # per video: windows kept and dropped, sharpness distribution against the gate (the report reads it)
    skipped = json.loads((Path(args.root) / "vla" / "skipped.json").read_text())
    merge_gate_records(args.root, "vla", read_catalog(args.catalog), skipped)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
