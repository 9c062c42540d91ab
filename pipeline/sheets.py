"""PNG contact sheets: a grid of captioned images (rows of cells), written with OpenCV."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

Cell = tuple[np.ndarray, str] | None  # (HxWx3 uint8 RGB, caption) or an empty cell


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """3xHxW float in [0, 1] (clamped) -> HxWx3 uint8 RGB."""
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def to_float(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """HxWx3 uint8 RGB -> 1x3xHxW float in [0, 1] on `device` (a network's input)."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)


def captioned(image: np.ndarray, caption: str) -> np.ndarray:
    out = image.copy()
    scale = max(out.shape[1] / 400, 0.3)
    (w, h), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (w + 6, h + base + 6), (0, 0, 0), -1)
    cv2.putText(out, caption, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_sheet(path: str | Path, rows: list[list[Cell]], gap: int = 2) -> Path:
    """Rows of cells -> one PNG (cells of one size; empty cells stay grey)."""
    first = next(c[0] for row in rows for c in row if c is not None)
    h, w = first.shape[:2]
    n_cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (h + gap) - gap, n_cols * (w + gap) - gap, 3), 64, np.uint8)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if cell is not None:
                sheet[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = captioned(*cell)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise IOError(f"cannot write {path}")
    os.replace(tmp, path)
    return path


def sheet_rows(root, methods, count: int, split: str = "test") -> list[dict]:
    """`count` samples spread evenly over the sorted `split` rows (the train rows if none)."""
    from pipeline.train.data import training_rows

    try:
        rows = training_rows(root, methods, split)
    except ValueError:
        rows = training_rows(root, methods, "train")
    picks = np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)
    return [rows[i] for i in picks]
