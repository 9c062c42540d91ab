"""Stage `ingest`: catalog the videos under a folder, split them, list rejects.

The folder is the param `ingest.source`, read from params.yaml (never through a shell: dvc.yaml's
command line holds no param value); `--source` overrides it when the script is run by hand.

`--list FILE` instead writes a listing of the source folder (every entry's relative path, size and
mtime, or why it cannot be read: a dangling or looping symbolic link) and stops: stage `sources`
runs it on every `dvc repro` and `ingest` depends on that listing rather than on the folder, so
DVC never hashes the folder itself (it aborts on a broken link, and deletes the ingest outputs
before failing on a missing folder).
"""
import argparse
import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.dataset.ingest import build_catalog, check_source, list_source
from pipeline.dataset.video import VideoError
from pipeline.stage import load_params, pipeline_outputs, replacing_dir, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=None, help="folder of videos / image sequences (default: ingest.source)")
    p.add_argument("--out", default="data/ingest", help="folder for catalog.parquet and rejects.json")
    p.add_argument("--metrics", default="metrics/ingest.json")
    p.add_argument("--list", default=None, metavar="FILE", help="only write the source listing to FILE")
    return p


def main(args):
    setup_logging()
    params = load_params("ingest", "compute")
    source = args.source if getattr(args, "source", None) is not None else str(params["ingest"]["source"])
    outputs = pipeline_outputs()
    try:
        check_source(source, outputs)
        if getattr(args, "list", None):
            listing = list_source(source, outputs)
            Path(args.list).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(args.list + ".tmp")
            tmp.write_text(json.dumps(listing, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, args.list)
            print(f"sources: {len(listing['entries'])} entries under {listing['source']} -> {args.list}")
            return
        catalog, rejects = build_catalog(source, params["ingest"], params["compute"]["n_jobs"], outputs)
    except VideoError as e:  # the source folder itself: nothing written, the previous outputs kept
        raise SystemExit(f"ingest: {e}") from None
    with replacing_dir(args.out) as out:
        pq.write_table(catalog, out / "catalog.parquet")
        write_json(out / "rejects.json", rejects)
    splits = catalog["split"].to_pylist()
    truncated = sum(t is not None for t in catalog["truncated"].to_pylist())
    write_json(args.metrics, {
        "videos": catalog.num_rows,
        "videos_rejected": len(rejects) - truncated,
        "videos_truncated": truncated,
        "videos_train": splits.count("train"),
        "videos_test": splits.count("test"),
        "frames": int(sum(catalog["n_frames"].to_pylist())),
    })
    print(f"ingest: {catalog.num_rows} videos ({splits.count('train')} train, {splits.count('test')} test; "
          f"{truncated} truncated), {len(rejects) - truncated} rejected -> {args.out}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
