"""Stage `manifest`: FMR-reorder every sample and write the validated parquet manifests."""
import argparse
from pathlib import Path

import pyarrow as pa

from pipeline.build import counts_by
from pipeline.fmr import FMRParams
from pipeline.manifest import fmr_table, write_manifests
from pipeline.runtime import load_params, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", nargs="+", required=True, help="samples.parquet of each averaging method")
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--metrics", default="metrics/dataset.json")
    return p


def main(args):
    setup_logging()
    fmr = FMRParams.from_params(load_params("manifest.fmr")["manifest.fmr"])
    table = pa.concat_tables([fmr_table(p, fmr) for p in args.samples])
    written = write_manifests(table, Path(args.root) / "manifests", root=args.root)
    n = table["n_frames"].to_numpy()
    write_json(args.metrics, {
        "samples": {"total": table.num_rows, **counts_by(table, "split", "method")},
        "sharp_frames": int(n.sum()) if len(n) else 0,
        "by_n": counts_by(table, "split", "method", "n_frames"),
    })
    print(f"manifest: {table.num_rows} samples -> {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
