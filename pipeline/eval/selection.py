"""Which test samples are scored, and which (output, target) pairs make each table."""
from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow.compute as pc

from pipeline.dataset.manifest import CENTRE_U, centre_position, load_at, middle_position, read_manifests
from pipeline.eval.config import BASELINE, EvalConfig
from pipeline.sheets import spread


log = logging.getLogger("evaluate")


def spread_over_n(rows: list[dict], k: int | None) -> list[dict]:
    """`k` rows spread over the N values (round robin over N, evenly spaced within each N)."""
    if k is None or k >= len(rows):
        return rows
    groups: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["n_frames"]].append(r)
    ns, quota = sorted(groups), defaultdict(int)
    assigned = 0
    while assigned < k:
        for n in ns:
            if assigned < k and quota[n] < len(groups[n]):
                quota[n] += 1
                assigned += 1
    out = []
    for n in ns:
        out += spread(groups[n], quota[n])
    return sorted(out, key=lambda r: (r["n_frames"], r["sample_id"]))


def select_rows(root: str | Path, cfg: EvalConfig) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """{method: rows to evaluate}, {method: rows available} for the configured split."""
    table = read_manifests(root, split=cfg.split)
    chosen, available = {}, {}
    for method in cfg.methods:
        part = table.filter(pc.equal(table["method"], method))
        rows = sorted(part.to_pylist(), key=lambda r: r["sample_id"])
        available[method] = len(rows)
        chosen[method] = spread_over_n(rows, cfg.quota(method))
    return chosen, available


@dataclass(frozen=True)
class Pair:
    table: str
    system: str  # the model's name or BASELINE
    input_u: float | None  # u fed to CFMD-GAN; None for the Chrysos model and the baseline
    target: int  # FMR position of the ground-truth frame


def plan(model_name: str, row: dict) -> list[Pair]:
    """Every (output, target) pair one sample contributes to the model's tables."""
    mid = middle_position(row)
    pairs = []
    if model_name == "cfmd":
        for k, u in enumerate(row["u"]):
            pairs += [Pair("all_u", "cfmd", float(u), k), Pair("all_u", BASELINE, None, k)]
        for table, target in (("centre_fmr", centre_position(row)), ("centre_middle", mid)):
            pairs += [Pair(table, "cfmd", CENTRE_U, target), Pair(table, BASELINE, None, target)]
    elif model_name == "chrysos":
        pairs += [Pair("middle", "chrysos", None, mid), Pair("middle", BASELINE, None, mid)]
    else:
        raise ValueError(f"unknown model {model_name!r}")
    return pairs


def load_for_eval(row: dict, root: Path, positions: list[int], resolution: int | None = None
                  ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """A row's blurry image and its sharp frames at `positions`, area-downscaled to `resolution`
    (evaluate.resolution; None: the dataset's size), as training loads them."""
    blurry, sharp = load_at(row, positions, root, resolution)
    return blurry, dict(zip(positions, sharp))


def prefetched(fn, items: list, ahead: int) -> Iterable:
    """fn(item) for each item, computed up to `ahead` items in advance on background threads."""
    if ahead <= 0:
        for it in items:
            yield it, fn(it)
        return
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        queue = [pool.submit(fn, it) for it in items[:ahead]]
        for i, it in enumerate(items):
            result = queue[i].result()
            if i + ahead < len(items):
                queue.append(pool.submit(fn, items[i + ahead]))
            queue[i] = None
            yield it, result


