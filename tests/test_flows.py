"""The release flow under Prefect's test harness, on a tiny DVC pipeline in a scratch git repository:
one task per DVC stage in DVC's order, streamed logs, states, artifacts, a failing stage's report, and
a second build of the same workspace refused while one runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

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


def test_the_scheduled_deployment_takes_its_cron_and_parameters_from_params(tmp_path):
    import yaml

    from flows.serve import RELEASE_DEPLOYMENT, deployments

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["flows"]["schedule"] = {"cron": "30 4 * * 2", "timezone": "Europe/Berlin"}
    params["flows"]["release"]["targets"] = ["dashboards"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    release, retrain = deployments(tmp_path)
    assert release.name == RELEASE_DEPLOYMENT
    (schedule,) = release.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 4 * * 2", "Europe/Berlin")
    assert release.parameters == {
        "workspace": str(tmp_path.resolve()),
        "targets": ["dashboards"],
        "wait_if_running": True,
    }
    assert release.concurrency_limit == retrain.concurrency_limit == 1
    assert release.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert retrain.schedules == [] and retrain.parameters["overrides"] == []
    params["flows"]["schedule"]["cron"] = "every monday"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(Exception, match="flows.schedule.cron: five fields"):
        deployments(tmp_path)


def test_the_retrain_gate_passes_within_the_tolerance_and_fails_beyond_it():
    from flows.retrain import gate

    current = {"p": {"vqav2": 50.0, "mme": 1000.0}}
    passed, rows = gate({"p": {"vqav2": 49.0, "mme": 980.0}}, current, 2.0)  # 1 point each (MME: 20 of 2000)
    assert passed and [r["drop"] for r in rows] == [1.0, 1.0]
    passed, rows = gate({"p": {"vqav2": 47.0, "mme": 1100.0}}, current, 2.0)
    assert not passed and {r["benchmark"]: r["ok"] for r in rows} == {"mme": True, "vqav2": False}
    passed, rows = gate({"p": {"mme": 1100.0}}, current, 2.0)  # a benchmark the candidate lost fails
    assert not passed and rows[1]["candidate"] is None
    assert gate({"q": {"vqav2": 1.0}}, {}, 2.0) == (True, [])  # no current release: nothing to fall below


RETRAIN_DVC_YAML = """
stages:
  headline:
    cmd: python -c "import yaml,json,os; x=yaml.safe_load(open('params.yaml'))['p']['x']; os.makedirs('reports/headline',exist_ok=True); json.dump({'benchmarks':{'vqav2':x}},open('reports/headline/tiny.json','w'))"
    params: [p.x]
    metrics:
      - reports/headline/tiny.json:
          cache: false
"""


def test_the_retrain_flow_releases_only_what_passes_its_gate(prefect_harness, tmp_path):
    import json

    import yaml

    from flows.retrain import GateNotPassed, retrain_flow
    from impkit.registry import Registry
    from tests.test_registry import _record

    (tmp_path / "ws").mkdir()
    workspace = _git_dvc_repo(tmp_path / "ws")
    (workspace / "dvc.yaml").write_text(RETRAIN_DVC_YAML)
    params = {"p": {"x": 50}, "flows": yaml.safe_load((REPO / "params.yaml").read_text())["flows"]}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    record = _record(tmp_path / "built")  # a full record, made this pipeline's current release
    record.update(id="tiny-1", preset="tiny")
    record["headline"]["benchmarks"] = {"vqav2": 50}
    Registry(workspace / "registry").add(record)
    dvc = str(Path(sys.executable).with_name("dvc"))
    for command in (
        [dvc, "repro", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "built"],
    ):
        subprocess.run(command, cwd=workspace, check=True, capture_output=True)
    # 10 points below the current release: not released, the workspace untouched
    state = retrain_flow(["p.x=40"], str(workspace), name="worse", return_state=True)
    assert state.is_failed()
    with pytest.raises(GateNotPassed, match="worse is not released: .* tiny vqav2"):
        state.result()
    assert json.loads((workspace / "reports/headline/tiny.json").read_text())["benchmarks"]["vqav2"] == 50
    assert "NOT passed" in _artifact("retrain-gate").data
    # 1 point below: released, the experiment applied to the workspace
    state = retrain_flow(["p.x=49"], str(workspace), name="close", return_state=True)
    assert state.is_completed(), state
    assert yaml.safe_load((workspace / "params.yaml").read_text())["p"]["x"] == 49
    assert json.loads((workspace / "reports/headline/tiny.json").read_text())["benchmarks"]["vqav2"] == 49
