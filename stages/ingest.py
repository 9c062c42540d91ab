"""Stage `ingest`: catalog the videos under a folder, split them, list rejects."""
import argparse
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.dataset.ingest import build_catalog
from pipeline.stage import load_params, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", required=True, help="folder of videos / image sequences (ingest.source)")
    p.add_argument("--out", default="data/ingest", help="folder for catalog.parquet and rejects.json")
    p.add_argument("--metrics", default="metrics/ingest.json")
    return p


def main(args):
    setup_logging()
    params = load_params("ingest", "compute")
    catalog, rejects = build_catalog(args.source, params["ingest"], params["compute"]["n_jobs"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
          f"{len(rejects)} rejected -> {out}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
