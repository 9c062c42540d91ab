"""Stage `train_chrysos_gan`: step 2 of Chrysos, Favaro & Zafeiriou (2019), the two-pathway
conditional GAN on top of the frozen hourglass from `train_chrysos_hg`.

Reads params section `train_chrysos_gan` (the hourglass comes from its weights file, so a
cGAN param never retrains the hourglass). Writes a self-contained weights file (generator,
discriminator and the hourglass it was trained with; only the hourglass and G_bl are needed
at test time), run metadata with the loss weights, small metrics, and a DVCLive log in --live
(per-step losses, the weights registered as a model artifact, a PNG sheet: blurry | hourglass |
G_bl | sharp). Interrupted runs resume and continue the same log.

Multi-GPU, same arguments:  torchrun --nproc_per_node=K -m stages.train_chrysos_gan
"""
import argparse
import logging

from pipeline.stage import load_params, replacing_outputs, setup_logging
from pipeline.train import checkpoint, ddp
from pipeline.train.artifacts import (add_stage_arguments, live_staging, one_line_errors, run_metadata, save_weights,
                                      write_outputs)
from pipeline.models.chrysos.task import (ChrysosGANConfig, ChrysosGANTask, chrysos_sheet, crop_size_warning, load_hourglass,
                                          loss_weights_record)
from pipeline.train.data import FaceDeblurDataset, training_and_validation_rows
from pipeline.models.device import resolve_runtime
from pipeline.train.log import TrainLog
from pipeline.train.loop import fit, stopped_exit
from pipeline.sheets import sheet_rows

SECTION = "train_chrysos_gan"
log = logging.getLogger(SECTION)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_arguments(p, SECTION, "chrysos_gan")
    p.add_argument("--hourglass", default="models/chrysos_hourglass.pt", help="step-1 weights")
    return p


def main(args):
    setup_logging()
    with one_line_errors(SECTION):
        train(args)


def train(args):
    params = load_params(SECTION, path=args.params)[SECTION]
    cfg = ChrysosGANConfig.from_params(params)
    env = ddp.init()
    runtime = resolve_runtime(**vars(cfg.runtime), local_rank=env.local_rank)
    checkpoint.seed_everything(cfg.loop.seed)

    hourglass, hourglass_config = load_hourglass(args.hourglass, runtime.device)
    rows, held_out = training_and_validation_rows(args.root, cfg.loop.methods, cfg.loop.validation_video)
    dataset = FaceDeblurDataset(rows, args.root, target="middle", degrade=cfg.loop.degrade,
                                identity_share=cfg.loop.identity_share, resolution=cfg.loop.resolution)
    validation = FaceDeblurDataset(held_out, args.root, target="middle", resolution=cfg.loop.resolution)
    cfg = cfg.at_resolution(dataset.image_size)  # generator.levels: null follows the images' size
    task = ChrysosGANTask(cfg, runtime, env, hourglass)
    log.info("%d training samples (%s); %s", len(rows), ",".join(cfg.loop.methods), runtime.metadata())
    if rows and (warning := crop_size_warning(cfg.loop.crop_size, dataset.image_size, cfg.generator["levels"])):
        log.warning(warning)

    with TrainLog(args.live, staging=live_staging(args.checkpoints)) as live:
        result = fit(task, dataset, cfg.loop, runtime, env, workers=cfg.runtime, checkpoint_dir=args.checkpoints,
                     live=live, params=params, desc=SECTION, validation=validation, stop_after=args.stop_after,
                     fingerprint=checkpoint.fingerprint(params, [r["sample_id"] for r in rows],
                                                        data=checkpoint.data_digest(args.root, rows + held_out),
                                                        world_size=env.world_size,
                                                        hourglass=checkpoint.file_digest(args.hourglass)))
        if not result.completed:
            ddp.shutdown(env)
            raise stopped_exit(SECTION, result, args.checkpoints)  # 130 / 143 after SIGINT / SIGTERM

        if env.is_main:
            record = {"generator": cfg.generator, "discriminator": cfg.discriminator, "hourglass": hourglass_config,
                      "loss_weights": loss_weights_record(cfg), "resolution": dataset.image_size}
            with replacing_outputs() as outputs:  # weights, metadata, metrics and log: all of them or none
                save_weights(outputs.path(args.out), "chrysos_gan", record, {**task.modules, "hourglass": task.hourglass})
                live.artifact(args.out, type="model", name="chrysos-gan",
                              desc="Chrysos et al. step 2: two-pathway cGAN with its frozen hourglass")
                rows_shown = sheet_rows(args.root, cfg.loop.methods, (cfg.sheet or {}).get("samples", 4))
                live.sheet(chrysos_sheet(task.hourglass, task.generator, rows_shown, args.root, runtime.device,
                                         dataset.resolution))
                write_outputs(outputs.path(args.metadata), outputs.path(args.metrics),
                              run_metadata(SECTION, params, runtime, env, result, training_samples=len(rows), **record),
                              result)
                live.publish(outputs)
            log.info("wrote %s, %s, log in %s; final losses %s", args.out, args.metadata, args.live, result.losses)
    ddp.shutdown(env)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
