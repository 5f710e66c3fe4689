"""The release flow: the DVC pipeline as one Prefect task per DVC stage, in the order DVC reads from
`dvc.yaml`, each task running `dvc repro --single-item <stage>` so that the Prefect UI shows every
stage's state, its log (streamed line by line) and its duration. DVC decides what is stale: the
tasks cache nothing, and none is retried (a stage that failed fails the same way again, and training
must not restart behind a person's back).

DVC holds a lock on the workspace while a stage runs, so the stages run one at a time; a second
build of the same workspace is refused at once with a clear message (or queued, with
``wait_if_running``). On success the flow publishes the releases' headline table and the dashboard's
link as Prefect artifacts; on failure, the failing stage and its last log lines.

python -m flows.release                      # the whole pipeline, once
python -m flows.release --targets release@nano-3b
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.dvc_dag import StageRun, read_pipeline, repro_stage, stream_command

LOCK = Path(".dvc/tmp/impkit-build.lock")


class StageFailed(RuntimeError):
    pass


class BuildRunning(RuntimeError):
    pass


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE, retries=0)
def dvc_stage(workspace: str, stage: str) -> dict:
    """One DVC stage; its output streams into this task's log as DVC prints it."""
    logger = get_run_logger()
    run = repro_stage(Path(workspace), stage, logger.info)
    if run.returncode != 0:
        _publish_failure(run)
        raise StageFailed(f"stage {stage} failed with exit code {run.returncode} after {run.seconds} s")
    logger.info("%s: %s in %.1f s", stage, "ran" if run.ran else "up to date", run.seconds)
    return {"stage": stage, "ran": run.ran, "seconds": run.seconds}


def default_remote(root: Path) -> str | None:
    """The workspace's default DVC remote (`.dvc/config`), or None."""
    import subprocess
    import sys

    dvc = str(Path(sys.executable).with_name("dvc"))
    found = subprocess.run([dvc, "remote", "default"], cwd=root, capture_output=True, text=True)
    name = found.stdout.strip()
    return name if found.returncode == 0 and name and "No default remote" not in name else None


@task(name="dvc-push", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)  # storage can fail and come back
def dvc_push(workspace: str) -> None:
    """Push the build's cached outputs (releases, GGUF files, reports) to the default remote."""
    logger = get_run_logger()
    code, tail = stream_command(Path(workspace), ["push"], logger.info)
    if code != 0:
        raise RuntimeError(f"dvc push failed (exit code {code}): {tail[-1] if tail else ''}")


def _publish_failure(run: StageRun) -> None:
    lines = "\n".join(run.tail)
    create_markdown_artifact(
        key="build-failure",
        markdown=f"## Stage `{run.stage}` failed (exit code {run.returncode})\n\nIts last lines:\n\n```\n{lines}\n```\n",
        description=f"the stage that failed: {run.stage}",
    )


def _publish_releases(workspace: Path, ran: list[dict]) -> None:
    from impkit.headline import heldout_cell
    from impkit.registry import Registry

    registry = Registry(workspace / "registry")
    current = set(registry.current().values())
    rows = [
        "| release | preset | created | held-out (lead) | benchmarks | Q4_K_M (MB) | ship |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in registry.records():
        if record["id"] not in current:
            continue
        held = record["headline"]["heldout"]
        bench = ", ".join(f"{k} {v:g}" for k, v in record["headline"]["benchmarks"].items())
        ship = ", ".join(f"{p}: {c['level']}" for p, c in (record.get("recommendation") or {}).items())
        size = record["headline"]["gguf"]["size_mb"].get("Q4_K_M", "–")
        rows.append(
            f"| {record['id']} | {record['preset']} | {record['created']} | {heldout_cell(held)} "
            f"| {bench} | {size} | {ship} |"
        )
    stages = ", ".join(f"{r['stage']} ({r['seconds']} s)" for r in ran if r["ran"]) or "none: everything was up to date"
    create_markdown_artifact(
        key="releases",
        markdown="## Current releases\n\n" + "\n".join(rows) + f"\n\nStages run in this build: {stages}\n",
        description="the current release of each preset",
    )
    dashboard = workspace / "dashboards" / "index.html"
    if dashboard.is_file():
        create_link_artifact(key="release-dashboard", link=dashboard.resolve().as_uri(), link_text="release dashboard")


@contextmanager
def workspace_lock(root: Path, wait: bool) -> Iterator[None]:
    """One build of a workspace at a time: a second one waits (``wait``) or is refused at once."""
    (root / LOCK).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        raise BuildRunning(
            f"a build of {root} is already running (lock {LOCK}); this one is refused. Wait for it to end, "
            "or run with wait_if_running=true to queue behind it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def build(root: Path, targets: Sequence[str] = ()) -> list[dict]:
    """Every stage of the pipeline (or ``targets`` and what they need) as a task, in DVC's order;
    then the releases published. The caller holds the workspace lock."""
    logger = get_run_logger()
    pipeline = read_pipeline(root, targets)
    logger.info("%d stage(s), in this order: %s", len(pipeline.order), ", ".join(pipeline.order))
    ran = [dvc_stage(str(root), stage) for stage in pipeline.order]
    _publish_releases(root, ran)
    if any(r["ran"] for r in ran) and default_remote(root):
        dvc_push(str(root))  # the team's machines pull the new releases instead of rebuilding them
    return ran


@flow(name="impkit-release", log_prints=True)
def release_flow(workspace: str = ".", targets: Sequence[str] = (), wait_if_running: bool = False) -> list[dict]:
    """Run the DVC pipeline of ``workspace`` (or only ``targets`` and what they need), stage by stage."""
    root = Path(workspace).resolve()
    with workspace_lock(root, wait_if_running):
        return build(root, targets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=".")
    parser.add_argument("--targets", nargs="*", default=[], metavar="STAGE")
    parser.add_argument("--wait-if-running", action="store_true")
    args = parser.parse_args(argv)
    release_flow(args.workspace, args.targets, args.wait_if_running)


if __name__ == "__main__":
    main()
