"""Sharing builds through a DVC remote: a release recorded on one machine is pushed to a
local-directory remote, pulled by its id into a fresh clone (`impkit releases pull`), and evaluated
there without anything being rebuilt."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from impkit.registry import Registry
from impkit.registry.record import locked_outputs
from impkit.release import write_release
from tests.test_registry import _record

DVC = str(Path(sys.executable).with_name("dvc"))
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
STAGE = """
stages:
  publish:  # stands in for tune@p and export@p: the release folder and its GGUF files
    cmd: cp -r staged/release releases/p && mkdir -p models/gguf/p && cp staged/llm-F16.gguf models/gguf/p/
    deps: [staged]
    outs: [releases/p, models/gguf/p]
"""


def _run(command, cwd):
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_release_pushed_to_the_remote_is_pulled_into_a_fresh_clone_and_evaluated(
    tiny, eval_twins, eval_world, tmp_path
):
    team, remote, fresh = tmp_path / "team", tmp_path / "remote", tmp_path / "fresh"
    team.mkdir()
    _run(["git", "init", "-q"], team)
    _run([DVC, "init", "-q"], team)
    _run([DVC, "remote", "add", "-d", "team", str(remote)], team)
    preset, tokenizer, model = tiny
    write_release(model, tokenizer, preset, team / "staged" / "release", {"preset": "p"})
    (team / "staged" / "llm-F16.gguf").write_bytes(b"GGUF stand-in")
    (team / "releases").mkdir()
    (team / "dvc.yaml").write_text(STAGE)
    _run([DVC, "repro", "-q"], team)
    # the record keeps the folders' DVC hashes, read from dvc.lock as the release stage does
    locked = locked_outputs(team / "dvc.lock", [Path("releases/p"), Path("models/gguf/p")])
    assert set(locked) == {"releases/p", "models/gguf/p"} and locked["releases/p"]["md5"].endswith(".dir")
    record = _record(tmp_path / "r")
    record["files"] = {
        "release": {"folder": "releases/p", "files": {}},
        "gguf": {"folder": "models/gguf/p", "files": {}},
        "dvc": locked,
    }
    Registry(team / "registry").add(record)
    _run([DVC, "push", "-q"], team)
    _run([*GIT, "add", "-A"], team)
    _run([*GIT, "commit", "-qm", "a release"], team)

    _run(["git", "clone", "-q", str(team), str(fresh)], tmp_path)
    assert not (fresh / "releases" / "p").exists()  # outputs travel through the remote, not git
    pulled = _run([sys.executable, "-m", "impkit.cli", "releases", "pull", record["id"][:6]], fresh)
    assert record["id"] in pulled.stdout
    release = fresh / "pulled" / record["id"] / "release"
    original = team / "releases" / "p"
    assert {p.name: _sha(p) for p in release.iterdir()} == {p.name: _sha(p) for p in original.iterdir()}
    assert (fresh / "pulled" / record["id"] / "gguf" / "llm-F16.gguf").read_bytes() == b"GGUF stand-in"
    assert not (fresh / "releases" / "p").exists()  # nothing was rebuilt: the stage never ran here

    out = tmp_path / "eval"
    _run(
        [
            sys.executable,
            "-m",
            "impkit.cli",
            "evaluate",
            str(release),
            "--twins",
            str(eval_twins),
            "--images",
            str(eval_world / "images"),
            "--benchmarks",
            "pope",
            "--out",
            str(out),
            "--params",
            str(Path(__file__).resolve().parents[1] / "params.yaml"),
            "--batch-size",
            "8",
        ],
        fresh,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert "pope" in json.dumps(metrics)
    for gone in (remote, fresh / "pulled", fresh / ".dvc" / "cache"):  # without the remote, the pull says why
        shutil.rmtree(gone)
    failed = subprocess.run(
        [sys.executable, "-m", "impkit.cli", "releases", "pull", record["id"]],
        cwd=fresh,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and "dvc pull of" in failed.stderr and "Traceback" not in failed.stderr


def test_a_promotion_is_tagged_in_gto_only_at_a_commit_that_holds_the_release(tiny, tmp_path, monkeypatch):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for name, value in (("NAME", "t"), ("EMAIL", "t@t")):  # git tags need an author
        monkeypatch.setenv(f"GIT_AUTHOR_{name}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{name}", value)
    _run(["git", "init", "-q"], workspace)
    _run([DVC, "init", "-q"], workspace)
    preset, tokenizer, model = tiny
    write_release(model, tokenizer, preset, workspace / "staged" / "release", {"preset": "p"})
    (workspace / "staged" / "llm-F16.gguf").write_bytes(b"GGUF stand-in")
    (workspace / "releases").mkdir()
    artifacts = "\nartifacts:\n  p:\n    path: releases/p\n    type: model\n"
    (workspace / "dvc.yaml").write_text(STAGE + artifacts)
    _run([DVC, "repro", "-q"], workspace)
    record = _record(tmp_path / "r")
    record["preset"] = "p"
    record["files"] = {
        "release": {"folder": "releases/p", "files": {}},
        "gguf": {"folder": "models/gguf/p", "files": {}},
        "dvc": locked_outputs(workspace / "dvc.lock", [Path("releases/p"), Path("models/gguf/p")]),
    }
    Registry(workspace / "registry").add(record)
    monkeypatch.chdir(workspace)
    from impkit.cli import main

    main(["releases", "promote", record["id"], "--stage", "staging"])  # the build is not committed yet
    assert _run(["git", "tag", "-l"], workspace).stdout == ""
    assert Registry(workspace / "registry").stages() == {record["id"]: ["staging"]}  # the registry has it anyway
    _run([*GIT, "add", "-A"], workspace)
    _run([*GIT, "commit", "-qm", "the build"], workspace)
    main(["releases", "promote", record["id"], "--stage", "prod"])
    main(["releases", "promote", record["id"][:5], "--stage", "staging"])  # the same version, another stage
    assert sorted(_run(["git", "tag", "-l"], workspace).stdout.split()) == ["p#prod#1", "p#staging#2", "p@v1.0.0"]
