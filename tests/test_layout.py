"""The project's shape holds: dvc.yaml's code deps cannot drift, the data half is torch-free, and
evaluation never imports training code.

Each stage lists exactly the Python files its command imports.

Each stage runs `python -m stages.X`; its import closure (every `pipeline.*` / `stages.*` module
reached from stages/X.py, following imports anywhere in a file, lazy ones included) is computed
from the source and compared with the stage's `.py` deps. A module missing from dvc.yaml means a
change to it would not re-run the stage; a listed module outside the closure re-runs it for nothing.

Why a closure and not whole packages: `dvc exp run -S`/`dvc repro` should re-run exactly what a
change affects. Depending on `pipeline/dataset/` would re-run the fixed-window stage when only VLA
changed, and every training stage when only the report changed.

Package `__init__.py` files are imported by every module of their package, so they must hold no
code (a docstring and constants only, checked below) and are not listed.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

CMD_MODULE = re.compile(r"python -m (stages\.\w+)")


def module_file(name: str) -> Path | None:
    """The file of a `pipeline.*` / `stages.*` module (None for packages and other modules)."""
    if not name.startswith(("pipeline", "stages")):
        return None
    path = REPO / (name.replace(".", "/") + ".py")
    return path if path.is_file() else None


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file; `from pkg import mod` counts `pkg.mod`."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the closure check needs absolute imports)"
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def import_closure(start: Path) -> set[str]:
    """Repo-relative paths of `start` and every project module it reaches."""
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        rel = path.relative_to(REPO).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        todo += [f for f in map(module_file, imported_modules(path)) if f is not None]
    return seen


def stages() -> dict[str, dict]:
    """Stage name -> its definition (a foreach stage's `do` body under its own name)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: (body["do"] if "foreach" in body else body) for name, body in spec.items()}


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_are_its_import_closure(name):
    body = stages()[name]
    match = CMD_MODULE.search(body["cmd"])
    assert match, f"{name}: command does not run `python -m stages.<script>`"
    expected = import_closure(module_file(match.group(1)))
    listed = {d for d in body.get("deps", []) if isinstance(d, str) and d.endswith(".py")}
    missing, extra = sorted(expected - listed), sorted(listed - expected)
    assert not missing and not extra, (
        f"dvc.yaml stage {name!r}: deps missing {missing}, not imported {extra}. "
        f"Its code deps should be:\n" + "\n".join(f"      - {p}" for p in sorted(expected)))


def test_package_inits_hold_no_code():
    """They run on every import of their package, yet no stage lists them: docstrings and constants only."""
    for init in sorted((REPO / "pipeline").rglob("__init__.py")) + [REPO / "stages/__init__.py"]:
        for node in ast.parse(init.read_text()).body:
            constant = isinstance(node, (ast.Expr, ast.Assign)) and isinstance(node.value, ast.Constant)
            assert constant, f"{init.relative_to(REPO)}: line {node.lineno} is code; move it into a module"


def test_the_closure_follows_lazy_and_from_imports():
    """The check itself: `deblur` imports `restore_many` only inside a function."""
    closure = import_closure(REPO / "pipeline/deblur.py")
    assert "pipeline/models/inference.py" in closure and "pipeline/dataset/crop.py" in closure


def python_modules(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("module", python_modules("pipeline/eval") + python_modules("pipeline/metrics")
                         + [REPO / "pipeline/models/inference.py", REPO / "stages/evaluate.py"],
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_evaluation_imports_no_training_code(module):
    reached = [p for p in import_closure(module) if p.startswith(("pipeline/train/", "stages/train"))]
    assert not reached, f"{module.relative_to(REPO)} reaches training code: {reached}"


DATA_HALF = [p for p in python_modules("pipeline/dataset")] + [
    REPO / f for f in ("pipeline/sheets.py", "pipeline/stage.py", "pipeline/manifest.py", "stages/ingest.py",
                       "stages/landmarks.py", "stages/blur_fixed.py", "stages/blur_vla.py", "stages/manifest.py",
                       "stages/report.py", "pipeline/summary.py", "stages/summary.py")]  # summary: torch-free too


def test_the_data_half_is_torch_free():
    """Building a dataset needs no deep-learning stack: importing every data-half module and data
    stage script leaves torch (and kornia) unimported."""
    names = [p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".") for p in DATA_HALF]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "heavy = sorted(m for m in ('torch', 'kornia', 'torchvision') if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            f"print({len(names)})")
    done = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == len(DATA_HALF) > 20
