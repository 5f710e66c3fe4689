"""Releases in GTO, DVC's model registry on git tags (what DVC Studio-style tools read): a promoted
release is registered as a version of its preset's artifact (dvc.yaml `artifacts:`) at the commit
that holds it, and assigned the stage.

A release is registered only at a commit whose dvc.lock records this very release folder (the hash
the release record keeps); otherwise the promotion stays in registry/promotions.jsonl alone and the
message says to commit the build first. The registry works without git; GTO adds the tags on top.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def _gto(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    return _run([str(Path(sys.executable).with_name("gto")), *args], workspace)


def committed_release_hash(workspace: Path, folder: str) -> str | None:
    """The hash HEAD's dvc.lock records for ``folder``; None outside git or when it records none."""
    shown = _run(["git", "show", "HEAD:dvc.lock"], workspace)
    if shown.returncode != 0:
        return None
    for stage in (yaml.safe_load(shown.stdout) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") == folder:
                return out.get("md5")
    return None


def _versions(workspace: Path, artifact: str) -> list[dict[str, Any]]:
    shown = _gto(workspace, "show", artifact, "--json")
    if shown.returncode != 0:
        return []
    return json.loads(shown.stdout or "[]")


def register_and_assign(workspace: Path, record: Mapping[str, Any], stage: str) -> str:
    """Register ``record`` as a GTO version of its preset (once) and assign it ``stage``; returns what
    happened, in one line."""
    folder = record["files"]["release"]["folder"]
    wanted = (record["files"].get("dvc") or {}).get(folder, {}).get("md5")
    committed = committed_release_hash(workspace, folder)
    if wanted is None or committed != wanted:
        return (
            f"not tagged in GTO: HEAD's dvc.lock does not hold {record['id']} ({folder}); commit the build "
            "that made it, then promote again"
        )
    artifact = record["preset"]
    versions = _versions(workspace, artifact)
    version = next((v["version"] for v in versions if record["id"] in _messages(v)), None)
    if version is None:
        version = f"v{len(versions) + 1}.0.0"
        done = _gto(workspace, "register", artifact, "HEAD", "--version", version, "--message", record["id"])
        if done.returncode != 0:
            return f"not tagged in GTO: gto register failed: {(done.stderr or done.stdout).strip().splitlines()[-1]}"
    done = _gto(workspace, "assign", artifact, "--version", version, "--stage", stage, "--message", record["id"])
    if done.returncode != 0:
        return f"registered {artifact}@{version}; gto assign failed: {(done.stderr or done.stdout).strip().splitlines()[-1]}"
    return (
        f"GTO: {artifact}@{version} is {record['id']}, assigned to {stage} (git tags; push them with git push --tags)"
    )


def _messages(version: Mapping[str, Any]) -> list[str]:
    """The messages a GTO version was registered with (impkit puts the release id there)."""
    return [str(r.get("message", "")).strip() for r in version.get("registrations", [])]
