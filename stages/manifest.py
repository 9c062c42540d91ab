"""Stage `manifest`: FMR-reorder every sample and write the validated parquet manifests, streaming."""
import argparse
from pathlib import Path

from pipeline.dataset.counts import group_counts, nested_counts
from pipeline.dataset.fmr import FMRParams
from pipeline.dataset.manifest import ManifestWriter, iter_fmr
from pipeline.stage import load_params, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", nargs="+", required=True, help="samples.parquet of each averaging method")
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--metrics", default="metrics/dataset.json", help="samples per split and method (a DVC metric)")
    p.add_argument("--by-n", default="metrics/dataset_by_n.json", help="samples per split, method and N (a data file)")
    return p


def main(args):
    setup_logging()
    fmr = FMRParams.from_params(load_params("manifest.fmr")["manifest.fmr"])
    writer = ManifestWriter(Path(args.root) / "manifests", root=args.root)
    counts: dict[tuple, int] = {}  # (split, method, n_frames) -> samples
    for path in args.samples:
        for batch in iter_fmr(path, fmr):
            writer.write(batch)
            for k, n in group_counts(batch, "split", "method", "n_frames").items():
                counts[k] = counts.get(k, 0) + n
    written = writer.close()
    by_method = {}
    for (split, method, _), n in counts.items():
        by_method[(split, method)] = by_method.get((split, method), 0) + n
    write_json(args.metrics, {
        "samples": {"total": sum(counts.values()), **nested_counts(by_method, "split", "method")},
        "sharp_frames": sum(int(k[2]) * n for k, n in counts.items()),
    })
    # per N: a plain file, not a DVC metric (dozens of keys would widen `dvc metrics show`)
    write_json(getattr(args, "by_n", None) or Path(args.metrics).with_name("dataset_by_n.json"),
               {"by_n": nested_counts(counts, "split", "method", "n_frames")})
    print(f"manifest: {writer.rows} samples -> {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
