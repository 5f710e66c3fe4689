"""The DVC pipeline as the flows see it: its stages in an order DVC would run them, each with the
stages it needs, read from `dvc.yaml` through DVC itself (never declared a second time), and a runner
for one stage that hands its output over line by line as it comes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Pipeline:
    order: list[str]  # every stage, each after the stages it needs, in dvc.yaml's order otherwise
    needs: dict[str, list[str]]  # stage -> the stages whose outputs it reads


def read_pipeline(workspace: Path, targets: Sequence[str] = ()) -> Pipeline:
    """The stages of ``workspace``'s dvc.yaml (only ``targets`` and what they need, when given)."""
    import networkx as nx
    from dvc.repo import Repo

    # stage names (``addressing``) are relative to the working directory: read them from the workspace
    with contextlib.chdir(workspace), Repo(".") as repo:
        graph = repo.index.graph  # edges: stage -> a stage it depends on
        position = {stage.addressing: i for i, stage in enumerate(repo.index.stages)}
        names = {stage: stage.addressing for stage in graph.nodes}
        needs = {names[s]: sorted((names[d] for d in graph.successors(s)), key=position.get) for s in graph.nodes}
        dependencies_first = nx.DiGraph((names[b], names[a]) for a, b in graph.edges)
        dependencies_first.add_nodes_from(names.values())
    order = list(nx.lexicographical_topological_sort(dependencies_first, key=position.get))
    if targets:
        unknown = sorted(set(targets) - set(order))
        if unknown:
            raise ValueError(f"no stage {unknown} in {workspace / 'dvc.yaml'}; stages: {order}")
        wanted = set()
        for target in targets:
            wanted |= {target} | nx.ancestors(dependencies_first, target)
        order = [s for s in order if s in wanted]
    return Pipeline(order, {s: needs[s] for s in order})


@dataclass
class StageRun:
    stage: str
    returncode: int
    seconds: float
    ran: bool  # False when DVC found the stage up to date
    tail: list[str] = field(default_factory=list)  # the last lines of its output


def stream_command(workspace: Path, dvc_args: Sequence[str], on_line: Callable[[str], None], *, tail: int = 40):
    """``dvc <dvc_args>`` in ``workspace``; every output line goes to ``on_line`` as it is printed.
    Returns (exit code, the last ``tail`` lines)."""
    command = [str(Path(sys.executable).with_name("dvc")), *dvc_args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    last: deque[str] = deque(maxlen=tail)
    with subprocess.Popen(
        command, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            last.append(line)
            on_line(line)
    return proc.returncode, list(last)


def repro_stage(workspace: Path, stage: str, on_line: Callable[[str], None]) -> StageRun:
    """``dvc repro --single-item <stage>`` in ``workspace``: DVC decides whether it is stale."""
    started, ran = time.monotonic(), []

    def watch(line: str) -> None:
        if line.startswith("Running stage"):  # DVC's words when it found the stage stale
            ran.append(line)
        on_line(line)

    code, last = stream_command(workspace, ["repro", "--single-item", stage], watch)
    return StageRun(stage, code, round(time.monotonic() - started, 1), bool(ran), last)
