"""Step `dashboards`: the static release dashboard dashboards/index.html over every release in the
registry (impkit.dashboards.static): accuracy against size and latency per release and level beside
the paper's reported points, the level to ship per device profile, Table 3 and Table 4 layouts and
the data's quality gates. One self-contained file: it opens from disk with no network."""

from __future__ import annotations

import argparse
import logging

from impkit import paths

NAME = "dashboards"
HELP = "rebuild the static release dashboard from the registry (dashboards/index.html)"
OMP_WAIT_POLICY = None  # never loads torch or llama.cpp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.DASHBOARD), help=f"the page to write (default {paths.DASHBOARD})")


def main(args: argparse.Namespace) -> None:
    from impkit.dashboards.static import render
    from impkit.io import atomic_open
    from impkit.registry import Registry

    records = Registry(paths.REGISTRY).records()
    with atomic_open(args.out, "w", encoding="utf-8") as f:
        f.write(render(records))
    logging.getLogger("impkit").info("%d release(s) on %s", len(records), args.out)
