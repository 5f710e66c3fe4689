"""The release flow under Prefect's test harness, on a tiny DVC pipeline in a scratch git repository:
one task per DVC stage in DVC's order, streamed logs, states, artifacts, a failing stage's report, and
a second build of the same workspace refused while one runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TINY_DVC_YAML = """
stages:
  first:
    cmd: python -c "open('a.txt','w').write('a')"
    outs: [a.txt]
  second:
    cmd: python -c "import time; print('second is working'); open('b.txt','w').write(open('a.txt').read()+'b')"
    deps: [a.txt]
    outs: [b.txt]
  third:
    cmd: python -c "open('c.txt','w').write(open('b.txt').read()+'c')"
    deps: [b.txt]
    outs: [c.txt]
  side:
    cmd: python -c "open('s.txt','w').write('s')"
    outs: [s.txt]
"""


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory):
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def _git_dvc_repo(root: Path) -> Path:
    dvc = str(Path(sys.executable).with_name("dvc"))
    for command in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    (root / "dvc.yaml").write_text(TINY_DVC_YAML)
    return root


def _task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    return sorted(runs, key=lambda r: r.start_time)


def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found[0] if found else None


def test_the_pipeline_is_read_from_dvc_in_its_order(tmp_path):
    from flows.dvc_dag import read_pipeline

    pipeline = read_pipeline(_git_dvc_repo(tmp_path))
    assert pipeline.order == ["first", "second", "third", "side"]
    assert pipeline.needs == {"first": [], "second": ["first"], "third": ["second"], "side": []}
    assert read_pipeline(tmp_path, ["second"]).order == ["first", "second"]
    with pytest.raises(ValueError, match="no stage"):
        read_pipeline(tmp_path, ["fourth"])


def test_the_release_flow_runs_one_task_per_stage_and_publishes_its_releases(prefect_harness, tmp_path):
    from flows.release import release_flow

    workspace = _git_dvc_repo(tmp_path)
    state = release_flow(str(workspace), return_state=True)
    assert state.is_completed(), state
    assert [r["stage"] for r in state.result()] == ["first", "second", "third", "side"]
    runs = _task_runs(state.state_details.flow_run_id)
    assert [r.name for r in runs] == ["first", "second", "third", "side"]
    assert all(r.state.is_completed() and r.total_run_time.total_seconds() > 0 for r in runs)
    assert (workspace / "c.txt").read_text() == "abc"
    assert "Current releases" in _artifact("releases").data
    # again: DVC finds everything up to date, and the flow says so
    again = release_flow(str(workspace), return_state=True)
    assert [r["ran"] for r in again.result()] == [False] * 4


def test_a_failing_stage_fails_the_flow_with_its_last_lines(prefect_harness, tmp_path):
    from flows.release import release_flow

    workspace = _git_dvc_repo(tmp_path)
    yaml_text = TINY_DVC_YAML.replace(
        "open('b.txt','w').write(open('a.txt').read()+'b')", "import sys; sys.exit('b cannot be made')"
    )
    (workspace / "dvc.yaml").write_text(yaml_text)
    state = release_flow(str(workspace), return_state=True)
    assert state.is_failed()
    runs = _task_runs(state.state_details.flow_run_id)
    assert [(r.name, r.state.type.value) for r in runs] == [("first", "COMPLETED"), ("second", "FAILED")]
    report = _artifact("build-failure").data
    assert "Stage `second` failed" in report and "b cannot be made" in report and "second is working" in report


def test_a_second_build_of_the_same_workspace_is_refused_while_one_runs(prefect_harness, tmp_path):
    from filelock import FileLock

    from flows.release import LOCK, BuildRunning, release_flow

    workspace = _git_dvc_repo(tmp_path)
    (workspace / LOCK).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(workspace / LOCK)):  # a build in progress
        with pytest.raises(BuildRunning, match="already running"):
            release_flow(str(workspace))
    assert not (workspace / "a.txt").exists()
