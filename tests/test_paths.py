"""The workspace's paths have one home (impkit.paths): dvc.yaml mirrors it, the steps write no path of
their own, and `impkit <step>` has the stage's defaults."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import yaml

from impkit import paths

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = ("data/", "models/", "releases/", "reports/", "registry", "dashboards/")
ITEM = "${item}"


def layout_paths() -> set[str]:
    """Every path impkit.paths gives, a preset or profile written as DVC's ${item}."""
    found = set()
    for value in vars(paths).values():
        if isinstance(value, Path):
            found.add(str(value))
        elif inspect.isfunction(value) and value.__module__ == paths.__name__:
            for stage in ("align", "tune"):  # the training paths that name their stage
                args = [stage if p == "stage" else ITEM for p in inspect.signature(value).parameters]
                found.add(str(value(*args)))
    return found


def dvc_paths() -> dict[str, list[str]]:
    """The workspace paths each dvc.yaml stage names in deps, outs, metrics and plots."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    named = {}
    for stage, body in spec["stages"].items():
        body = body.get("do", body)
        entries = []
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in body.get(key, []):
                entries.append(next(iter(entry)) if isinstance(entry, dict) else entry)
        # a foreach over a mapping names its item ${key}: the same place in the path
        named[stage] = [e.replace("${key}", ITEM) for e in entries if e.startswith(WORKSPACE)]
    return named


def _covered(path: str, layout: set[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in layout)


def test_every_path_dvc_yaml_names_comes_from_impkit_paths():
    layout = layout_paths()
    unknown = {stage: [p for p in named if not _covered(p, layout)] for stage, named in dvc_paths().items()}
    assert {stage: found for stage, found in unknown.items() if found} == {}
    # and the check can fail: a path impkit.paths does not give is reported
    assert not _covered("reports/evaluation/${item}", layout)


def _path_literals(source: str) -> list[str]:
    pattern = re.compile(r"^(data|models|releases|reports|registry|dashboards)/[\w./${}-]*$")
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value)
    ]


def test_stages_and_steps_write_no_path_of_their_own():
    files = [*(REPO / "stages").glob("*.py"), *(REPO / "impkit" / "steps").glob("*.py"), REPO / "impkit" / "cli.py"]
    literals = {str(f.relative_to(REPO)): _path_literals(f.read_text()) for f in files}
    assert {f: found for f, found in literals.items() if found} == {}
    assert _path_literals('OUT = Path("data/world")') == ["data/world"]  # what the check catches


def test_impkit_steps_have_the_stages_defaults():
    from impkit.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["twins"])
    assert (args.heldout, args.out, args.params) == (str(paths.HELDOUT), str(paths.TWINS), "params.yaml")
    args = parser.parse_args(["train", "tune", "nano-3b"])
    assert (args.stage, args.preset, args.params) == ("tune", "nano-3b", "params.yaml")
    args = parser.parse_args(["evaluate", "releases/nano-3b"])
    assert (args.twins, args.images, args.out) == (str(paths.TWINS), str(paths.HELDOUT_IMAGES), None)
