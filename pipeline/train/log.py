"""The loss log: one CSV row per `log_every` steps (step, epoch, lr, mean losses), which
`dvc plots show` draws against `step`. A resumed run first drops the rows written after its
checkpoint, so the file always reads as one uninterrupted run."""
from __future__ import annotations

import csv
from pathlib import Path


class LossLog:
    def __init__(self, path: str | Path, fields: list[str], resume_step: int = 0, enabled: bool = True):
        self.path, self.fields, self.enabled = Path(path), ["step", "epoch", "lr", *fields], enabled
        self.last: dict = {}
        if not enabled:
            return
        kept = []
        if resume_step and self.path.is_file():
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields)
        self._writer.writeheader()
        self._writer.writerows(kept)
        self._file.flush()
        if kept:
            self.last = {k: float(v) for k, v in kept[-1].items()}

    def write(self, row: dict) -> None:
        self.last = row
        if self.enabled:
            self._writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
            self._file.flush()

    def close(self) -> None:
        if self.enabled:
            self._file.close()
