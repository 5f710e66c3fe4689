"""The retrain flow: a retrain with overrides, the way `dvc exp run -S` takes them (a new data
recipe, more epochs), run as a DVC experiment outside the workspace (`--temp`). It becomes a release
only if it passes the gate of params.yaml's `flows.retrain`: no benchmark headline of any preset
below the current release's by more than `max_drop_points` (0-100 scale; a failed data-quality
gate already fails the experiment's assemble stage). Passed: the experiment is applied to the
workspace (`dvc exp apply`) and the pipeline's remaining stages record the new releases. Not passed:
the workspace is left as it was, the experiment stays listed in `dvc exp show`, and the flow fails
with the figures that decided it (a Prefect artifact).

python -m flows.retrain -S train.recipes.nano-long.stage2.epochs=12
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.dvc_dag import stream_command
from flows.release import build, workspace_lock
from impkit.registry.recommend import headline_points

HEADLINES = re.compile(r"^reports/headline/(?P<preset>[^/]+)\.json$")


class GateNotPassed(RuntimeError):
    pass


def gate(candidate: Mapping[str, Mapping[str, float]], current: Mapping[str, Mapping[str, float]], max_drop: float):
    """Per preset and benchmark: the current release's headline, the candidate's, the drop in points
    and whether it is within ``max_drop``. A preset without a current release passes (nothing to
    fall below); a benchmark the candidate lost counts as failed."""
    rows, passed = [], True
    for preset, benchmarks in sorted(current.items()):
        for benchmark, before in sorted(benchmarks.items()):
            after = candidate.get(preset, {}).get(benchmark)
            drop = (
                None
                if after is None
                else round(headline_points(benchmark, before) - headline_points(benchmark, after), 2)
            )
            ok = drop is not None and drop <= max_drop
            passed &= ok
            rows.append(
                {
                    "preset": preset,
                    "benchmark": benchmark,
                    "current": before,
                    "candidate": after,
                    "drop": drop,
                    "ok": ok,
                }
            )
    return passed, rows


def experiment_headlines(workspace: Path, name: str) -> dict[str, dict[str, float]]:
    """The benchmark headlines per preset of experiment ``name`` (from `dvc exp show`)."""
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("dvc")), "exp", "show", "--json"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    )
    for baseline in json.loads(shown.stdout):
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs", []):
                if rev.get("name") == name:
                    metrics = rev["data"].get("metrics") or {}
                    return {
                        m["preset"]: (metrics[path].get("data") or {}).get("benchmarks", {})
                        for path in metrics
                        if (m := HEADLINES.match(path))
                    }
    raise GateNotPassed(f"experiment {name} is not in `dvc exp show` of {workspace}")


@task(name="dvc-exp-run", cache_policy=NO_CACHE, retries=0)
def run_experiment(workspace: str, name: str, overrides: Sequence[str]) -> None:
    logger = get_run_logger()
    command = ["exp", "run", "--temp", "-n", name, *(arg for o in overrides for arg in ("-S", o))]
    code, tail = stream_command(Path(workspace), command, logger.info)
    if code != 0:
        lines = "\n".join(tail)
        create_markdown_artifact(key="retrain-failure", markdown=f"## The retrain {name} failed\n\n```\n{lines}\n```\n")
        raise GateNotPassed(f"the experiment {name} failed (exit code {code}); its last lines are in the artifact")


def _report(name: str, overrides: Sequence[str], passed: bool, rows: list[dict], max_drop: float) -> str:
    lines = [
        f"## Retrain {name}: {'passed' if passed else 'NOT passed'} (max drop {max_drop:g} points)",
        "",
        f"Overrides: {', '.join(overrides) or 'none'}",
        "",
        "| preset | benchmark | current | candidate | drop (points) | within |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['benchmark']} | {r['current']:g} | {'–' if r['candidate'] is None else format(r['candidate'], 'g')} "
            f"| {'–' if r['drop'] is None else format(r['drop'], 'g')} | {'yes' if r['ok'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


@flow(name="impkit-retrain", log_prints=True)
def retrain_flow(overrides: Sequence[str] = (), workspace: str = ".", name: str | None = None) -> dict[str, Any]:
    """Retrain with ``overrides`` (``key=value`` as `dvc exp run -S` takes them); release it only if it
    passes the gate."""
    from impkit.config import FlowsConfig, load_section
    from impkit.registry import Registry

    root = Path(workspace).resolve()
    name = name or "retrain-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    max_drop = load_section(FlowsConfig, "flows", path=root / "params.yaml").retrain.max_drop_points
    with workspace_lock(root, wait=True):
        registry = Registry(root / "registry")
        current = {
            record["preset"]: record["headline"]["benchmarks"]
            for record in registry.records()
            if record["id"] in set(registry.current().values())
        }
        run_experiment(str(root), name, list(overrides))
        passed, rows = gate(experiment_headlines(root, name), current, max_drop)
        create_markdown_artifact(key="retrain-gate", markdown=_report(name, overrides, passed, rows, max_drop))
        if not passed:
            failed = ", ".join(f"{r['preset']} {r['benchmark']}" for r in rows if not r["ok"])
            raise GateNotPassed(
                f"{name} is not released: below the current release by more than {max_drop:g} points on {failed}"
            )
        code, tail = stream_command(root, ["exp", "apply", name], get_run_logger().info)
        if code != 0:
            raise GateNotPassed(f"dvc exp apply {name} failed: {tail[-1] if tail else ''}")
        ran = build(root)  # the releases and dashboards of the applied experiment
    return {"name": name, "passed": True, "gate": rows, "stages": ran}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workspace", default=".")
    parser.add_argument("--name")
    args = parser.parse_args(argv)
    retrain_flow(args.overrides, args.workspace, args.name)


if __name__ == "__main__":
    main()
