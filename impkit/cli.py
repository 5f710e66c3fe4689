"""The `impkit` command: every step of the build as `dvc repro` runs it (impkit.steps), and the tools
around it (evaluate any release, prepare real benchmark files, score predictions, print timings)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from pathlib import Path

from impkit import __version__, paths
from impkit.registry.store import STAGES, RegistryError
from impkit.steps import STEPS

# every step of impkit.steps but `evaluate`, which the richer `impkit evaluate` below covers with the
# same function and defaults
CLI_STEPS = tuple(name for name in STEPS if name != "evaluate")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import dataclasses

    from impkit.config import EvalConfig, load_section
    from impkit.eval.benchmarks import names
    from impkit.eval.evaluate import compact_metrics, evaluate_release

    cfg = load_section(EvalConfig, "eval", path=args.params)
    if args.batch_size is not None:
        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
    if args.no_blind:
        cfg = dataclasses.replace(cfg, blind=False)
    release = Path(args.release)
    default_out = paths.eval_gguf_dir(release.name) if args.gguf else paths.eval_dir(release.name)
    out = Path(args.out) if args.out else default_out
    if args.gguf:  # the exported files through llama.cpp, one evaluation per level
        from impkit.config import GGUFEvalConfig
        from impkit.eval.gguf_levels import evaluate_levels

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
        benchmark = benchmarks.get(args.benchmark)
        for option in args.option or ():
            if option not in benchmark.options:
                known = ", ".join(benchmark.options) or "none"
                raise ScoringError(f"{args.benchmark} has no option {option!r} (its options: {known})")
            extra[option] = True
        metrics = benchmark.score(args.annotations, args.predictions, questions=args.questions, **extra)
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
    from impkit.config import JudgeConfig
    from impkit.eval.judge import make_judge

    return make_judge(JudgeConfig(args.judge_endpoint, args.judge_model, api_key_env=args.judge_api_key_env))


def _cmd_releases(args: argparse.Namespace) -> None:
    from impkit.headline import heldout_cell
    from impkit.registry import Registry

    registry = Registry(Path(args.registry))
    action = args.action
    if action == "list":
        current, stages = registry.current(), registry.stages()
        print("| release | preset | created | held-out (lead) | size Q4_K_M (MB) | stage | current |")
        print("|---|---|---|---|---|---|---|")
        for record in registry.records(args.preset):
            held = record["headline"]["heldout"]
            size = record["headline"]["gguf"]["size_mb"].get("Q4_K_M", "–")
            mark = "yes" if current.get(record["preset"]) == record["id"] else ""
            print(
                f"| {record['id']} | {record['preset']} | {record['created']} | "
                f"{heldout_cell(held)} | {size} | {', '.join(stages.get(record['id'], []))} | {mark} |"
            )
    elif action == "show":
        record = registry.get(args.ids[0])
        card = registry.record_path(record).with_suffix(".md")
        print(card.read_text(encoding="utf-8") if card.is_file() and not args.json else json.dumps(record, indent=2))
    elif action == "diff":
        from impkit.registry.diff import diff_table

        if len(args.ids) != 2:
            raise RegistryError("diff takes two release ids")
        a, b = (registry.get(i) for i in args.ids)
        print(diff_table(a, b, changed_only=args.changed), end="")
    elif action == "pull":
        if len(args.ids) != 1:
            raise RegistryError("pull takes one release id")
        record = registry.get(args.ids[0])
        out = _pull_release(record, Path(args.out) if args.out else paths.PULLED / record["id"])
        print(f"{record['id']}: its release folder and GGUF files are in {out} (fetched from the DVC remote)")
    elif action == "promote":
        if len(args.ids) != 1 or not args.stage:
            raise RegistryError("promote takes one release id and --stage")
        event = registry.promote(args.ids[0], args.stage)
        print(f"{event['id']} promoted to {event['stage']} ({registry.root / 'promotions.jsonl'})")
        from impkit.registry.gto import register_and_assign

        print(register_and_assign(Path("."), registry.get(event["id"]), event["stage"]))


def _pull_release(record: dict, out: Path) -> Path:
    """Fetch a release's folder and GGUF files from the DVC remote by the hashes its record keeps:
    a .dvc file per folder under ``out``, then `dvc pull` of those (any revision, no rebuild)."""
    import subprocess

    import yaml

    from impkit.io import atomic_open

    locked = (record.get("files") or {}).get("dvc") or {}
    folders = {"release": record["files"]["release"]["folder"], "gguf": record["files"]["gguf"]["folder"]}
    missing = [folder for folder in folders.values() if folder not in locked]
    if missing:
        raise RegistryError(f"{record['id']}: the record has no DVC hash for {missing} (built before hashes were kept)")
    out.mkdir(parents=True, exist_ok=True)
    targets = []
    for name, folder in folders.items():
        entry = {"hash": "md5", **locked[folder], "path": name}
        with atomic_open(out / f"{name}.dvc", "w", encoding="utf-8") as f:
            yaml.safe_dump({"outs": [entry]}, f, sort_keys=False)
        targets.append(str(out / f"{name}.dvc"))
    dvc = str(Path(sys.executable).with_name("dvc"))
    done = subprocess.run([dvc, "pull", *targets], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise RegistryError(f"dvc pull of {record['id']} failed: {reason[-1] if reason else done.returncode}")
    return out


def _cmd_chat(args: argparse.Namespace) -> None:
    import dataclasses

    from impkit.chat.app import serve
    from impkit.config import ChatConfig, load_section

    config = load_section(ChatConfig, "chat", path=args.params)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    serve(dataclasses.replace(config, **overrides), registry=args.registry, root=args.root)


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
        for option, what in benchmarks.get(name).options.items():
            rows.append(f"  {'':<11} --option {option}: {what}")
        if inputs.note:
            notes.append(textwrap.fill(f"{name}: {inputs.note}", 100))
    return (
        "what each benchmark reads (official formats; --questions is an error where not listed):\n"
        + "\n".join(rows)
        + "\n\n"
        + "".join(note + "\n" for note in notes)
        + "Rates are x100 (percent); missing predictions count as wrong (sqa: left out, as its reference does) "
        "and are reported as 'missing'.\n"
        + "Every rule follows the benchmark's reference tool; an --option is a named deviation from it, off by default."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"impkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # the build's steps, as `dvc repro` runs them (same functions, same defaults, same outputs)
    for name in CLI_STEPS:
        step = importlib.import_module(f"impkit.steps.{name}")
        p = sub.add_parser(
            step.NAME, help=step.HELP, description=step.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        step.add_arguments(p)
        p.set_defaults(func=step.main, step=step)

    p = sub.add_parser(
        "evaluate",
        help="answer and score the benchmark twins (or files in their layout) with a release",
        description="Ask a release every benchmark's prompts (batched greedy; blank-image and majority-answer "
        "baselines beside it), write the answers in the official result formats and score them. "
        "Run under `accelerate launch` to split the questions across processes.",
    )
    p.add_argument("release", help="a release folder (releases/<preset>)")
    p.add_argument("--params", default="params.yaml", help="its `eval` section sets batch size, budgets, judge")
    p.add_argument("--twins", default=str(paths.TWINS), help="the benchmarks folder written by `impkit twins`")
    p.add_argument("--images", default=str(paths.HELDOUT_IMAGES), help="the folder image paths are relative to")
    p.add_argument(
        "--out",
        help="output folder (default: reports/eval/<release name>, as the evaluate stage; with --gguf "
        "reports/eval-gguf/<release name>)",
    )
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
    p.add_argument("root", nargs="?", default=str(paths.EVAL_REPORTS), help="folder of <release>/details.json")
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
        "--option",
        action="append",
        metavar="NAME",
        help="a named deviation from the reference tool's rules (listed below per benchmark); repeatable",
    )
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

    p = sub.add_parser(
        "releases",
        help="the release registry: list, show, diff and promote releases (registry/)",
        description="Every build of a preset is recorded as a release (dvc.yaml's release@<preset>); records "
        "accumulate over builds. Ids may be shortened to an unambiguous prefix.",
    )
    p.add_argument("action", choices=["list", "show", "diff", "promote", "pull"])
    p.add_argument("ids", nargs="*", metavar="ID", help="show, promote, pull: one release id; diff: two")
    p.add_argument("--out", help="pull: the folder to fetch into (default pulled/<id>)")
    p.add_argument("--preset", help="list: only this preset's releases")
    p.add_argument("--stage", choices=STAGES, help="promote: the stage to promote to")
    p.add_argument("--json", action="store_true", help="show: the record as JSON instead of the model card")
    p.add_argument("--changed", action="store_true", help="diff: only the figures that changed")
    p.add_argument("--registry", default=str(paths.REGISTRY), help=f"the registry folder (default {paths.REGISTRY})")
    p.set_defaults(func=_cmd_releases)

    p = sub.add_parser(
        "chat",
        help="ImpChat: an OpenAI-compatible server and web page over the registry's releases (docs/chat.md)",
        description="Serves every release the registry lists, at each GGUF level built, on 127.0.0.1 by "
        "default: open the printed address, or point an OpenAI client at <address>/v1. Settings: params.yaml "
        "`chat:`; when the variable it names (IMPKIT_CHAT_API_KEY) is set, API calls need it as a Bearer key.",
    )
    p.add_argument("--params", default="params.yaml", help="its `chat` section")
    p.add_argument("--registry", default=str(paths.REGISTRY), help=f"the registry folder (default {paths.REGISTRY})")
    p.add_argument("--root", help="the workspace the records' folders are relative to (default: the registry's parent)")
    p.add_argument("--host", help="override chat.host (0.0.0.0 exposes the server to the network)")
    p.add_argument("--port", type=int, help="override chat.port")
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("timings", help="the build's stage times, machine and precision (reports/timings.json)")
    p.add_argument("--file", default=str(paths.TIMINGS))
    p.set_defaults(func=_cmd_timings)
    return parser


def main(argv: list[str] | None = None) -> None:
    from impkit.stage import openmp_wait_policy, run_parsed_step, run_stage

    args = build_parser().parse_args(argv)
    if hasattr(args, "step"):  # a build step: the wait policy it asks for (impkit.stage)
        run_parsed_step(args.step, args)
        return
    openmp_wait_policy("PASSIVE")  # before evaluation loads torch: small kernels on shared cores
    run_stage(lambda: args.func(args))


if __name__ == "__main__":
    main(sys.argv[1:])
