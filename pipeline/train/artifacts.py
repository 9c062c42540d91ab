"""What a finished training stage writes: the weights file, run metadata, small metrics; and the
errors a training stage reports in one line."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from pipeline.models.cfmd.deform_conv import deform_conv_backend
from pipeline.stage import write_json

from pipeline.train.ddp import DistEnv
from pipeline.models.device import Runtime
from pipeline.train.loop import FitResult


def save_weights(path: str | Path, kind: str, config: dict, modules: dict[str, nn.Module], **extra) -> Path:
    """{kind, config (constructor arguments), state_dicts, ...} written atomically; load with
    `torch.load(path, weights_only=True)`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}
    torch.save({"kind": kind, "config": config, "state_dicts": state, **extra}, tmp)
    os.replace(tmp, path)
    return path


def run_metadata(stage: str, params: dict, runtime: Runtime, env: DistEnv, result: FitResult, **extra) -> dict:
    return {
        "stage": stage,
        "params": params,
        "runtime": {**runtime.metadata(), "world_size": env.world_size},
        "deform_conv_backend": deform_conv_backend(),
        "training": result.metadata(),
        "final_losses": result.losses,
        **extra,
    }


def write_outputs(metadata_path, metrics_path, metadata: dict, result: FitResult) -> None:
    write_json(metadata_path, metadata)
    write_json(metrics_path, {
        "steps": result.step, "epochs": result.epoch, "seconds": round(result.seconds, 2),
        "images_per_s": round(result.images_per_s, 2), "data_wait_share": result.data_wait_share,
        "resolution": metadata.get("resolution"),
        # the held-out video's PSNR gain over the blurry input: the step kept, its gain, the last one's
        "validation": {k: v for k, v in result.validation.items() if k != "history"} if result.validation else None,
        "final": {k: v for k, v in result.losses.items() if k not in ("step", "epoch", "lr")},
    })


def add_stage_arguments(parser, section: str, model: str):
    """The command line every training stage shares; defaults follow `models/<model>.*`,
    `metrics/<section>.json` and `dvclive/<section>/`, as dvc.yaml declares them."""
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default="data/dataset", help="dataset root holding manifests/")
    parser.add_argument("--out", default=f"models/{model}.pt", help="final weights")
    parser.add_argument("--metadata", default=f"models/{model}.json", help="run metadata JSON")
    parser.add_argument("--metrics", default=f"metrics/{section}.json")
    parser.add_argument("--live", default=f"dvclive/{section}",
                        help="DVCLive directory: per-step metrics, loss curves, sample sheet (pipeline/train/log.py)")
    parser.add_argument("--checkpoints", default=f"models/checkpoints/{section}")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="save a checkpoint and exit after this many steps (rerun to resume)")
    return parser


def live_staging(checkpoints: str | Path) -> Path:
    """Where a run in progress keeps its DVCLive log: beside its checkpoint (`TrainLog(staging=)`)."""
    return Path(checkpoints) / "live"


@contextlib.contextmanager
def one_line_errors(section: str):
    """A training stage's input problems (no rows, a test video for validation, crop_size above the
    images, a missing or wrong weights file, an unreadable sample or checkpoint) and a diverged run
    end it with one line, `<section>: <message>`, and exit status 1. Anything else (a bug, a full
    disk) keeps its traceback."""
    from pipeline.dataset.manifest import SampleReadError
    from pipeline.models.device import DeviceUnavailable
    from pipeline.models.weights import ModelFileError
    from pipeline.train.checkpoint import CheckpointError
    from pipeline.train.config import TrainingSetupError
    from pipeline.train.loop import TrainingDiverged

    try:
        yield
    except (TrainingSetupError, TrainingDiverged, CheckpointError, SampleReadError, ModelFileError,
            DeviceUnavailable) as e:
        raise SystemExit(f"{section}: {e}") from None
