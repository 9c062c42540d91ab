"""Stage `evaluate@<model>`: score a trained model on the test split (DVC metrics, plots, sheet).

Reads params section `evaluate` (and `crop.widen`, for the fallback face box). Restores test
samples with the model (batched, bf16 on GPU), scores them against their ground truth with PSNR,
SSIM, FID, LPIPS (when its weights are on disk), dlib identity distance and Chrysos et al.'s
landmark error, and writes:

- `--metrics`: the papers' tables per method (`fixed`, `vla`), per N and over all N, with the
  blurry input as a baseline row (DVC metrics: `dvc metrics diff`, `dvc exp show`);
- `--results`: one parquet row per (sample, table, system, target frame);
- `--plots`: `<model>_<method>_vs_n.csv` (PSNR/SSIM vs N) and `<model>_ced.csv` (landmark CED);
- `--sheet`: a PNG of blurry inputs, restorations and ground truth.

    python -m stages.evaluate --model cfmd --weights models/cfmd.pt
"""
import argparse
import logging

from pipeline.eval.config import EvalConfig
from pipeline.eval.scoring import evaluate
from pipeline.eval.tables import WORSE_DB, summary
from pipeline.models.inference import DEFAULT_WEIGHTS, ModelFileError, load_model
from pipeline.dataset.manifest import SampleReadError
from pipeline.eval.outputs import example_rows, plot_paths, write_examples, write_plots, write_records
from pipeline.stage import load_params, replacing_outputs, setup_logging, write_json

SECTION = "evaluate"
log = logging.getLogger(SECTION)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(DEFAULT_WEIGHTS), help="which model the weights are")
    p.add_argument("--weights", default=None, help="weights file (default: models/cfmd.pt / models/chrysos_gan.pt)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--root", default="data/dataset", help="dataset root holding manifests/")
    p.add_argument("--metrics", default=None, help="metrics JSON (default metrics/eval_<model>.json)")
    p.add_argument("--results", default=None, help="per-pair parquet (default results/eval_<model>.parquet)")
    p.add_argument("--plots", default="reports/eval", help="folder for the dvc plots CSVs")
    p.add_argument("--sheet", default=None, help="PNG of examples (default <plots>/<model>_examples.png)")
    return p


def main(args):
    setup_logging()
    params = load_params(SECTION, "crop", path=args.params)
    cfg = EvalConfig.from_params(params[SECTION], params["crop"])
    weights = args.weights or DEFAULT_WEIGHTS[args.model]
    metrics = args.metrics or f"metrics/eval_{args.model}.json"
    results = args.results or f"results/eval_{args.model}.parquet"
    sheet = args.sheet or f"{args.plots}/{args.model}_examples.png"

    try:
        model = load_model(weights, cfg.device, cfg.amp, cfg.channels_last)
        if model.name != args.model:
            raise ValueError(f"{weights}: holds a {model.kind} model, not {args.model}")
        ev = evaluate(model, args.root, cfg)
        result = summary(ev, cfg, model.name)
        # every output of this run swapped in together at the end: a run that fails part-way (a
        # sheet path under a file, a full disk) leaves the previous run's files, all of them
        with replacing_outputs() as outputs:
            write_records(outputs.path(results), ev)
            plots = plot_paths(args.plots, model.name, cfg.methods)
            write_plots({k: outputs.path(p) for k, p in plots.items()}, result, ev, cfg, model.name)
            write_examples(outputs.path(sheet), model, example_rows(ev.rows, cfg.sheet_samples), args.root, cfg)
            write_json(outputs.path(metrics), result)
    except (ModelFileError, SampleReadError, ValueError) as e:
        raise SystemExit(f"{SECTION}: {e}") from None
    for method in cfg.methods:
        for table, systems in result.get(method, {}).items():
            board = systems.get("scoreboard", {})
            for system, cells in systems.items():
                if system == "scoreboard":
                    continue
                c = cells["all"]
                log.info("%-5s %-13s %-7s n=%-4d PSNR %s SSIM %s FID %s id %s lmk AUC %s", method, table, system,
                         c["n"], c["psnr"], c["ssim"], c["fid"], c["identity_dist"], c["landmark_auc"])
            for name, c in [("all", board.get("all")), ("blurriest third", board.get("blurriest_third")),
                            *[(f"band {k}", v) for k, v in board.get("bands", {}).items()],
                            *[(f"video {k}", v["all"]) for k, v in board.get("videos", {}).items()]]:
                if c and c["n"]:
                    log.info("%-5s %-13s gain %-38s n=%-4d %+.3f dB (blurry %.2f) SSIM %+.4f, worse > %.1f dB: %.0f%%",
                             method, table, name, c["n"], c["gain"], c["blurry_psnr"], c["ssim_gain"], WORSE_DB,
                             100 * c["worse_share"])
    for method, c in result.get("sharp_input", {}).items():
        if c["n"]:
            log.info("%-5s no harm: the sharp frame as input, n=%d: restoration %.2f dB from it; that change costs a "
                     "40 dB input %+.3f dB (more than %.1f dB in %.0f%% of windows)", method, c["n"], c["psnr"],
                     c["change_at_40"], WORSE_DB, 100 * c["worse_share"])
    log.info("wrote %s, %s, %s and plots in %s in %.1f s", metrics, results, sheet, args.plots, ev.seconds)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
