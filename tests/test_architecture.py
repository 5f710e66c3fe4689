"""The structure as a checked contract: the library's layers (import-linter, pyproject.toml) and
`dvc.yaml` dependencies that cover every impkit module a stage's command can import, so that editing
any code a stage runs reruns that stage."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_the_library_keeps_its_layers():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_evaluation_module_that_imports_training_breaks_the_contract(tmp_path):
    shutil.copytree(REPO / "impkit", tmp_path / "impkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    heldout = tmp_path / "impkit" / "eval" / "heldout.py"
    heldout.write_text(
        heldout.read_text() + "\n\ndef _late():\n    from impkit.train.starting_model import starting_model\n"
    )
    result = _lint(tmp_path)
    assert result.returncode == 1 and "impkit.eval.heldout -> impkit.train.starting_model" in result.stdout


def test_the_code_is_formatted_and_linted():
    """One formatter (ruff format, pyproject.toml's settings) and no per-line opt-outs of it."""
    ruff = str(Path(sys.executable).with_name("ruff"))
    folders = ["impkit", "stages", "flows", "tests", "benchmarks"]
    for command in ([ruff, "format", "--check", *folders], [ruff, "check", *folders]):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    marked = [str(p) for folder in folders for p in (REPO / folder).rglob("*.py") if "fmt: " + "skip" in p.read_text()]
    assert marked == []


# -- dvc.yaml's deps ------------------------------------------------------------------------------


@cache
def _graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(REPO))
    try:
        return grimp.build_graph("impkit", "stages", cache_dir=None)
    finally:
        sys.path.remove(str(REPO))


def _module_file(module: str) -> str:
    path = Path(*module.split("."))
    return str(path / "__init__.py") if (REPO / path).is_dir() else f"{path}.py"


def imported_files(entry: str) -> set[str]:
    """The repository files of ``entry`` (a module run with ``python -m``) and of every impkit module it
    can import, directly or not, at the top of a file or inside a function, with the ``__init__.py`` of
    every package on the way (Python runs them first)."""
    graph = _graph()
    modules = {entry, *graph.find_upstream_modules(entry)}
    modules |= {".".join(m.split(".")[:n]) for m in modules for n in range(1, m.count(".") + 1)}
    return {_module_file(m) for m in modules if m.split(".")[0] in ("impkit", "stages") and m != "stages"}


def uncovered(files: set[str], deps: list[str]) -> list[str]:
    """The files no dependency covers (a dependency covers itself and, as a folder, what is under it)."""
    prefixes = [dep.rstrip("/") for dep in deps]
    return sorted(f for f in files if not any(f == p or f.startswith(p + "/") for p in prefixes))


def _stages() -> dict[str, tuple[str, list[str]]]:
    """Every stage of dvc.yaml (foreach expanded): name -> (the module its command runs, its deps)."""
    from dvc.repo import Repo

    stages = {}
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            match = re.search(r"python -m ([\w.]+)", stage.cmd)
            assert match, f"{stage.addressing}: its command runs no python module: {stage.cmd}"
            deps = [str(Path(dep.def_path)) for dep in stage.deps]
            stages[stage.addressing] = (match.group(1), deps)
    return stages


def test_every_stage_lists_the_code_it_runs_among_its_deps():
    missing = {name: uncovered(imported_files(module), deps) for name, (module, deps) in _stages().items()}
    assert {name: files for name, files in missing.items() if files} == {}


def test_the_deps_check_catches_a_module_left_out():
    files = imported_files("stages.evaluate")
    assert {
        "stages/evaluate.py",
        "impkit/eval/evaluate.py",
        "impkit/release.py",
        "impkit/model/shared_prefix.py",
    } <= files
    deps = ["stages/evaluate.py", "impkit"]
    assert uncovered(files, deps) == []
    assert uncovered(files, [*deps[:1], "impkit/eval", "impkit/model"]) != []
    assert "impkit/release.py" in uncovered(files, ["stages/evaluate.py", "impkit/eval", "impkit/model", "impkit/data"])


@pytest.mark.parametrize("module", ["stages.train", "stages.latency"])
def test_imports_inside_functions_count(module):
    # stages.train imports the training pipeline inside main(), after the launch
    assert {"stages.train": "impkit/train/pipeline.py", "stages.latency": "impkit/latency/report.py"}[module] in (
        imported_files(module)
    )
