"""What every stage script needs: params, logging, JSON and CSV outputs."""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"


def load_params(*keys: str, path: str | Path = PARAMS_FILE, validate: bool = True) -> dict:
    """The sections of params.yaml a stage reads (all of it when no keys are given), validated
    before any work starts (`pipeline.params`): a missing or bad entry ends the stage with one
    line (SystemExit) naming the key, the value and what is allowed."""
    from pipeline.params import ParamError, load_yaml, validate as check, validate_all

    try:
        params = load_yaml(path)
        if not keys:
            if validate:
                validate_all(params)
            return params
        out = {}
        for key in keys:
            node = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ParamError(f"{key}: missing (this stage reads it)")
                node = node[part]
            out[key] = node
        if validate:
            check(params, keys)
    except ParamError as e:
        raise SystemExit(f"{path}: {e}") from None
    return out


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=getattr(logging, (level or os.environ.get("DEBLUR_LOG", "INFO")).upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def write_csv(path: str | Path, header: list[str], rows) -> Path:
    """A CSV table for `dvc plots` (floats to 6 significant digits, None empty), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for v in r] for r in rows])
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj) -> None:
    """Stable JSON (sorted keys), written atomically so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def replacing_dir(out: str | Path) -> Iterator[Path]:
    """A stage's output folder, written beside it and swapped in only when the block succeeds.

    Yields `<parent>/.<name>.partial/<name>` (an empty folder, the same name so that paths relative
    to the staging root match the final ones). On success the old `out` is replaced (two renames
    on one filesystem); on any exception the staging folder is removed (freeing the space a full
    disk needs) and `out` is left exactly as it was. A run killed outright leaves the staging
    folder, which the next run removes first.
    """
    out = Path(out)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    work = staging / out.name
    work.mkdir(parents=True)
    try:
        yield work
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_dir(work, out)
    shutil.rmtree(staging, ignore_errors=True)


def swap_dir(new: Path, out: Path) -> None:
    """Folder `new` becomes `out` (two renames on one filesystem; the old `out` removed after)."""
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


class OutputSet:
    """The outputs of one run, each written beside its final path and moved in with the others
    (`replacing_outputs`)."""

    def __init__(self):
        self.moves: list[tuple[Path, Path]] = []  # (staged, final)
        self.made: list[Path] = []  # staged paths this set named (removed if the run fails)

    def path(self, final: str | Path) -> Path:
        """Where to write `final` for now: `.<stem>.partial<suffix>` in its folder (the suffix kept,
        so writers that go by it, e.g. OpenCV, still work)."""
        final = Path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = final.with_name(f".{final.stem}.partial{final.suffix}")
        self.moves.append((staged, final))
        self.made.append(staged)
        return staged

    def move(self, staged: str | Path, final: str | Path) -> None:
        """Move an existing file or folder (e.g. a log written elsewhere during the run) to `final`
        with the others."""
        self.moves.append((Path(staged), Path(final)))


@contextlib.contextmanager
def replacing_outputs() -> Iterator[OutputSet]:
    """All outputs of a run swapped in together at the end, or none of them.

    Inside the block, write each output to `outputs.path(final)`; when the block succeeds every
    staged file (or folder) replaces its final path, one rename each; when it fails the staged
    files are removed and every final path is left as it was (a metrics file never describes other
    weights or results than the ones beside it)."""
    outputs = OutputSet()
    try:
        yield outputs
    except BaseException:
        for staged in outputs.made:
            shutil.rmtree(staged, ignore_errors=True) if staged.is_dir() else staged.unlink(missing_ok=True)
        raise
    for staged, final in outputs.moves:
        final.parent.mkdir(parents=True, exist_ok=True)
        if not staged.exists():  # the run had nothing to write there (e.g. no examples): no stale file either
            shutil.rmtree(final, ignore_errors=True) if final.is_dir() else final.unlink(missing_ok=True)
        elif staged.is_dir():
            swap_dir(staged, final)
        else:
            os.replace(staged, final)


def pipeline_outputs(dvc_file: str | Path = DVC_FILE) -> list[Path]:
    """The paths the pipeline writes (every stage's outs, metrics and plots in dvc.yaml; a path
    with a `${...}` template is taken up to its folder before the template), or [] without a
    dvc.yaml (a stage run outside a DVC project). Ingest refuses a source among them."""
    import yaml

    path = Path(dvc_file)
    if not path.is_file():
        return []
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages") or {}
    found = set()
    for stage in stages.values():
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        for key in ("outs", "metrics", "plots"):
            for entry in body.get(key) or []:
                name = next(iter(entry)) if isinstance(entry, dict) else str(entry)
                if "${" in name:
                    name = name[:name.index("${")].rpartition("/")[0]
                if name:
                    found.add(Path(name))
    return sorted(found)
