"""Checkpoints: everything a run needs to continue exactly where it stopped.

One file, `<dir>/last.pt`, written atomically (temporary file, then rename), holding the
networks, optimisers, schedulers, step, epoch, RNG states (python, numpy, torch, cuda), the
params, the perceptual-loss resolution and a fingerprint of what the run computes. A stage
resumes from it when the fingerprint matches (same params apart from `RESUMABLE_ACROSS`,
same training samples, same perceptual loss) and starts afresh otherwise. A completed run
deletes it: the final weights are the stage's output, and the directory (a `persist: true`
DVC output) only ever holds an interrupted run. Delete the directory to force a fresh start.
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
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
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


def load(directory: str | Path, expected_fingerprint: str) -> dict | None:
    """The checkpoint in `directory` if it belongs to this run, else None (and it is removed)."""
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        return None
    # Our own file, holding numpy RNG state and python objects: full unpickling is needed.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("%s was made with other params or data: starting afresh", path)
        path.unlink(missing_ok=True)  # every process checks; any may remove it
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
