"""The release record: what one build of one preset gave, in one JSON document.

The **content id** is the hash of the release folder's files (weights, tokenizer, processor, the
record ``impkit.json``) and the preset's name: the same model gives the same id however often it is
rebuilt, a changed param that changes the model gives a new one. What determined the model is kept
beside it as provenance (``determinants``: the hashes of the params sections training reads, of the
data manifest and of the backbones manifest, and the git revision when the workspace is a git
repository).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from impkit import paths
from impkit.headline import headline
from impkit.registry.recommend import recommend

# the params sections that decide what a preset's training produces
TRAINING_SECTIONS = ("world", "data", "backbones", "train")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (sorted relative paths) with its size and sha256."""
    return {
        str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
    }


def _canonical_sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def content_id(preset: str, release_files: Mapping[str, Mapping[str, Any]]) -> str:
    """``<preset>-<12 hex>``: the preset and the hash of its release folder's files."""
    digest = _canonical_sha256({"preset": preset, "files": {k: v["sha256"] for k, v in release_files.items()}})
    return f"{preset}-{digest[:12]}"


# What the build itself writes into tracked files as it runs: changes there say nothing about the code
# and params the release was built from.
BUILD_WRITES = (paths.DVC_LOCK, Path("reports"), paths.REGISTRY, Path("dashboards"))


def git_revision(root: Path = Path(".")) -> dict[str, Any] | None:
    """The workspace's commit and whether its sources (code, params, the pipeline; anything tracked
    but what the build writes, ``BUILD_WRITES``) had uncommitted changes; None outside git."""
    excluded = [f":(exclude){path.as_posix()}" for path in BUILD_WRITES]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", *excluded],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def locked_outputs(lock_file: Path, wanted: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """The hashes DVC recorded in ``lock_file`` for the outputs ``wanted`` (path -> md5, size,
    nfiles), as their stages wrote them. `impkit releases pull` fetches a release by them from the DVC
    remote, whatever the git revision. Outputs not (yet) in the lock file are left out."""
    if not lock_file.is_file():
        return {}
    import yaml

    found = {}
    wanted_paths = {str(p) for p in wanted}
    for stage in (yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") in wanted_paths and "md5" in out:
                found[out["path"]] = {k: out[k] for k in ("md5", "size", "nfiles") if k in out}
    return found


def _data_summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The source mix and the quality gate of each mixture, from the assembly's manifest."""
    summary = {}
    for name, mixture in manifest.get("mixtures", {}).items():
        summary[name] = {
            "in": mixture["in"],
            "kept": mixture["kept"],
            "quarantined": mixture["quarantined"],
            "dropped": mixture["dropped"],
            "gate": mixture["gate"],
            "sources": {
                s["source"]: {
                    "in": s["in"],
                    "kept": s["kept"],
                    "quarantined": s["quarantined"],
                    "reasons": s["quarantine_reasons"],
                }
                for s in mixture["sources"]
            },
            "kept_share": {s["source"]: round(s["kept_share"], 4) for s in mixture.get("shares", [])},
        }
    return summary


def _latency_summary(latency: Mapping[str, Any]) -> dict[str, Any]:
    """Per device profile and level: T_VE, S_prompt, S_gen, T_total as median, min and max."""
    figures = {}
    for result in latency.get("results", []):
        device, model = result["device"]["name"], result["model"]
        level = model.get("level") or model.get("format")
        summary = result["summary"]
        figures[f"{device}/{level}"] = {
            key: summary[key] for key in ("t_ve_s", "s_prompt_tps", "s_gen_tps", "t_total_s") if key in summary
        }
    return figures


def _training(train: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The training summary of a trained release, or where an imported one came from."""
    if train is None:
        return {"imported": meta.get("imported"), "parameters": meta.get("parameters")}
    return {**train.get("train", {}), "parameters": train.get("parameters")}


def build_record(
    preset: str,
    *,
    release_dir: Path,
    gguf_dir: Path,
    reports: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
    data_manifest: Mapping[str, Any] | None,
    backbones_manifest: Mapping[str, Any] | None,
    paper_size: Mapping[str, Mapping[str, Any]],
    tolerance_points: float,
    dvc_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    created: datetime | None = None,
    git: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of ``preset``'s release from its folders and the build's reports (keys as
    ``impkit.headline.headline`` takes them); ``tolerance_points`` decides which GGUF level is
    recommended (impkit.registry.recommend). An imported release (``impkit import``: no ``train``
    report, no ``data_manifest``) records where it came from instead of its training and data."""
    release_files = folder_files(release_dir)
    meta = json.loads((release_dir / "impkit.json").read_text(encoding="utf-8"))
    evaluation = reports["eval"]
    gguf_levels = reports["eval_gguf"].get("levels", {})
    record = {
        "id": content_id(preset, release_files),
        "preset": preset,
        "family": meta.get("family"),
        "model": meta.get("model"),
        "created": (created or datetime.now(UTC)).isoformat(timespec="seconds"),
        "git": dict(git) if git else None,
        "determinants": {
            "params_sha256": _canonical_sha256({s: params.get(s) for s in TRAINING_SECTIONS}),
            "preset_params": params.get("model", {}).get("presets", {}).get(preset),
            "data_manifest_sha256": _canonical_sha256(data_manifest) if data_manifest is not None else None,
            "backbones_sha256": _canonical_sha256(backbones_manifest) if backbones_manifest else None,
        },
        "headline": headline(reports),
        "training": _training(reports.get("train"), meta),
        "heldout": reports["train"].get("heldout") if "train" in reports else None,
        "data": _data_summary(data_manifest) if data_manifest is not None else {},
        "benchmarks": {
            "torch": evaluation.get("torch"),
            "majority": evaluation.get("majority"),
            "gguf": {level: entry.get("headline") for level, entry in gguf_levels.items()},
            "gguf_answer_agreement": {level: entry.get("answer_agreement") for level, entry in gguf_levels.items()},
        },
        "parity": {k: v for k, v in reports["parity"].items() if k != "per_prompt"},
        "sizes": reports["export"].get("bytes"),
        "latency": _latency_summary(reports["latency"]),
        "paper_size": {name: _latency_summary(report) for name, report in paper_size.items()},
        "files": {
            "release": {"folder": str(release_dir), "files": release_files},
            "gguf": {"folder": str(gguf_dir), "files": folder_files(gguf_dir) if gguf_dir.is_dir() else {}},
            "dvc": dict(dvc_outputs or {}),  # the folders' hashes in DVC's cache and remote
        },
    }
    record["recommendation"] = recommend(record, tolerance_points)
    return record
