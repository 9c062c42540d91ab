"""Checkpoints: everything a run needs to continue exactly where it stopped.

One file, `<dir>/last.pt`, written atomically (temporary file, then rename), holding the
networks, optimisers, schedulers, step, epoch, RNG states (python, numpy, torch, cuda), the
params, the perceptual-loss resolution and a fingerprint of what the run computes. A stage
resumes from it when the fingerprint matches (same params apart from `RESUMABLE_ACROSS`,
same training samples with the same bytes: `data_digest`, same perceptual loss) and starts
afresh otherwise, keeping the other run's file aside as `stale-<fingerprint>.pt` (said in the
log). A completed run deletes `last.pt`: the final weights are the stage's output, and the
directory (a `persist: true` DVC output) only ever holds an interrupted run. Delete the
directory to force a fresh start.

Everything in the file is tensors, numbers, strings, lists, tuples and dicts (the numpy RNG
state is stored as a list), so it loads with `torch.load(weights_only=True)`: a `last.pt` that
someone swapped for a malicious pickle is refused, never run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from pipeline.train.config import RESUMABLE_ACROSS

log = logging.getLogger(__name__)
CHECKPOINT = "last.pt"
NOTE = "README.txt"


def fingerprint(params: dict, sample_ids: list[str], **extra) -> str:
    """Hash of what determines a run's trajectory."""
    relevant = {k: v for k, v in params.items() if k not in RESUMABLE_ACROSS}
    payload = json.dumps({"params": relevant, "samples": sorted(sample_ids), **extra}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def data_digest(root: str | Path, rows: list[dict]) -> str:
    """sha256 over the bytes of every file the rows read (blurry images, sharp frame stores): a
    dataset rebuilt with the same sample ids but other pixels (`-S blur.gamma=2.2`) is another run."""
    files = sorted({r["blurry_path"] for r in rows} | {r["sharp_store"] for r in rows if r.get("sharp_store")})
    digest = hashlib.sha256()
    for name in files:
        path = Path(root) / name
        digest.update(f"{name}\0{file_digest(path) if path.is_file() else 'missing'}\n".encode())
    return digest.hexdigest()


def rng_state() -> dict:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(directory: str | Path, state: dict) -> Path:
    path = Path(directory) / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({**state, "rng": rng_state()}, tmp)
    os.replace(tmp, path)
    return path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely (not ours, damaged, or holding arbitrary objects)."""


def load(directory: str | Path, expected_fingerprint: str, keep_aside: bool = True) -> dict | None:
    """The checkpoint in `directory` if it belongs to this run, else None. A checkpoint of another
    run (other params or data) is renamed `stale-<its fingerprint>.pt` beside it (by the process
    that `keep_aside`, rank 0), so a changed param never destroys hours of training. A file that
    does not load with `weights_only=True` raises CheckpointError: nothing in it is run."""
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:  # another process (rank 0) kept it aside meanwhile: not this run's
        return None
    except Exception as e:  # noqa: BLE001 - an unpickling refusal, a damaged file: never run, never guessed at
        raise CheckpointError(
            f"{path}: not a checkpoint this project can load safely ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); it was not run. Move it away (or delete "
            f"{Path(directory)}) to start afresh") from None
    found = state.get("fingerprint") if isinstance(state, dict) else None
    if found != expected_fingerprint:
        aside = path.with_name(f"stale-{str(found)[:12]}.pt")
        if keep_aside:
            os.replace(path, aside)
        log.warning("%s was made with other params or data (fingerprint %s, this run %s): kept aside as %s; "
                    "starting afresh (delete it when it is not needed)", path, str(found)[:12],
                    expected_fingerprint[:12], aside.name)
        return None
    return state


def clear(directory: str | Path) -> None:
    """After a completed run: drop the checkpoint, leave a note (DVC tracks the directory)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CHECKPOINT).unlink(missing_ok=True)
    (directory / NOTE).write_text(
        "Checkpoints of an interrupted training run appear here (last.pt); rerunning the stage\n"
        "resumes from them. A completed run removes them: its weights are under models/.\n")
