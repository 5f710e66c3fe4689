"""`make ui` for real: the Prefect server, the served deployments and the Evidently UI start on
loopback, answer through their APIs (the deployment with its schedule, the dashboard's runs), the
Evidently dashboard renders in Chromium, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml

from impkit.dashboards.evidently_workspace import build_workspace, project_id
from impkit.registry import Registry
from tests.browser import chromium_page, keep_screenshot
from tests.test_registry import _record

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (workspace / "params.yaml").write_text(yaml.safe_dump({"flows": params["flows"]}))
    registry = Registry(workspace / "registry")
    for day, weights in ((1, b"a"), (2, b"b")):
        record = _record(tmp_path / f"r{day}", weights=weights, created=datetime(2026, 1, day, tzinfo=UTC))
        record["family"] = "phi2"
        registry.add(record)
    build_workspace(registry.records(), workspace / "dashboards" / "evidently")
    return workspace


def test_make_ui_starts_prefect_its_deployments_and_evidently_and_stops_them_all(tmp_path):
    workspace = _workspace(tmp_path)
    prefect_port, evidently_port = _free_port(), _free_port()
    command = [
        sys.executable,
        "-m",
        "flows.ui",
        "--workspace",
        str(workspace),
        "--prefect-port",
        str(prefect_port),
        "--evidently-port",
        str(evidently_port),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ui = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = []
    try:
        deadline = time.monotonic() + 240
        for line in ui.stdout:
            started.append(line)
            if "impkit ui is up" in line or time.monotonic() > deadline:
                break
        assert any("impkit ui is up" in line for line in started), "".join(started[-30:])
        group = [ui.pid, *(c.pid for c in psutil.Process(ui.pid).children(recursive=True))]
        api = f"http://127.0.0.1:{prefect_port}/api"
        cron = yaml.safe_load((REPO / "params.yaml").read_text())["flows"]["schedule"]["cron"]
        deployments = []
        while time.monotonic() < deadline and not deployments:  # the served flows register themselves
            deployments = [d for d in _get(f"{api}/deployments/filter", {}) if d["name"] == "scheduled-release"]
            time.sleep(1)
        (release,) = deployments
        assert release["schedules"][0]["schedule"]["cron"] == cron
        assert release["parameters"]["workspace"] == str(workspace.resolve())
        evidently = f"http://127.0.0.1:{evidently_port}"
        assert [p["name"] for p in _get(f"{evidently}/api/projects/")] == ["impkit phi2"]
        runs = _get(f"{evidently}/api/projects/{project_id('phi2')}/snapshots")
        assert sorted(r["name"] for r in runs) == sorted(r["id"] for r in Registry(workspace / "registry").records())
        with chromium_page() as page:  # the dashboard draws a point per release on each panel
            page.goto(f"{evidently}/projects/{project_id('phi2')}")
            page.get_by_text("GGUF size (MB)").wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            marks = page.locator("svg circle.MuiMarkElement-root").count()  # one per release on each line
            assert marks >= 2 * 8 and marks % 2 == 0
            keep_screenshot(page, "evidently-dashboard")
            assert page.errors == []
    finally:
        ui.send_signal(signal.SIGINT)
        out, _ = ui.communicate(timeout=120)
    assert ui.returncode == 0, out
    assert "stopped" in out
    time.sleep(1)
    assert [
        pid for pid in group if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ] == []
