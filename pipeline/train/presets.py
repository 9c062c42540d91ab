"""Apply a preset (a YAML file of params overrides) as a DVC experiment.

    python -m pipeline.train.presets presets/cfmd-paper.yaml          # print the command
    python -m pipeline.train.presets presets/cfmd-paper.yaml --run    # run it

The preset's leaves become `dvc exp run -S section.key=value` overrides (lists stay whole),
and those of its top-level sections that are stage names (train_cfmd, ...) become the targets;
a preset of data sections only (presets/300vw.yaml: ingest, blur) names no target, so the whole
pipeline runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex

import yaml

from pipeline.params import SCHEMA

# params sections of the data half (some share a stage's name, e.g. ingest): a preset holding one
# changes the dataset, so it runs the whole pipeline rather than that one stage
DATA_SECTIONS = frozenset(SCHEMA)


def overrides(preset: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in preset.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += overrides(value, name + ".")
        else:
            out.append(f"{name}={json.dumps(value, separators=(',', ':'))}")
    return out


def stage_names(dvc_file: str = "dvc.yaml") -> set[str]:
    if not os.path.isfile(dvc_file):
        return set()
    with open(dvc_file) as f:
        return set((yaml.safe_load(f) or {}).get("stages") or {})


class PresetError(ValueError):
    """A preset file that is missing, not YAML, or not a mapping of params sections."""


def read_preset(path: str) -> dict:
    """The preset's params sections; PresetError naming the file otherwise."""
    try:
        with open(path) as f:
            preset = yaml.safe_load(f)
    except OSError as e:
        raise PresetError(f"{path}: cannot read the preset ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise PresetError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if preset is None:
        return {}
    if not isinstance(preset, dict) or not all(isinstance(v, dict) for v in preset.values()):
        raise PresetError(f"{path}: a preset holds params sections (section: then key: value lines, as in "
                          f"params.yaml), not a {type(preset).__name__}")
    return preset


def command(path: str, extra: list[str] | None = None, dvc_file: str = "dvc.yaml") -> list[str]:
    preset = read_preset(path)
    args = ["dvc", "exp", "run"]
    for item in overrides(preset):
        args += ["-S", item]
    stages = stage_names(dvc_file)
    if any(k in DATA_SECTIONS for k in preset):  # a data change reaches every stage: the whole pipeline
        return args + list(extra or [])
    return args + list(extra or []) + [k for k in preset if k in stages]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset")
    p.add_argument("--run", action="store_true", help="run the command instead of printing it")
    p.add_argument("extra", nargs="*", help="more `dvc exp run` arguments (after --), e.g. -n paper-run")
    args = p.parse_args(argv)
    try:
        cmd = command(args.preset, args.extra)
    except PresetError as e:
        raise SystemExit(f"presets: {e}") from None
    if args.run:
        os.execvp(cmd[0], cmd)
    print(shlex.join(cmd))


if __name__ == "__main__":
    main()
