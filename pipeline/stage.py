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
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


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
