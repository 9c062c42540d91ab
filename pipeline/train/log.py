"""The training log, written with DVCLive (rank 0 only).

A stage logs to `dvclive/<stage>/` (the `--live` directory):

    metrics.json              the latest value of every metric and the step (`dvc metrics`,
                              `dvc exp show`)
    plots/metrics/<name>.tsv  one row per `log_every` steps: `step` (the global step) and the
                              mean of <name> over those steps; <name> is each loss, `lr`, `epoch`
                              (`dvc plots show` draws the losses against step)
    plots/images/samples.png  the sample sheet of the finished run

plus artifacts registered on the `Live` object: the checkpoint at every save and the final
weights (`type="model"`). dvc.yaml declares all of this itself (`dvcyaml=False`), and the
metrics and TSVs as `persist: true` outputs, so they survive until the stage runs again.

Resume: a run that resumes from a checkpoint at step S first drops every TSV row after S (steps
logged after that checkpoint by the interrupted process, which the resumed run repeats) and
rewinds metrics.json to match, then continues the same log (`Live(resume=True)`), so the log
always reads as one uninterrupted run. A fresh run clears the directory's DVCLive files.

Staging: the training stages log a run in progress beside its checkpoint
(`<checkpoints>/live/`, `staging=`), and `publish` moves that log to `dvclive/<stage>/` together
with the weights and metrics (`pipeline.stage.replacing_outputs`). So the published log always
describes the weights next to it: a retrain that is interrupted, killed (`kill -9`) or fails never
wipes the finished run's log, and a resumed run continues its own staged log. Watch a run in
progress in `<checkpoints>/live/`.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

METRICS = "metrics.json"
TSV_DIR = Path("plots") / "metrics"


def artifact_name(text: str) -> str:
    """A valid DVC artifact name (lower case, digits, dashes) from a stage or file name."""
    return "".join(c if c.isalnum() else "-" for c in str(text).lower()).strip("-")


def _read_tsv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def rewind(directory: str | Path, step: int) -> int:
    """Drop the rows logged after `step` from every TSV under `directory` and rewrite
    metrics.json from the rows kept; returns the last step kept (0 if none)."""
    directory = Path(directory)
    summary_path = directory / METRICS
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    last_step = 0
    for path in sorted((directory / TSV_DIR).rglob("*.tsv")):
        fields, rows = _read_tsv(path)
        kept = [r for r in rows if r.get("step") not in (None, "") and int(r["step"]) <= step]
        if len(kept) != len(rows):
            tmp = path.with_suffix(".tsv.tmp")
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fields, delimiter="\t", lineterminator=os.linesep)
                writer.writeheader()
                writer.writerows(kept)
            os.replace(tmp, path)
        keys = path.relative_to(directory / TSV_DIR).with_suffix("").parts  # as Live.summary nests them
        node = summary
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if kept:
            node[keys[-1]] = _number(kept[-1][fields[-1]])
            last_step = max(last_step, int(kept[-1]["step"]))
        else:
            node.pop(keys[-1], None)
    summary["step"] = last_step
    tmp = summary_path.with_suffix(".json.tmp")
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(summary, indent=4))
    os.replace(tmp, summary_path)
    return last_step


def _live_class():
    from dvclive import Live

    class QuietLive(Live):
        """Live, except: outside a DVC project it logs files only (Live would `dvc init` the
        enclosing git repository) and a repository it cannot read (a git repository without
        commits) does not stop training; and `next_step` skips building a DVC Studio update,
        which re-reads every TSV, when Studio is not configured."""

        def _init_dvc(self):
            from dvc.repo import Repo

            try:
                Repo.find_root()  # NotDvcRepoError outside a DVC project
                super()._init_dvc()
            except Exception as e:  # noqa: BLE001 - logging must not stop training
                log.warning("DVCLive without a DVC repository (%s): metrics and plots only, no artifacts", e)
                self._dvc_repo, self._save_dvc_exp = None, False

        def post_data_to_studio(self):
            if "data" not in getattr(self, "_studio_events_to_skip", ()):
                super().post_data_to_studio()

    return QuietLive


class TrainLog:
    """DVCLive for one training run. `fit` calls `start` (fresh or resumed, enabled on rank 0
    only) and `write` once per log row; the stage then logs the sample sheet and the final
    weights and calls `end` (or uses it as a context manager). On ranks other than 0, or
    before `start`, everything but `last` is a no-op."""

    def __init__(self, directory: str | Path, staging: str | Path | None = None):
        self.final = Path(directory)  # where the finished run's log is published
        self.dir = Path(staging) if staging is not None else self.final  # where DVCLive writes now
        self.live = None
        self._ended = False
        self.last: dict = {}  # the latest row written (step, epoch, lr, losses), on every rank

    def start(self, resume_step: int = 0, enabled: bool = True) -> "TrainLog":
        if not enabled or self.live is not None:
            return self
        if resume_step:
            kept = rewind(self.dir, resume_step)
            if kept < resume_step:
                log.warning("%s holds rows up to step %d only; resuming the log at step %d",
                            self.dir, kept, resume_step)
            self.last = self._last_row()
        # dvc.yaml declares the outputs; experiments are saved by `dvc exp run`, not here.
        self.live = _live_class()(str(self.dir), resume=bool(resume_step), dvcyaml=False, save_dvc_exp=False,
                                  report=None)
        return self

    def _last_row(self) -> dict:
        path = self.dir / METRICS
        if not path.is_file():
            return {}
        return {k: v for k, v in json.loads(path.read_text()).items() if isinstance(v, (int, float))}

    def write(self, row: dict) -> None:
        """One log row: {"step": global step, name: value, ...}; the step is the x of every curve."""
        self.last = dict(row)
        if self.live is None:
            return
        self.live.step = int(row["step"])
        for name, value in row.items():
            if name != "step":
                self.live.log_metric(name, value)
        self.live.next_step()

    def image(self, name: str, path: str | Path) -> None:
        if self.live is not None:
            self.live.log_image(name, str(path))

    def sheet(self, rows, name: str = "samples.png") -> None:
        """A contact sheet (`pipeline.sheets` rows of cells) logged as the image `name`."""
        if self.live is None:
            return
        from pipeline.sheets import write_sheet

        with tempfile.TemporaryDirectory() as tmp:
            self.image(name, write_sheet(Path(tmp) / name, rows))

    def artifact(self, path: str | Path, type: str, name: str, desc: str | None = None, **meta) -> None:
        """Register a file as an artifact. DVC tracks the file as a stage output, so DVCLive only
        records it (cache=False); the final weights also appear in dvc.yaml's `artifacts:`."""
        if self.live is not None:
            self.live.log_artifact(str(path), type=type, name=artifact_name(name), desc=desc,
                                   meta=meta or None, cache=False)

    @property
    def artifacts(self) -> dict:
        return dict(self.live._artifacts) if self.live is not None else {}

    def end(self) -> None:
        if self.live is not None and not self._ended:
            self._ended = True
            self.live.end()
            repo = getattr(self.live, "_dvc_repo", None)
            if repo is not None:
                repo.close()  # release git handles now, not at interpreter exit

    def publish(self, outputs) -> None:
        """End the log and have `outputs` (a `pipeline.stage.OutputSet`) move it from its staging
        folder to the published one with the run's other outputs."""
        self.end()
        if self.live is not None and self.dir != self.final:
            outputs.move(self.dir, self.final)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.end()
