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


def _cmd_twins(args: argparse.Namespace) -> None:
    from impkit.config import from_dict, load_params, section
    from impkit.eval.twins import EvalConfig, generate_twins

    cfg = from_dict(EvalConfig, section(load_params(args.params), "eval"), "eval")
    manifest = generate_twins(Path(args.heldout), Path(args.out), seed=cfg.seed, sizes=cfg.twins)
    counts = {name: entry["n_prompts"] for name, entry in manifest["benchmarks"].items()}
    print(json.dumps({"out": str(args.out), "prompts": counts}, indent=2))


def _cmd_score(args: argparse.Namespace) -> None:
    import logging

    from impkit.eval.scoring import SCORERS, ScoringError
    from impkit.io import write_json

    try:
        metrics = SCORERS[args.benchmark](args.annotations, args.predictions, questions=args.questions)
    except ScoringError as exc:  # bad input: the one-line message is the whole story
        logging.getLogger("impkit").error("%s", exc)
        sys.exit(1)
    if args.out:
        write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))


def _score_epilog() -> str:
    from impkit.eval.scoring.registry import INPUTS  # light: the scorers use the standard library only

    rows = []
    for name, (annotation_files, question_files, prediction_files) in INPUTS.items():
        rows.append(f"  {name:<11} --annotations {annotation_files}")
        if question_files != "-":
            rows.append(f"  {'':<11} --questions {question_files}")
        rows.append(f"  {'':<11} --predictions {prediction_files}")
    return (
        "what each benchmark reads (official formats; --questions is an error where not listed):\n"
        + "\n".join(rows)
        + "\n\nmme: ground truth and predictions are in the same eval-tool files, so --annotations is not\n"
        "needed (if given it must be the --predictions folder). mmvet has no number without an LLM judge.\n"
        "Rates are x100 (percent); missing predictions count as wrong and are reported as 'missing'."
    )


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

    p = sub.add_parser(
        "twins", help="write the ten benchmarks' synthetic twins (official formats) from the held-out world"
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--heldout", default="data/world/heldout", help="the world's held-out split")
    p.add_argument("--out", default="build/twins")
    p.set_defaults(func=_cmd_twins)

    p = sub.add_parser(
        "score",
        help="score a benchmark's predictions against its official annotation files",
        description="Score predictions as the benchmark's reference code does; print the metrics as JSON.",
        epilog=_score_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("benchmark", help="one of the benchmarks listed below")
    p.add_argument("--annotations", help="the official annotation file or folder (see below)")
    p.add_argument("--questions", help="a second official file, for vqav2 and sqa only (see below)")
    p.add_argument("--predictions", required=True, help="the model's answers in the benchmark's result format")
    p.add_argument("--out", help="also write the metrics JSON here (atomically)")
    p.set_defaults(func=_cmd_score)
    return parser


def main(argv: list[str] | None = None) -> None:
    from impkit.stage import run_stage

    args = build_parser().parse_args(argv)
    run_stage(lambda: args.func(args))


if __name__ == "__main__":
    main(sys.argv[1:])
