"""The `impkit` command: the library's entry points for people (DVC runs stages/ directly)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from impkit import __version__


def _cmd_world(args: argparse.Namespace) -> None:
    from impkit.config import WorldConfig, from_dict, load_params, section
    from impkit.data.synth import generate_world
    from impkit.io import atomic_path

    cfg = from_dict(WorldConfig, section(load_params(args.params), "world"), "world")
    with atomic_path(args.out) as tmp:
        summary = generate_world(cfg, tmp)
    print(summary)


def _cmd_assemble(args: argparse.Namespace) -> None:
    from impkit.config import DataConfig, from_dict, load_params, section
    from impkit.data.assemble import AssemblyPaths, assemble

    raw = section(load_params(args.params), "data")
    out = Path(args.out)
    paths = AssemblyPaths(
        out / "assembled", out / "quarantine", out / "cache" / "image_checks.sqlite", out / "data_quality"
    )
    manifest = assemble(from_dict(DataConfig, raw, "data"), paths, recipe=raw)
    summary = {
        name: {k: m[k] for k in ("in", "kept", "quarantined", "dropped", "gate")}
        for name, m in manifest["mixtures"].items()
    }
    print(json.dumps(summary, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"impkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("world", help="generate the synthetic world into a folder")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="data/world")
    p.set_defaults(func=_cmd_world)

    p = sub.add_parser("assemble", help="assemble the data mixtures of a params file into a folder")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="build", help="folder for assembled/, quarantine/, cache/, data_quality/")
    p.set_defaults(func=_cmd_assemble)
    return parser


def main(argv: list[str] | None = None) -> None:
    from impkit.stage import run_stage

    args = build_parser().parse_args(argv)
    run_stage(lambda: args.func(args))


if __name__ == "__main__":
    main(sys.argv[1:])
