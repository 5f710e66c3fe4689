"""Step `dashboards`: the release dashboards over every release in the registry:

- dashboards/index.html (impkit.dashboards.static): accuracy against size and latency per release
  and level beside the paper's reported points, the level to ship per device profile, Table 3 and
  Table 4 layouts and the data's quality gates; one self-contained file that opens from disk;
- dashboards/evidently (impkit.dashboards.evidently_workspace): the Evidently workspace, a project
  per family and a run per release, served by `evidently ui` (`make ui`);
- dashboards/drift/<id>.html (impkit.dashboards.drift): each release's training data against the
  previous release's of its preset (Evidently's data-drift report);
- reports/tradeoffs.json (impkit.dashboards.tradeoffs): the current releases' levels with size,
  latency and headlines, for `dvc plots show` / `dvc plots diff`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from impkit import paths

NAME = "dashboards"
HELP = "rebuild the static release dashboard from the registry (dashboards/index.html)"
OMP_WAIT_POLICY = None  # never loads torch or llama.cpp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.DASHBOARD), help=f"the page to write (default {paths.DASHBOARD})")
    parser.add_argument(
        "--evidently", default=str(paths.EVIDENTLY), help=f"the Evidently workspace (default {paths.EVIDENTLY})"
    )


def main(args: argparse.Namespace) -> None:
    from impkit.dashboards.drift import write_drift_reports
    from impkit.dashboards.evidently_workspace import build_workspace
    from impkit.dashboards.static import render
    from impkit.dashboards.tradeoffs import tradeoff_rows
    from impkit.io import atomic_open, write_json
    from impkit.registry import Registry

    registry = Registry(paths.REGISTRY)
    records = registry.records()
    drifted = write_drift_reports(records, registry, paths.DRIFT_REPORTS)
    with atomic_open(args.out, "w", encoding="utf-8") as f:
        links = paths.DRIFT_REPORTS.relative_to(paths.DASHBOARD.parent)  # relative: the page opens from disk
        f.write(render(records, drift={i: f"{links}/{i}.html" for i in drifted}))
    runs = build_workspace(records, Path(args.evidently))
    current = set(registry.current().values())
    write_json(paths.TRADEOFFS, tradeoff_rows([r for r in records if r["id"] in current]))
    log = logging.getLogger("impkit")
    log.info("%d release(s) on %s", len(records), args.out)
    log.info(
        "Evidently workspace %s: %s", args.evidently, ", ".join(f"{f} {n} run(s)" for f, n in runs.items()) or "empty"
    )
