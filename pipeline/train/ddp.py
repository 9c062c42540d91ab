"""Data-parallel training with torchrun; a plain single process without it.

    torchrun --nproc_per_node=K -m stages.train_cfmd [same arguments]

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; `init` then joins the process group (NCCL on
GPUs, gloo on CPU) and every process trains on its own share of each epoch (`EpochSampler`).
Without torchrun (or with one process) nothing is initialised and every helper is a no-op.

Gradients are averaged explicitly after each backward (`average_gradients`) instead of by
wrapping the networks in DistributedDataParallel: a GAN step runs the discriminator several
times per backward and switches its gradients off for the generator's step, which DDP's
one-forward-per-backward hooks do not allow. Batch-norm statistics stay per process; the
weights saved are rank 0's (parameters are identical on all ranks).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init() -> DistEnv:
    """Join the torchrun process group when launched with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    env = DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend)
    return env


def shutdown(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def broadcast_module(module: nn.Module, env: DistEnv) -> None:
    """Rank 0's parameters and buffers everywhere (after init or a resume)."""
    if env.active:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(module: nn.Module, env: DistEnv) -> None:
    """Mean of every parameter's gradient over the processes (one all-reduce per dtype)."""
    if not env.active:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    for dtype in {g.dtype for g in grads}:
        group = [g for g in grads if g.dtype == dtype]
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat /= env.world_size
        for g, synced in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(synced)


def mean_over_ranks(values: dict[str, torch.Tensor], env: DistEnv) -> dict[str, torch.Tensor]:
    """Per-process scalars (same keys on every rank) -> their mean over processes."""
    if not env.active or not values:
        return values
    stacked = torch.stack([values[k].float() for k in values])
    dist.all_reduce(stacked)
    return dict(zip(values, stacked / env.world_size))


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every process when it is true on one (so all stop at the same step)."""
    if not env.active:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)
