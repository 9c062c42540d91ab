"""Stage `summary`: the headline metrics file (metrics/summary.json) from the stages' own metrics."""
import argparse
from pathlib import Path

from pipeline.stage import setup_logging, write_json
from pipeline.summary import MAX_COLUMNS, build_summary, read_json, show_width


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", default="metrics/dataset.json")
    p.add_argument("--eval", nargs="*", default=["metrics/eval_cfmd.json", "metrics/eval_chrysos.json"],
                   help="metrics/eval_<model>.json files (model = the name after eval_)")
    p.add_argument("--out", default="metrics/summary.json")
    return p


def main(args):
    setup_logging()
    evaluations = {Path(p).stem.removeprefix("eval_"): read_json(p) for p in args.eval}
    summary = build_summary(read_json(args.dataset), evaluations)
    width = show_width(summary)  # as `dvc metrics show` labels it, metrics/summary.json
    if width > MAX_COLUMNS:  # a key added without checking the table's width
        raise SystemExit(f"{args.out}: `dvc metrics show` would print {width} columns (> {MAX_COLUMNS}); shorten the keys")
    write_json(args.out, summary)
    print(f"summary: {args.out} ({width} columns in `dvc metrics show`)")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
