"""Stage `train_cfmd`: train CFMD-GAN (Lee, Han & Heo 2022) on the fixed/VLA manifests.

Reads params section `train_cfmd`. Writes the generator and discriminator weights, run
metadata (params, device, dtype, perceptual loss used and why, deform-conv backend, steps,
final losses), small metrics, and a DVCLive log in --live (per-step losses, the weights
registered as a model artifact, and a PNG sheet of test restorations at several u next to their
ground truth). An interrupted run (Ctrl-C, SIGTERM, --stop-after) leaves a checkpoint in
--checkpoints; rerunning resumes from it and continues the same log.

Multi-GPU, same arguments:  torchrun --nproc_per_node=K -m stages.train_cfmd
(`steps` count global steps; each process takes batch_size samples per step.)
"""
import argparse
import logging

from pipeline.models.cfmd.losses import resolve_perceptual
from pipeline.stage import load_params, replacing_outputs, setup_logging
from pipeline.train import checkpoint, ddp
from pipeline.train.artifacts import (add_stage_arguments, live_staging, one_line_errors, run_metadata, save_weights,
                                      write_outputs)
from pipeline.models.cfmd.task import CFMDConfig, CFMDTask, cfmd_sheet, config_record
from pipeline.train.data import FaceDeblurDataset, training_and_validation_rows
from pipeline.models.device import resolve_runtime
from pipeline.train.log import TrainLog
from pipeline.train.loop import fit, stopped_exit
from pipeline.sheets import sheet_rows

SECTION = "train_cfmd"
log = logging.getLogger("train_cfmd")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_arguments(p, SECTION, "cfmd")
    return p


def main(args):
    setup_logging()
    with one_line_errors(SECTION):
        train(args)


def train(args):
    params = load_params(SECTION, path=args.params)[SECTION]
    cfg = CFMDConfig.from_params(params)
    env = ddp.init()
    runtime = resolve_runtime(**vars(cfg.runtime), local_rank=env.local_rank)
    checkpoint.seed_everything(cfg.loop.seed)

    perceptual = resolve_perceptual(cfg.perceptual, cfg.lpips_net)
    log.info("perceptual loss: %s (%s)", perceptual.used, perceptual.reason)
    rows, held_out = training_and_validation_rows(args.root, cfg.loop.methods, cfg.loop.validation_video)
    dataset = FaceDeblurDataset(rows, args.root, target="moment", degrade=cfg.loop.degrade,
                                identity_share=cfg.loop.identity_share, resolution=cfg.loop.resolution)
    validation = FaceDeblurDataset(held_out, args.root, target="moment", resolution=cfg.loop.resolution)
    task = CFMDTask(cfg, runtime, env, perceptual.loss)
    log.info("%d training samples (%s); %s", len(rows), ",".join(cfg.loop.methods), runtime.metadata())

    with TrainLog(args.live, staging=live_staging(args.checkpoints)) as live:
        result = fit(task, dataset, cfg.loop, runtime, env, workers=cfg.runtime, checkpoint_dir=args.checkpoints,
                     live=live, params=params, desc=SECTION, validation=validation,
                     fingerprint=checkpoint.fingerprint(params, [r["sample_id"] for r in rows],
                                                        data=checkpoint.data_digest(args.root, rows + held_out),
                                                        perceptual=perceptual.used, world_size=env.world_size),
                     extra_state={"perceptual": perceptual.metadata()}, stop_after=args.stop_after)
        if not result.completed:
            ddp.shutdown(env)
            raise stopped_exit(SECTION, result, args.checkpoints)  # 130 / 143 after SIGINT / SIGTERM

        if env.is_main:
            record = {**config_record(cfg), "resolution": dataset.image_size}
            with replacing_outputs() as outputs:  # weights, metadata, metrics and log: all of them or none
                save_weights(outputs.path(args.out), "cfmd_gan", record, task.modules)
                live.artifact(args.out, type="model", name="cfmd", desc="CFMD-GAN generator and discriminator")
                sheet = cfg.sheet or {}
                shown = sheet_rows(args.root, cfg.loop.methods, sheet.get("samples", 3))
                u_values = sheet.get("u", [0, 0.25, 0.5, 0.75, 1])
                live.sheet(cfmd_sheet(task.generator, shown, args.root, runtime.device, u_values, dataset.resolution))
                metadata = run_metadata(SECTION, params, runtime, env, result, perceptual=perceptual.metadata(),
                                        training_samples=len(rows), **record)
                write_outputs(outputs.path(args.metadata), outputs.path(args.metrics), metadata, result)
                live.publish(outputs)
            log.info("wrote %s, %s, log in %s; final losses %s", args.out, args.metadata, args.live, result.losses)
    ddp.shutdown(env)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
