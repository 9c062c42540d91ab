"""Stage `report`: dataset summary metrics, DVC plot tables and contact sheets."""
import argparse
import json
from pathlib import Path

from pipeline.dataset.manifest import read_manifests
from pipeline.dataset.report import hold_records, summary, write_gate_report, write_hold_plot, write_plots, write_sheets
from pipeline.stage import replacing_dir, setup_logging, write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--ingest-metrics", default="metrics/ingest.json")
    p.add_argument("--landmarks-metrics", default="metrics/landmarks.json")
    p.add_argument("--landmarks-report", default="data/landmarks/report.json", help="per video: held frames")
    p.add_argument("--plots", default="reports/plots")
    p.add_argument("--sheets", default="reports/sheets")
    p.add_argument("--metrics", default="metrics/report.json")
    p.add_argument("--examples", type=int, default=4, help="samples per method on each contact sheet")
    return p


def main(args):
    setup_logging()
    table = read_manifests(args.root)
    ingest = json.loads(Path(args.ingest_metrics).read_text())
    landmarks = json.loads(Path(args.landmarks_metrics).read_text())
    report = Path(getattr(args, "landmarks_report", None) or "data/landmarks/report.json")
    holds = hold_records(json.loads(report.read_text()) if report.is_file() else {})
    # both folders are written beside the old ones and swapped in together at the end (their
    # outputs are `persist`: DVC leaves them in place, so a failed run must not half-write them)
    with replacing_dir(args.plots) as plots, replacing_dir(args.sheets) as sheet_dir:
        write_plots(table, plots)
        write_hold_plot(holds, plots)
        # per video: the sharpness gate's values against its threshold, windows kept / dropped, and the
        # videos that gave no samples with the reason (CSV plots, sheets/sharpness_gate.png, metrics)
        gate = write_gate_report(args.root, plots, sheet_dir)
        sheets = write_sheets(table, args.root, sheet_dir, args.examples)
    write_json(args.metrics, {**summary(table, ingest, landmarks), "per_video": gate, "holds": holds})
    for method, g in gate.items():
        for vid, why in g["videos_without_samples"].items():
            print(f"report: {method}: {vid} gave no samples: {why}")
    sheets = [Path(args.sheets) / Path(s).name for s in sheets]
    print(f"report: {table.num_rows} samples; plots in {args.plots}; sheets: {', '.join(map(str, sheets))}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
