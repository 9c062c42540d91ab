"""PNG contact sheets (grids of captioned images) and the even spread of rows they show.

One module for every sheet the project draws: the dataset report (`reports/sheets/`), the training
sample sheets and the evaluation examples. Torch-free, so the data half can use it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, TypeVar

import cv2
import numpy as np

from pipeline.dataset.manifest import sample_rows

T = TypeVar("T")
Cell = tuple[np.ndarray, str] | None  # (HxWx3 uint8 RGB, caption) or an empty cell


def spread(items: Sequence[T], k: int | None) -> list[T]:
    """`k` items at evenly spaced positions of `items` (first and last included, order kept);
    all of them when k is None or at least len(items)."""
    if k is None or k >= len(items):
        return list(items)
    if k <= 0:
        return []
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


def captioned(image: np.ndarray, caption: str) -> np.ndarray:
    """The image with its caption in white on a black band at the top left."""
    out = image.copy()
    scale = max(out.shape[1] / 400, 0.3)
    (w, h), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (w + 6, h + base + 6), (0, 0, 0), -1)
    cv2.putText(out, caption, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


SMALL_CELL, LEGIBLE_SIZE = 128, 192  # cells below SMALL_CELL px (64 x 64 training) are enlarged to about LEGIBLE_SIZE


def render_sheet(rows: list[list[Cell]], gap: int = 2, tile: int | None = None, title: str | None = None) -> np.ndarray:
    """Rows of cells -> one RGB image. Cells are resized to `tile` px squares when given (else they
    must share one size; cells smaller than SMALL_CELL are enlarged by a whole factor, pixel for pixel,
    so a caption does not cover them); empty cells stay grey; `title` adds a black band on top."""
    first = next(c[0] for row in rows for c in row if c is not None)
    if tile is not None:
        rows = [[None if c is None else (cv2.resize(c[0], (tile, tile), interpolation=cv2.INTER_AREA
                                                    if tile < c[0].shape[0] else cv2.INTER_NEAREST), c[1])
                 for c in row] for row in rows]
    elif max(first.shape[:2]) < SMALL_CELL:
        factor = max(2, LEGIBLE_SIZE // max(first.shape[:2]))
        rows = [[None if c is None else (np.repeat(np.repeat(c[0], factor, axis=0), factor, axis=1), c[1])
                 for c in row] for row in rows]
    first = next(c[0] for row in rows for c in row if c is not None)
    h, w = first.shape[:2]
    n_cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (h + gap) - gap, n_cols * (w + gap) - gap, 3), 64, np.uint8)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if cell is not None:
                sheet[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = captioned(*cell)
    if title:
        head = np.zeros((28, sheet.shape[1], 3), np.uint8)
        cv2.putText(head, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        sheet = np.concatenate([head, sheet], axis=0)
    return sheet


def write_sheet(path: str | Path, rows: list[list[Cell]], gap: int = 2, tile: int | None = None,
                title: str | None = None) -> Path:
    """`render_sheet` written atomically as a PNG."""
    sheet = render_sheet(rows, gap, tile, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise IOError(f"cannot write {path}")
    os.replace(tmp, path)
    return path


def sheet_rows(root, methods, count: int, split: str = "test") -> list[dict]:
    """`count` samples spread evenly over the sorted `split` rows (the train rows if none)."""
    try:
        rows = sample_rows(root, methods, split)
    except ValueError:
        rows = sample_rows(root, methods, "train")
    return spread(rows, count)
