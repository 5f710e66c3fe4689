"""The Prefect deployments, served from this machine: the scheduled release flow (cron, time zone
and default parameters from params.yaml's `flows`) and the retrain flow (started from the Prefect UI
with its overrides). A deployment runs one flow at a time; a run triggered while one is in progress
waits in Prefect's queue (a concurrency limit of 1 with ENQUEUE), and the workspace lock refuses any
other build.

python -m flows.serve                  # what `make ui` runs; Ctrl-C stops serving

On a work pool instead (workers on a GPU machine, Kubernetes), deploy the same flows with
`prefect deploy` (docs/flows.md); the flow code does not change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from flows.release import release_flow
from flows.retrain import retrain_flow

RELEASE_DEPLOYMENT = "scheduled-release"
RETRAIN_DEPLOYMENT = "retrain"


def deployments(workspace: Path, params_file: Path | None = None) -> list:
    """The release and retrain deployments of ``workspace``, as params.yaml describes them."""
    from impkit.config import FlowsConfig, load_section

    root = workspace.resolve()
    cfg = load_section(FlowsConfig, "flows", path=params_file or root / "params.yaml")
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    release = release_flow.to_deployment(
        name=RELEASE_DEPLOYMENT,
        schedules=[Cron(cfg.schedule.cron, timezone=cfg.schedule.timezone)],
        parameters={
            "workspace": str(root),
            "targets": list(cfg.release.targets),
            "wait_if_running": cfg.release.wait_if_running,
        },
        concurrency_limit=one_at_a_time,
        description="Rebuild the pipeline (DVC reruns what changed) and record the releases.",
        tags=["impkit"],
    )
    retrain = retrain_flow.to_deployment(
        name=RETRAIN_DEPLOYMENT,
        parameters={"workspace": str(root), "overrides": []},
        concurrency_limit=one_at_a_time,
        description="Retrain with overrides (key=value, as dvc exp run -S); released only if it passes the gate.",
        tags=["impkit"],
    )
    return [release, retrain]


def main(argv: list[str] | None = None) -> None:
    from prefect import serve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=".")
    args = parser.parse_args(argv)
    serve(*deployments(Path(args.workspace)))


if __name__ == "__main__":
    main()
