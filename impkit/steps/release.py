"""Step `release`: the build of a preset becomes a release record in the registry (impkit.registry):
its content id, provenance, data mix and quality gate, training summary, every benchmark headline
per backend and level with the blind and majority baselines, parity, sizes, latency per device
profile and level, the paper-size profiles and the files, plus a model card beside it
(registry/<preset>/<id>.json and .md). A rebuild that gives the same model adds nothing."""

from __future__ import annotations

import argparse
import json
import logging

from impkit import paths
from impkit.steps import add_params_argument, add_preset_argument
from impkit.steps.headline import add_imported_argument, report_paths

NAME = "release"
HELP = "record the preset's build as a release in the registry (registry/<preset>)"
OMP_WAIT_POLICY = None  # never loads torch or llama.cpp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_params_argument(parser)
    add_imported_argument(parser)


def _read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def main(args: argparse.Namespace) -> None:
    from impkit.config import ReleaseConfig, load_params, load_section
    from impkit.registry import Registry, build_record
    from impkit.registry.card import model_card
    from impkit.registry.record import git_revision, locked_outputs

    params = load_params(args.params)
    settings = load_section(ReleaseConfig, "release", params)
    reports = {key: _read(path) for key, path in report_paths(args.preset, args.imported).items()}
    profiles = list(params.get("latency", {}).get("paper", {}).get("profiles") or [])
    paper_size = {p: _read(paths.latency_report(p)) for p in profiles if paths.latency_report(p).is_file()}
    backbones = paths.BACKBONES / "backbones.json"
    record = build_record(
        args.preset,
        release_dir=paths.release(args.preset),
        gguf_dir=paths.gguf(args.preset),
        reports=reports,
        params=params,
        # an imported release was trained elsewhere: none of this build's data or backbones went into it
        data_manifest=None if args.imported else _read(paths.ASSEMBLED / "manifest.json"),
        backbones_manifest=_read(backbones) if backbones.is_file() and not args.imported else None,
        paper_size=paper_size,
        tolerance_points=settings.recommend.tolerance_points,
        dvc_outputs=locked_outputs(paths.DVC_LOCK, [paths.release(args.preset), paths.gguf(args.preset)]),
        git=git_revision(),
    )
    registry = Registry(paths.REGISTRY)
    training_data = None if args.imported else paths.ASSEMBLED / "finetune.jsonl"
    added = registry.add(record, card=model_card(record), training_data=training_data)
    log = logging.getLogger("impkit")
    if added:
        log.info("%s: new release %s (%s)", args.preset, record["id"], registry.record_path(record))
    else:
        log.info("%s: release %s is already registered; nothing added", args.preset, record["id"])
