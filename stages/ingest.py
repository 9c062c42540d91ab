"""Stage `ingest`: catalog the videos under a folder, split them, list rejects.

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

from pipeline.dataset.ingest import build_catalog, list_source
from pipeline.dataset.video import VideoError
from pipeline.stage import load_params, replacing_dir, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="folder of videos / image sequences (ingest.source)")
    p.add_argument("--out", default="data/ingest", help="folder for catalog.parquet and rejects.json")
    p.add_argument("--metrics", default="metrics/ingest.json")
    p.add_argument("--list", default=None, metavar="FILE", help="only write the source listing to FILE")
    return p


def main(args):
    setup_logging()
    params = load_params("ingest", "compute")
    try:
        if getattr(args, "list", None):
            listing = list_source(args.source)
            Path(args.list).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(args.list + ".tmp")
            tmp.write_text(json.dumps(listing, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, args.list)
            print(f"sources: {len(listing['entries'])} entries under {args.source} -> {args.list}")
            return
        catalog, rejects = build_catalog(args.source, params["ingest"], params["compute"]["n_jobs"])
    except VideoError as e:  # the source folder itself: nothing written, the previous outputs kept
        raise SystemExit(f"ingest: {e}") from None
    with replacing_dir(args.out) as out:
        pq.write_table(catalog, out / "catalog.parquet")
        write_json(out / "rejects.json", rejects)
    splits = catalog["split"].to_pylist()
    write_json(args.metrics, {
        "videos": catalog.num_rows,
        "videos_rejected": len(rejects),
        "videos_train": splits.count("train"),
        "videos_test": splits.count("test"),
        "frames": int(sum(catalog["n_frames"].to_pylist())),
    })
    print(f"ingest: {catalog.num_rows} videos ({splits.count('train')} train, {splits.count('test')} test), "
          f"{len(rejects)} rejected -> {args.out}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
