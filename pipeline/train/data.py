"""Training items from the manifests, and the sampler that orders them.

An item is one manifest row's blurry image and ONE of its sharp frames (only that frame is
decoded, with `load_sharp`):

- target "moment" (CFMD-GAN): a random FMR position k; u = row.u[k];
- target "middle" (Chrysos et al.): the temporal middle frame, whose source index is
  start_frame + (N - 1) // 2 for fixed windows and the middle of the sorted frame_indices for
  VLA samples;
- target "centre": the FMR frame whose u is nearest 0.5, what CFMD-GAN's `centre_fmr` table
  scores (the reference U-Net of benchmarks/learning.py trains on it to be CFMD-GAN's like for
  like). It is not mirror-invariant: FMR re-sorts a mirrored window's frames by (-x, y, time),
  and where eye-corner x values tie (dlib's landmarks are whole pixels) the mirrored window's
  centre is another frame: in 60% of the embedded fixed training windows. Train it without flips.

Items also carry `u_flip`, the u the same frame gets once the image is mirrored (see
`flipped_position`), so the augmentation can flip without knowing the row.

Randomness never depends on which worker loads an item: `EpochSampler` hands the dataset
(index, item_seed) pairs, item_seed being a function of (seed, epoch, position in epoch) only.
A resumed run therefore sees exactly the items the uninterrupted run would have seen.

`resolution` (the `resolution` key of each train_* section): below the dataset's crop size, the
blurry image and its sharp frames are area-downscaled on load (`pipeline.dataset.manifest.downscale`). Averaging commutes
with area downscaling, so this is the same blur synthesised at the smaller size, to within the
uint8 rounding of the two images (tests/train/test_resolution.py). `preload()` decodes and
downscales every item once into memory (the blurry image and the sharp frames the target can
draw), so training reads arrays instead of PNGs: the same bytes, the same order and seeds.
"""
from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.dataset.manifest import _read_rgb, centre_position, downscale, load_at, middle_position, sample_rows
from pipeline.train.config import TrainingSetupError

TARGETS = ("moment", "middle", "centre")
ONE_FRAME = {"middle": middle_position, "centre": centre_position}  # targets of one fixed frame per row


def training_rows(root: str | Path, methods, split: str = "train") -> list[dict]:
    """The rows a training run draws from (`sample_rows` of the train split by default)."""
    return sample_rows(root, methods, split)


def split_validation(rows: list[dict], video: str | None, test_videos=()) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows): the rows of `video`, a training video, held out. A test
    video is refused (the validation split is never one); a video that is not in the dataset at
    all (params.yaml names the embedded samples', your own footage has others) is warned about,
    and training runs without validation."""
    if video is None:
        return rows, []
    if video in set(test_videos):
        raise TrainingSetupError(f"validation_video = {video}: a test video; hold out a training video instead "
                         "(the validation split chooses the checkpoint, so it must not be what the models are scored on)")
    held = [r for r in rows if r["video_id"] == video]
    if not held:
        import logging

        logging.getLogger(__name__).warning(
            "validation_video = %s is not a video of the training split (%d videos, e.g. %s): training without "
            "validation (name one of yours, or null to silence this)", video, len({r["video_id"] for r in rows}),
            ", ".join(sorted({r["video_id"] for r in rows})[:3]))
        return rows, []
    return [r for r in rows if r["video_id"] != video], held


def training_and_validation_rows(root: str | Path, methods, video: str | None) -> tuple[list[dict], list[dict]]:
    """The train split's rows made by `methods`, with `video` held out for validation (`split_validation`)."""
    from pipeline.dataset.manifest import read_manifests

    test = set(read_manifests(root, split="test")["video_id"].to_pylist())
    try:
        rows = training_rows(root, methods)
    except ValueError as e:  # no rows made by these methods
        raise TrainingSetupError(f"{e}: nothing to train on (set methods to what the dataset holds, or add footage)") \
            from None
    return split_validation(rows, video, test)


def flipped_position(row: dict, position: int) -> int:
    """FMR position of frame `position` once the crop is mirrored horizontally.

    FMR sorts by x, then y, then time; a mirror negates x, so the frames are re-sorted by
    (-x, y, time). Frames with distinct x swap ends (u -> 1 - u with the authors' formula);
    frames tied in x keep their y/time order. (The mirrored key point is strictly the other
    eye's corner; the eyes move together, so the order is the same.)
    """
    keys = np.asarray(row["left_eye_xy"], dtype=np.float64)
    order = np.lexsort((np.asarray(row["frame_indices"]), keys[:, 1], -keys[:, 0]))
    return int(np.flatnonzero(order == position)[0])


PERMUTATION, ITEM, AUGMENT, IDENTITY = 0, 1, 2, 3  # independent random streams of a run


def derive_seed(seed: int, stream: int, *parts: int) -> int:
    """A 32-bit seed that depends only on the run's seed, a stream id and non-negative parts."""
    return int(np.random.SeedSequence([seed, stream, *parts]).generate_state(1)[0])


def item_seed(seed: int, epoch: int, position: int) -> int:
    return derive_seed(seed, ITEM, epoch, position)


class FaceDeblurDataset(Dataset):
    """(blurry, sharp, u, u_flip) items; keys are indices or (index, item_seed) pairs.

    Images come out as uint8 3xHxW tensors (cheap to collate and copy); `Batch.from_items`
    turns them into floats in [0, 1] on the device.
    """

    def __init__(self, rows: list[dict], root: str | Path, target: str = "moment", degrade=None,
                 resolution: int | None = None, identity_share: float = 0.0):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.rows, self.root, self.target = rows, Path(root), target
        # the share of items whose input is their sharp target itself (the N = 1 case): the model
        # learns to leave a face that needs no deblurring as it is (docs/training.md, "No harm")
        self.identity_share = float(identity_share)
        self.degrade = degrade  # pipeline.train.degrade.Degrade: the blurry input only, per item seed
        self.resolution = resolution
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None  # per row: blurry, sharp frames (preload)
        self._native: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def position(self, row: dict, seed: int) -> int:
        if self.target in ONE_FRAME:
            return ONE_FRAME[self.target](row)
        return int(np.random.default_rng(seed).integers(row["n_frames"]))

    def positions(self, row: dict) -> list[int]:
        """The FMR positions this target can draw: every frame (moment) or its one frame."""
        return [ONE_FRAME[self.target](row)] if self.target in ONE_FRAME else list(range(row["n_frames"]))

    @property
    def native_size(self) -> int:
        """The dataset's image size (its crop.size), read from the first row's blurry image; every
        other image must match it (`load`)."""
        if self._native is None:
            self._native = int(_read_rgb(self.root / self.rows[0]["blurry_path"]).shape[0]) if self.rows else 0
        return self._native

    def load(self, index: int, positions: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The row's blurry image and its sharp frames at `positions`, at the training resolution."""
        return load_at(self.rows[index], positions, self.root, self.resolution, size=self.native_size)

    def preload(self, threads: int = 2, progress: bool = True) -> "FaceDeblurDataset":
        """Decode (and downscale) every item once into memory; returns self. Reading an item
        afterwards costs an array copy instead of PNG and frame-store decoding."""
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        def one(i):
            return self.load(i, self.positions(self.rows[i]))

        with ThreadPoolExecutor(max(1, threads)) as pool:  # OpenCV and zlib release the GIL
            self._cache = list(tqdm(pool.map(one, range(len(self.rows))), total=len(self.rows),
                                    desc="decoding training samples", disable=not progress or None, unit="sample"))
        return self

    @property
    def image_size(self) -> int:
        """The side of the images that reach the model: `resolution`, or the dataset's crop size."""
        if self.resolution is not None:
            return int(self.resolution)
        return self.native_size

    @property
    def preloaded_bytes(self) -> int:
        return 0 if self._cache is None else sum(b.nbytes + s.nbytes for b, s in self._cache)

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        row = self.rows[index]
        k = self.position(row, seed)
        if self._cache is not None:
            blurry, frames = self._cache[index]
            sharp = frames[0 if self.target in ONE_FRAME else k]
        else:
            blurry, frames = self.load(index, [k])
            sharp = frames[0]
        if self.identity_share and np.random.default_rng(derive_seed(seed, IDENTITY)).random() < self.identity_share:
            blurry = sharp
        if self.degrade is not None and self.degrade.enabled:
            blurry = self.degrade(blurry, seed)
        return {
            "blurry": torch.from_numpy(np.ascontiguousarray(blurry)).permute(2, 0, 1).contiguous(),
            "sharp": torch.from_numpy(np.ascontiguousarray(sharp)).permute(2, 0, 1).contiguous(),
            "u": torch.tensor(row["u"][k], dtype=torch.float32),
            "u_flip": torch.tensor(row["u"][flipped_position(row, k)], dtype=torch.float32),
            "position": k,
            "index": index,
        }


class EpochSampler(Sampler):
    """(index, item_seed) pairs of one epoch for one process.

    Like `DistributedSampler(shuffle=True, drop_last=True)` (a permutation seeded by seed and
    epoch; process `rank` takes every `world_size`-th item; one process takes all), plus what
    exact resumes and paper-style epochs need: an epoch holds `per_rank` items per process
    whatever the dataset size (permutations are concatenated), item seeds travel with the
    indices, and `set_epoch(epoch, skip)` drops the items a resumed run already consumed.
    """

    def __init__(self, n_items: int, per_rank: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n_items, self.per_rank, self.seed = n_items, per_rank, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self.per_rank - self.skip

    def __iter__(self):
        total = self.per_rank * self.world_size
        generator = torch.Generator().manual_seed(derive_seed(self.seed, PERMUTATION, self.epoch))
        chunks = [torch.randperm(self.n_items, generator=generator) for _ in range(-(-total // self.n_items))]
        order = torch.cat(chunks)[:total].tolist()
        for position in range(self.rank + self.skip * self.world_size, total, self.world_size):
            yield order[position], item_seed(self.seed, self.epoch, position)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _init_worker(worker_id: int) -> None:
    """Seed the worker, and leave SIGINT / SIGTERM from outside to the main process.

    Ctrl-C, `timeout` and schedulers signal the whole process group; a worker must outlive the
    signal so the main process can finish its step and save a checkpoint (a dead worker makes
    the DataLoader raise in the main process). So SIGINT is ignored, and SIGTERM stays blocked
    (`start_workers` forks with both blocked, so one that arrived while the worker was starting is
    still pending) and is taken by a thread that exits the worker only when the parent sent it:
    the DataLoader's shutdown and Python's exit handler stop a worker with `terminate()` and then
    wait for it, so a worker that ignored SIGTERM altogether would hang the parent forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_exit_on_sigterm_from, args=(os.getppid(),), daemon=True,
                     name="sigterm-from-parent").start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _exit_on_sigterm_from(parent: int) -> None:
    """Wait for SIGTERM (blocked in every thread of the worker); exit at once if `parent` sent
    it, drop it otherwise (a signal to the whole process group)."""
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)


def start_workers(loader: DataLoader):
    """`iter(loader)`, with SIGINT / SIGTERM blocked in this thread while workers are started, so a
    new worker cannot die of a signal before `_init_worker` ignores it. (A signal meanwhile is not
    lost: it is delivered to this process once unblocked.)"""
    if loader.num_workers == 0 or threading.current_thread() is not threading.main_thread():
        return iter(loader)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def make_loader(dataset: Dataset, sampler: EpochSampler, batch_size: int, num_workers: int, seed: int,
                pin_memory: bool = False) -> DataLoader:
    """Batches of `batch_size` items in the sampler's order; seeded workers that ignore SIGINT and
    SIGTERM (iterate it with `start_workers`)."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=num_workers,
        persistent_workers=num_workers > 0, worker_init_fn=_init_worker, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )


class Batch(NamedTuple):
    """A batch on the device: images float in [0, 1], B x 3 x H x W; u and u_flip [B]."""

    blurry: torch.Tensor
    sharp: torch.Tensor
    u: torch.Tensor
    u_flip: torch.Tensor

    @classmethod
    def from_items(cls, items: dict, device: torch.device) -> "Batch":
        def image(x):
            return x.to(device, non_blocking=True).float().div_(255)

        return cls(image(items["blurry"]), image(items["sharp"]), items["u"].to(device), items["u_flip"].to(device))
