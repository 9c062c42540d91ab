"""Where a run computes and how fast: device, autocast dtype, memory format, compile.

`auto` means: CUDA when present (the process's local GPU under torchrun), bf16 autocast and
channels_last there; fp32 and the default memory format on CPU. torch.compile is opt-in.
Losses are computed in fp32 by the tasks, outside autocast, whatever the network's dtype.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: fp32
    channels_last: bool
    compile: bool

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def module(self, module: nn.Module) -> nn.Module:
        """Move a network to the device (and memory format)."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def compiled(self, module: nn.Module):
        """The callable a step runs: torch.compile'd when asked (save the original module's weights)."""
        return torch.compile(module) if self.compile else module

    def metadata(self) -> dict:
        return {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "dtype": str(self.amp_dtype or torch.float32).replace("torch.", ""),
            "autocast": self.amp_dtype is not None,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "torch": torch.__version__,
        }


class DeviceUnavailable(ValueError):
    """The device asked for is not on this machine (cuda without a GPU)."""


def resolve_runtime(device: str = "auto", amp: str = "auto", channels_last="auto", compile: bool = False,
                    local_rank: int = 0, **_ignored) -> Runtime:
    """Settings (params `runtime` block) -> Runtime. Extra keys (num_workers) are ignored."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"runtime.device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable("device cuda: no CUDA device is available on this machine (torch "
                                    f"{torch.__version__}); use auto or cpu")
        torch.cuda.set_device(local_rank)
        torch.backends.cudnn.benchmark = True
    dev = torch.device(device, local_rank) if device == "cuda" else torch.device("cpu")
    gpu = dev.type == "cuda"
    if amp not in ("auto", "bf16", "none"):
        raise ValueError(f"runtime.amp must be auto, bf16 or none, got {amp!r}")
    amp_dtype = torch.bfloat16 if amp == "bf16" or (amp == "auto" and gpu and torch.cuda.is_bf16_supported()) else None
    cl = gpu if channels_last == "auto" else bool(channels_last)
    return Runtime(dev, amp_dtype, cl, bool(compile))
