"""The `impkit` command: the library's entry points for people (DVC runs stages/ directly)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
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
    from impkit.eval.twins import EvalConfig
    from impkit.eval.twins.generate import generate_twins

    cfg = from_dict(EvalConfig, section(load_params(args.params), "eval"), "eval")
    manifest = generate_twins(Path(args.heldout), Path(args.out), seed=cfg.seed, sizes=cfg.twins)
    counts = {name: entry["n_prompts"] for name, entry in manifest["benchmarks"].items()}
    print(json.dumps({"out": str(args.out), "prompts": counts}, indent=2))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import dataclasses

    from impkit.config import from_dict, load_params, section
    from impkit.eval.benchmarks import names
    from impkit.eval.evaluate import compact_metrics, evaluate_release
    from impkit.eval.twins import EvalConfig

    cfg = from_dict(EvalConfig, section(load_params(args.params), "eval"), "eval")
    if args.batch_size is not None:
        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
    if args.no_blind:
        cfg = dataclasses.replace(cfg, blind=False)
    release = Path(args.release)
    out = Path(args.out) if args.out else Path("build/eval") / release.name
    if args.gguf:  # the exported files through llama.cpp, one evaluation per level
        from impkit.eval.gguf_levels import GGUFEvalConfig, evaluate_levels

        run_cfg = GGUFEvalConfig(threads=args.threads, workers=1)
        levels = evaluate_levels(
            release,
            Path(args.gguf),
            args.levels,
            Path(args.twins),
            Path(args.images),
            out,
            cfg,
            run_cfg,
            benchmarks=args.benchmarks or names(),
        )
        print(json.dumps({level: compact_metrics(d) for level, d in levels.items()}, indent=2, ensure_ascii=False))
        print(f"predictions, metrics.json, details.json and table3.md per level in {out}/<level>")
        return
    details = evaluate_release(
        release, Path(args.twins), Path(args.images), out, cfg, benchmarks=args.benchmarks or names()
    )
    if details is not None:  # the main process (see impkit.eval.parallel)
        print(json.dumps(compact_metrics(details), indent=2, ensure_ascii=False))
        print(f"predictions, metrics.json, details.json and table3.md in {out}")


def _cmd_table3(args: argparse.Namespace) -> None:
    from impkit.eval.evaluate import collect_details, table3
    from impkit.io import atomic_open

    text = table3(collect_details(Path(args.root)))
    if args.out:
        with atomic_open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    print(text, end="")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from impkit.eval.benchmarks.prepare import prepare

    entry = prepare(
        args.benchmark,
        Path(args.out),
        annotations=args.annotations,
        questions=args.questions,
        images=args.images,
        image_pattern=args.image_pattern,
    )
    summary = {
        "benchmark": args.benchmark,
        "prompts": entry["n_prompts"],
        "gold": entry["gold"] is not None,
        "out": str(args.out),
    }
    print(json.dumps(summary, indent=2))


def _cmd_score(args: argparse.Namespace) -> None:
    import logging

    from impkit.eval import benchmarks
    from impkit.eval.scoring import ScoringError
    from impkit.io import write_json

    try:
        extra = {"judge": judge} if (judge := _judge_from_args(args)) is not None else {}
        metrics = benchmarks.get(args.benchmark).score(
            args.annotations, args.predictions, questions=args.questions, **extra
        )
    except ScoringError as exc:  # bad input: the one-line message is the whole story
        logging.getLogger("impkit").error("%s", exc)
        sys.exit(1)
    if args.out:
        write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))


def _judge_from_args(args: argparse.Namespace):
    """The MM-Vet judge the --judge-* flags describe, or None when none is given."""
    from impkit.eval import benchmarks
    from impkit.eval.scoring import ScoringError

    flags = {"--judge-endpoint": args.judge_endpoint, "--judge-model": args.judge_model}
    given = [flag for flag, value in [*flags.items(), ("--judge-api-key-env", args.judge_api_key_env)] if value]
    if not given:
        return None
    if not benchmarks.get(args.benchmark).judged:
        judged = [name for name in benchmarks.names() if benchmarks.get(name).judged]
        raise ScoringError(
            f"{', '.join(given)}: only {', '.join(judged)} is graded by an LLM judge, not {args.benchmark}"
        )
    if not all(flags.values()):
        raise ScoringError("--judge-endpoint and --judge-model go together: give both (or neither, for no score)")
    from impkit.eval.judge import JudgeConfig, make_judge

    return make_judge(JudgeConfig(args.judge_endpoint, args.judge_model, api_key_env=args.judge_api_key_env))


def _cmd_timings(args: argparse.Namespace) -> None:
    from impkit.timings import read_timings, table

    print(table(read_timings(Path(args.file))))


def _score_epilog() -> str:
    from impkit.eval import benchmarks

    rows, notes = [], []
    for name in benchmarks.names():
        inputs = benchmarks.get(name).score_inputs
        rows.append(f"  {name:<11} --annotations {inputs.annotations}")
        if inputs.questions != "-":
            rows.append(f"  {'':<11} --questions {inputs.questions}")
        rows.append(f"  {'':<11} --predictions {inputs.predictions}")
        if inputs.note:
            notes.append(textwrap.fill(f"{name}: {inputs.note}", 100))
    return (
        "what each benchmark reads (official formats; --questions is an error where not listed):\n"
        + "\n".join(rows)
        + "\n\n"
        + "".join(note + "\n" for note in notes)
        + "Rates are x100 (percent); missing predictions count as wrong and are reported as 'missing'."
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
        "twins", help="write every benchmark's synthetic twin (official formats) from the held-out world"
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--heldout", default="data/world/heldout", help="the world's held-out split")
    p.add_argument("--out", default="build/twins")
    p.set_defaults(func=_cmd_twins)

    p = sub.add_parser(
        "evaluate",
        help="answer and score the benchmark twins (or files in their layout) with a release",
        description="Ask a release every benchmark's prompts (batched greedy; blank-image and majority-answer "
        "baselines beside it), write the answers in the official result formats and score them. "
        "Run under `accelerate launch` to split the questions across processes.",
    )
    p.add_argument("release", help="a release folder (releases/<preset>)")
    p.add_argument("--params", default="params.yaml", help="its `eval` section sets batch size, budgets, judge")
    p.add_argument("--twins", default="data/twins", help="the benchmarks folder written by `impkit twins`")
    p.add_argument("--images", default="data/world/heldout/images", help="the folder image paths are relative to")
    p.add_argument("--out", help="output folder (default build/eval/<release name>)")
    p.add_argument("--benchmarks", nargs="+", metavar="NAME", help="a subset of the benchmarks (default: all)")
    p.add_argument("--batch-size", type=int, help="override eval.batch_size")
    p.add_argument("--no-blind", action="store_true", help="skip the blank-image baseline")
    p.add_argument(
        "--gguf",
        metavar="DIR",
        help="answer with the release's GGUF files in DIR (models/gguf/<preset>) "
        "through llama.cpp instead of PyTorch; no blind baseline",
    )
    p.add_argument("--levels", nargs="+", default=["F16"], metavar="LEVEL", help="with --gguf: levels (default F16)")
    p.add_argument("--threads", type=int, help="with --gguf: llama.cpp threads (default: every core)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("table3", help="the paper's Table 3 layout (Markdown) over evaluated releases")
    p.add_argument("root", nargs="?", default="reports/eval", help="folder of <release>/details.json")
    p.add_argument("--out", help="also write the table here")
    p.set_defaults(func=_cmd_table3)

    p = sub.add_parser(
        "prepare",
        help="write a benchmark's real official files in the twins' layout, for `impkit evaluate --twins`",
        description="Read a benchmark's official files into <out>/<benchmark>/prompts.jsonl (and gold.jsonl when "
        "the files have answers) and merge its entry into <out>/twins.json; every referenced image must exist.",
    )
    p.add_argument("benchmark", help="one of the benchmarks `impkit score --help` lists")
    p.add_argument("--out", required=True, help="the folder to prepare (pass it to `impkit evaluate --twins`)")
    p.add_argument("--images", help="the benchmark's image folder (not needed for MMBench's base64 images)")
    p.add_argument("--annotations", help="the official file or folder `impkit score` reads (sqa: problems.json)")
    p.add_argument("--questions", help="vqav2: the questions file; sqa: pid_splits.json; else a split without answers")
    p.add_argument(
        "--image-pattern", metavar="FMT", help="image path under --images, e.g. 'COCO_val2014_{image_id:012d}.jpg'"
    )
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser(
        "score",
        help="score a benchmark's predictions against its official annotation files",
        description="Score predictions as the benchmark's reference code does; print the metrics as JSON.",
        epilog=_score_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("benchmark", help="one of the benchmarks listed below")
    p.add_argument("--annotations", help="the official annotation file or folder (see below)")
    p.add_argument("--questions", help="a second official file, where listed below")
    p.add_argument("--predictions", required=True, help="the model's answers in the benchmark's result format")
    p.add_argument("--out", help="also write the metrics JSON here (atomically)")
    p.add_argument(
        "--judge-endpoint",
        metavar="URL",
        help="judged benchmarks (mmvet): base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1",
    )
    p.add_argument("--judge-model", metavar="NAME", help="judged benchmarks: the judge model's name on that server")
    p.add_argument(
        "--judge-api-key-env",
        metavar="VAR",
        help="judged benchmarks: environment variable holding the API key (if needed)",
    )
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("timings", help="the build's stage times, machine and precision (reports/timings.json)")
    p.add_argument("--file", default="reports/timings.json")
    p.set_defaults(func=_cmd_timings)
    return parser


def main(argv: list[str] | None = None) -> None:
    from impkit.stage import run_stage

    args = build_parser().parse_args(argv)
    run_stage(lambda: args.func(args))


if __name__ == "__main__":
    main(sys.argv[1:])
