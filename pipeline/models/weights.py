"""Weights files as the training stages write them (`pipeline.train.artifacts.save_weights`:
`{kind, config, state_dicts, ...}`), read safely: `torch.load(weights_only=True)`, the kind checked,
the recorded config validated like params.yaml, the tensors used at test time finite."""
from __future__ import annotations

from pathlib import Path

import torch


class ModelFileError(FileNotFoundError):
    """A weights file is missing, unreadable or of a kind that cannot deblur."""


def state_dict_of(saved: dict, name: str, path: Path) -> dict:
    try:
        return saved["state_dicts"][name]
    except (KeyError, TypeError):
        raise ModelFileError(f"{path}: weights file has no '{name}' network") from None


# The networks each kind of weights file holds, and the NETWORKS schema (pipeline.params) of their
# recorded constructor arguments.
CONFIG_SCHEMA = {
    "cfmd_gan": {"generator": "cfmd_generator", "discriminator": "cfmd_discriminator"},
    "chrysos_hourglass": {"hourglass": "hourglass"},
    "chrysos_gan": {"generator": "chrysos_generator", "discriminator": "chrysos_discriminator",
                    "hourglass": "hourglass"},
}
USED_AT_TEST = {"cfmd_gan": ("generator",), "chrysos_hourglass": ("hourglass",),
                "chrysos_gan": ("hourglass", "generator")}


def read_weights(path: str | Path, kinds, missing_hint: str) -> dict:
    """A training stage's weights file, checked before any network is built from it: loaded with
    `weights_only=True`, of one of `kinds`, its recorded config validated like params.yaml (sizes,
    widths, depths, resolution: a damaged or hostile file cannot ask for gigabytes), and every
    tensor of the networks used at test time finite. ModelFileError naming the file otherwise."""
    from pipeline.params import TRAINING_RESOLUTION, ParamError, check_network

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model weights not found ({missing_hint})")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        kind, config = saved["kind"], saved["config"]
    except Exception as e:  # noqa: BLE001 - any failure here means "not a weights file we can use"
        raise ModelFileError(f"{path}: not a readable model weights file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if kind not in kinds:
        raise ModelFileError(f"{path}: holds a '{kind}' model, not {' or '.join(repr(k) for k in kinds)} weights")
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: its config is not a mapping")
    try:
        for key, network in CONFIG_SCHEMA[kind].items():
            if key in config:
                check_network(network, config[key], f"config.{key}")
        TRAINING_RESOLUTION.check("config.resolution", config.get("resolution"))
    except ParamError as e:
        raise ModelFileError(f"{path}: {e}") from None
    for name in USED_AT_TEST[kind]:
        state = state_dict_of(saved, name, path)
        bad = [k for k, t in state.items() if isinstance(t, torch.Tensor) and t.is_floating_point()
               and not bool(torch.isfinite(t).all())]
        if bad:
            raise ModelFileError(f"{path}: the {name}'s weights are not finite ({bad[0]}, {len(bad)} tensor(s) with "
                                 "NaN or inf): a diverged training run; retrain it")
    return saved


