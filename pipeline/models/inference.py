"""Trained weights files -> a model that restores blurry face crops.

The training stages write `{kind, config, state_dicts}` (`pipeline.train.artifacts.save_weights`):
kind `cfmd_gan` (CFMD-GAN: generator G(b, u)) or `chrysos_gan` (Chrysos et al.: the frozen
hourglass and the two-pathway generator, of which only G_bl is used at test time). `load_model`
rebuilds the network from the recorded constructor arguments and returns a `DeblurModel`:

    model = load_model("models/cfmd.pt")              # device auto: CUDA (bf16) when present
    restored = model.restore(blurry, u)               # float Bx3xHxW in [0, 1] -> same, clamped

Inputs whose size the network cannot take (CFMD: multiples of 4; Chrysos: multiples of the
generator's 2**levels, 128 at the paper's seven, and of the hourglass's 2**depth) are
reflect-padded and the output cropped back. `resolution` is the image size the model was trained
at (the weights record it; older files: None), the size `pipeline.deblur` restores face crops at.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.models.common import to_float, to_uint8
from pipeline.models.device import Runtime, resolve_runtime
from pipeline.models.weights import ModelFileError, read_weights, state_dict_of  # noqa: F401 (ModelFileError: re-exported)

MODEL_NAMES = {"cfmd_gan": "cfmd", "chrysos_gan": "chrysos"}
DEFAULT_WEIGHTS = {"cfmd": "models/cfmd.pt", "chrysos": "models/chrysos_gan.pt"}
TRAIN_STAGE = {"cfmd": "train_cfmd", "chrysos": "train_chrysos_gan"}


class DeblurModel:
    """A loaded model: `name` ('cfmd' | 'chrysos'), `multi_output` (takes u), `restore`."""

    def __init__(self, name: str, kind: str, path: Path, networks: dict, runtime: Runtime, size_multiple: int,
                 resolution: int | None = None):
        self.name, self.kind, self.path = name, kind, path
        self.networks, self.runtime, self.size_multiple = networks, runtime, size_multiple
        self.resolution = resolution
        self.multi_output = name == "cfmd"

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def parameters(self) -> int:
        return sum(p.numel() for n in self.networks.values() for p in n.parameters())

    def metadata(self) -> dict:
        return {"name": self.name, "kind": self.kind, "parameters": self.parameters(), "trained_at": self.resolution,
                "device": str(self.device), "dtype": str(self.runtime.amp_dtype or torch.float32).replace("torch.", "")}

    @torch.no_grad()
    def restore(self, blurry: torch.Tensor, u=None) -> torch.Tensor:
        """Bx3xHxW float in [0, 1] (any device) -> restored Bx3xHxW float32 in [0, 1] on the device.

        CFMD-GAN needs u (a number or B values in [0, 1]); the Chrysos model ignores it.
        """
        x = blurry.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if max(pad_h, pad_w) < min(h, w) else "replicate")
        x = self.runtime.images(x)
        with self.runtime.autocast():
            if self.multi_output:
                if u is None:
                    raise ValueError("CFMD-GAN needs u, the moment to restore (0 = first, 1 = last)")
                u = torch.as_tensor(u, dtype=torch.float32, device=self.device).reshape(-1).expand(len(x))
                out = self.networks["generator"](x, u)[-1]
            else:
                coarse = self.networks["hourglass"](x)[-1]
                out = self.networks["generator"](x, coarse)
        out = out.float()[..., :h, :w]
        if not bool(torch.isfinite(out).all()):  # never an all-black image passed off as a restoration
            raise ModelFileError(f"{self.path}: the {self.kind} model returned non-finite values (NaN or inf) on this "
                                 "input")
        return out.clamp(0, 1).contiguous()


def load_model(path: str | Path, device: str = "auto", amp: str = "auto", channels_last="auto") -> DeblurModel:
    """Rebuild a trained model from its weights file (see module doc); errors name the file."""
    from pipeline.models.cfmd.generator import CFMDGenerator
    from pipeline.models.chrysos.gan import ChrysosGenerator
    from pipeline.models.chrysos.hourglass import StackedHourglass

    path = Path(path)
    saved = read_weights(path, tuple(MODEL_NAMES), "train them with `dvc repro train_cfmd` or `dvc repro "
                         "train_chrysos_gan`, or pass the path of a weights file")
    kind, config = saved["kind"], saved["config"]
    runtime = resolve_runtime(device, amp, channels_last)
    name = MODEL_NAMES[kind]
    try:
        if name == "cfmd":
            generator = CFMDGenerator(**config["generator"])
            generator.load_state_dict(state_dict_of(saved, "generator", path))
            networks, multiple = {"generator": generator}, 4
        else:
            hourglass = StackedHourglass(**config["hourglass"])
            hourglass.load_state_dict(state_dict_of(saved, "hourglass", path))
            generator = ChrysosGenerator(**config["generator"])
            generator.load_state_dict(state_dict_of(saved, "generator", path))
            networks = {"hourglass": hourglass.freeze(), "generator": generator}
            depth = int(config["hourglass"].get("depth", 4))
            multiple = max(generator.size_multiple, 2 ** depth)
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path}: '{kind}' weights do not match their recorded config "
                             f"({type(e).__name__}: {e})") from None
    networks = {k: runtime.module(v.eval().requires_grad_(False)) for k, v in networks.items()}
    return DeblurModel(name, kind, path, networks, runtime, multiple, config.get("resolution"))


def restore_many(model: DeblurModel, blurry: np.ndarray, us: list[float | None], batch_size: int) -> np.ndarray:
    """The blurry uint8 image restored at each u (one image for the Chrysos model): NxHxWx3 uint8."""
    x = to_float(blurry, model.device)
    out = []
    for i in range(0, len(us), batch_size):
        chunk = us[i:i + batch_size]
        u = torch.tensor(chunk, dtype=torch.float32) if model.multi_output else None
        out.append(to_uint8(model.restore(x.expand(len(chunk), -1, -1, -1), u)))
    return np.concatenate(out)
