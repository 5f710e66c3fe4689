"""`make ui`: the Prefect server (SQLite under .prefect/ by default), the served deployments
(flows.serve: the scheduled release flow and the retrain flow) and the Evidently UI over
dashboards/evidently, started together; their addresses are printed, and Ctrl-C stops everything
this command started (each in its own process group), leaving no process behind.

python -m flows.ui [--prefect-port 4200] [--evidently-port 8000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


class Services:
    """Child processes, each the leader of its own process group, stopped together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        proc = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True)
        self.children.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; stopping the others")

    def stop(self, grace: float = 15.0) -> None:
        for _, proc in reversed(self.children):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # whatever is left of the group (its own children too)
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_for(url: str, services: Services, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services.check()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=".", help="the DVC workspace the flows build (default: here)")
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--evidently-port", type=int, default=8000)
    parser.add_argument("--prefect-home", help="Prefect's home (its SQLite database); default <workspace>/.prefect")
    args = parser.parse_args(argv)
    workspace = Path(args.workspace).resolve()
    repo = Path(__file__).resolve().parents[1]
    prefect_api = f"http://127.0.0.1:{args.prefect_port}/api"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(Path(args.prefect_home or workspace / ".prefect").resolve()),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p),
    }
    evidently_workspace = workspace / "dashboards" / "evidently"
    services = Services()
    stop = False

    def request_stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        prefect = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(args.prefect_port)]
        services.start("the Prefect server", prefect, env, workspace)
        wait_for(f"{prefect_api}/health", services)
        services.start(
            "the Prefect deployments", [sys.executable, "-m", "flows.serve", "--workspace", str(workspace)], env, repo
        )
        evidently_ui = "not started: no dashboards/evidently yet (dvc repro builds it)"
        if evidently_workspace.is_dir():
            command = [str(BIN / "evidently"), "ui", "--workspace", str(evidently_workspace), "--host", "127.0.0.1"]
            services.start("the Evidently UI", [*command, "--port", str(args.evidently_port)], env, workspace)
            evidently_ui = f"http://127.0.0.1:{args.evidently_port}"
            wait_for(f"{evidently_ui}/api/projects/", services)
        print(
            "\nimpkit ui is up (Ctrl-C stops everything):\n"
            f"  Prefect UI        http://127.0.0.1:{args.prefect_port}   (deployments: scheduled-release, retrain)\n"
            f"  Evidently UI      {evidently_ui}\n"
            f"  release dashboard {(workspace / 'dashboards' / 'index.html').as_uri()}\n",
            flush=True,
        )
        while not stop:
            services.check()
            time.sleep(0.5)
    except RuntimeError as exc:  # a service died or never answered: say which, after stopping the rest
        print(f"impkit ui: {exc}", file=sys.stderr, flush=True)
        code = 1
    else:
        code = 0
    finally:
        print("stopping the services this command started...", flush=True)
        services.stop()
        print("stopped", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
