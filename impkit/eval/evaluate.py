"""Evaluate one release on the benchmarks: answer every twin's prompts, write the answers in the
benchmark's official result format, score them with ``impkit score``'s scorers, and put two
baselines beside the model:

* **blind**: the same model and prompts with every image replaced by a mid-grey one. The gap
  between the two says how much of the score comes from looking at the image;
* **majority**: every question answered with the most common correct answer among the questions
  of its type (VQAv2's question type, GQA's detailed type, the POPE split, the MME subtask, the
  MMBench category, ...), measured on the evaluated questions themselves, so it is an upper bound
  on what answering from the question type alone can score. MMBench's circular evaluation is built
  to defeat exactly this prior: one letter per category rarely survives every rotation.

Outputs under ``out_dir`` (written by the main process only; see ``impkit.eval.parallel``)::

    metrics.json                      compact, for `dvc metrics show/diff`: per run, per benchmark,
                                      the paper's headline metric, the blind score and n
    details.json                      every scorer's full output, the runner, the release record
    table3.md                         the paper's Table 3 layout: model, blind and majority rows
    <run>/<benchmark>/<file>          the answers in the official result format (``impkit score``
    <run>-blind/..., majority/...     reads them; so do the official tools); MMBench also as the
                                      submission sheet (``submission.xlsx``) its server takes

A run is one backend/quantization of the release (``torch`` here; the GGUF levels add theirs).
MM-Vet is asked and scored only with an LLM judge configured; without one it is reported as "not
scored: no judge", never as a number.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from impkit.errors import ImpkitError
from impkit.eval import benchmarks as registry
from impkit.eval.benchmarks.mmvet import NOT_SCORED
from impkit.eval.judge import Judge
from impkit.eval.parallel import answer_all, is_main_process, wait_for_everyone
from impkit.eval.runners import Runner, questions_from_prompts
from impkit.eval.twins import MANIFEST, read_prompts
from impkit.io import atomic_path, dumps_line, write_json
from impkit.release import Release

log = logging.getLogger(__name__)


class EvaluationError(ImpkitError, ValueError):
    """An evaluation asked for something that does not exist (a benchmark name, a level)."""


def check_benchmarks(benchmarks: Sequence[str]) -> None:
    """Benchmark names checked before any model loads."""
    known = registry.names()
    unknown = [b for b in benchmarks if b not in known]
    if unknown:
        raise EvaluationError(f"unknown benchmark(s) {unknown}; known: {list(known)}")


MAJORITY = "majority"
ANSWERS_FILE = "raw_answers.jsonl"  # per run and benchmark: {"id", "answer"} lines, the answer strings as given


NO_MAJORITY = "open-ended answers: no majority baseline"
NO_GOLD = "no answers in the files: no majority baseline"
NO_ANNOTATIONS = "not scored: no annotations (the answer file is the submission)"


def load_twins(twins_dir: Path) -> dict[str, Any]:
    """The twins' manifest (``impkit twins``), which must be complete."""
    path = Path(twins_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the benchmark twins first (impkit twins --out {twins_dir})")
    return json.loads(path.read_text(encoding="utf-8"))


def score(
    benchmark: str, twins_dir: Path, entry: Mapping[str, Any], predictions: Path, judge: Judge | None = None
) -> dict[str, Any]:
    """Score a prediction file (or folder) exactly as ``impkit score`` does."""
    twins_dir = Path(twins_dir)
    bench = registry.get(benchmark)
    annotations = twins_dir / entry["annotations"] if bench.reads_annotations else None
    questions = twins_dir / entry["questions"] if entry.get("questions") else None
    if bench.judged:
        return bench.score(annotations, predictions, questions, judge=judge)
    return bench.score(annotations, predictions, questions=questions)


def majority_answers(rows: Sequence[Mapping[str, Any]], gold: Mapping[str, str]) -> dict[str, str]:
    """Each prompt's answer under the majority baseline: the most common gold answer of its type
    (ties go to the alphabetically first answer, so the baseline is deterministic)."""
    by_type: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        by_type[row.get("type", "")][gold[row["id"]]] += 1
    best = {kind: min(counts, key=lambda answer: (-counts[answer], answer)) for kind, counts in by_type.items()}
    return {row["id"]: best[row.get("type", "")] for row in rows}


def _headline(metrics: Mapping[str, Any]) -> float | None:
    value = metrics["headline"]["value"]
    return None if value is None else round(float(value), 2)


def evaluate(
    runner: Runner,
    twins_dir: Path,
    out_dir: Path,
    *,
    run: str,
    benchmarks: Sequence[str] | None = None,
    blind: bool = True,
    judge: Judge | None = None,
    open_runner: Runner | None = None,
    release: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Answer, write and score every benchmark in ``benchmarks`` for one run; write ``out_dir``
    atomically (main process) and return the details (None in the other processes).

    ``open_runner`` answers MM-Vet's open-ended questions (a longer generation budget); it defaults
    to ``runner``. Under ``accelerate launch`` every process must call this with the same arguments.
    ``benchmarks``: default every registered one.
    """
    benchmarks = registry.names() if benchmarks is None else benchmarks
    check_benchmarks(benchmarks)
    twins_dir, out_dir = Path(twins_dir), Path(out_dir)
    manifest = load_twins(twins_dir)
    answers: dict[str, dict[str, dict[str, str]]] = {}  # benchmark -> run name -> {prompt id: answer}
    seconds: dict[str, float] = {}
    for benchmark in benchmarks:
        judged = registry.get(benchmark).judged
        rows = read_prompts(twins_dir / benchmark)
        gold_file = manifest["benchmarks"][benchmark].get("gold")
        # Judged answers are open-ended (MM-Vet): a majority answer is meaningless there (and costs
        # judge calls); a test split without answers has none to count.
        answers[benchmark] = {}
        if gold_file and not judged:
            gold = {row["id"]: row["answer"] for row in _read_jsonl(twins_dir / gold_file)}
            answers[benchmark][MAJORITY] = majority_answers(rows, gold)
        if judged and judge is None:
            log.info("%s: %s (set eval.judge in params.yaml); not asked", benchmark, NOT_SCORED)
            continue
        asker = open_runner if judged and open_runner is not None else runner
        questions = questions_from_prompts(rows)
        start = time.perf_counter()
        conditions = [(run, False)] + ([(f"{run}-blind", True)] if blind else [])
        for name, blank in conditions:
            log.info("%s: %d questions%s", benchmark, len(questions), " with blank images" if blank else "")
            given = answer_all(asker, questions, blank_images=blank)
            answers[benchmark][name] = {row["id"]: text for row, text in zip(rows, given, strict=True)}
        seconds[benchmark] = round(time.perf_counter() - start, 1)
        log.info(
            "%s: %d answers in %.1f s (%.1f questions/s)",
            benchmark,
            len(questions) * len(conditions),
            seconds[benchmark],
            len(questions) * len(conditions) / max(seconds[benchmark], 1e-9),
        )
    if not is_main_process():
        wait_for_everyone()
        return None
    with atomic_path(out_dir) as tmp:
        details = _write_and_score(answers, twins_dir, manifest, tmp, run=run, blind=blind, judge=judge)
        details.update(
            runner=runner.describe(),
            release=dict(release or {}),
            answer_seconds=seconds,
            twins={"dir": str(twins_dir), "seed": manifest.get("seed"), "sizes": manifest.get("sizes")},
        )
        write_json(tmp / "details.json", details)
        write_json(tmp / "metrics.json", compact_metrics(details))
        (tmp / "table3.md").write_text(table3([details]), encoding="utf-8")
    wait_for_everyone()
    return details


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_and_score(
    answers: Mapping[str, Mapping[str, Mapping[str, str]]],
    twins_dir: Path,
    manifest: Mapping[str, Any],
    out: Path,
    *,
    run: str,
    blind: bool,
    judge: Judge | None,
) -> dict[str, Any]:
    scored: dict[str, dict[str, Any]] = {run: {}, MAJORITY: {}}
    if blind:
        scored[f"{run}-blind"] = {}
    for benchmark, by_run in answers.items():
        bench = registry.get(benchmark)
        entry = manifest["benchmarks"][benchmark]
        for name in scored:
            if name not in by_run:  # MM-Vet without a judge, a majority without answers: nothing to score
                if name == MAJORITY:
                    reason = NO_MAJORITY if bench.judged else NO_GOLD
                else:
                    reason = NOT_SCORED
                scored[name][benchmark] = _unscored(benchmark, reason)
                continue
            target = out / name / benchmark / bench.prediction_file
            target.parent.mkdir(parents=True, exist_ok=True)
            # the raw answers by question id, whatever the official format: what backends are compared on
            (target.parent / ANSWERS_FILE).write_text(
                "".join(dumps_line({"id": qid, "answer": text}) for qid, text in by_run[name].items()), encoding="utf-8"
            )
            written = registry.write_predictions(benchmark, twins_dir / benchmark, by_run[name], target)
            if bench.submission is not None and entry.get("annotations"):  # the server's upload form
                bench.submission(twins_dir / entry["annotations"], by_run[name], target.parent)
            if entry.get("annotations") is None and bench.reads_annotations:  # a test split: submit the file
                scored[name][benchmark] = _unscored(benchmark, NO_ANNOTATIONS, predictions=str(target.relative_to(out)))
            else:
                scored[name][benchmark] = score(benchmark, twins_dir, entry, written, judge=judge)
    return {"run": run, "scores": scored}


def _unscored(benchmark: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "headline": {"name": None, "value": None},
        "scored": False,
        "reason": reason,
        **extra,
    }


def compact_metrics(details: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics.json``: per run, per benchmark, the headline value, the blind value and n; MM-Vet
    without a judge keeps its reason instead of a number."""
    run = details["run"]
    scores = details["scores"]
    out: dict[str, Any] = {}
    for name in (run, MAJORITY):
        out[name] = {}
        for benchmark, metrics in scores[name].items():
            if metrics.get("scored") is False:
                out[name][benchmark] = metrics.get("reason", NOT_SCORED)
                continue
            row: dict[str, Any] = {metrics["headline"]["name"]: _headline(metrics), "n": metrics.get("n")}
            blind = scores.get(f"{run}-blind", {}).get(benchmark) if name == run else None
            if blind is not None and blind.get("scored") is not False:
                row["blind"] = _headline(blind)
            out[name][benchmark] = row
    return out


def _cell(metrics: Mapping[str, Any] | None) -> str:
    if metrics is None:
        return ""
    value = _headline(metrics)
    return "–" if value is None else f"{value:.1f}"


def table3(all_details: Sequence[Mapping[str, Any]]) -> str:
    """Markdown in the paper's Table 3 layout: one row per release and run, with its blank-image
    and majority-answer baselines beneath it. Headline metrics as the paper reports them: VQA soft
    accuracy, GQA/SQA-IMG accuracy, POPE mean F1 of the three splits, MME perception score (max
    2000), MMBench circular accuracy, MM-Vet judge mean."""
    columns = registry.table3_columns()
    header = ["Method", "LLM", "Visual Enc@Res.", "Run"] + [label for _, label in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    unscored = set()
    for details in all_details:
        release = details.get("release", {})
        model = release.get("model", {})
        method = release.get("preset", details.get("runner", {}).get("model", "?"))
        run = details["run"]
        for name, label in ((run, run), (f"{run}-blind", f"{run}, blank images"), (MAJORITY, "majority per type")):
            scores = details["scores"].get(name)
            if scores is None:
                continue
            cells = []
            for benchmark, column in columns:
                metrics = scores.get(benchmark)
                if metrics is not None and metrics.get("scored") is False:
                    unscored.add((column, metrics.get("reason", NOT_SCORED)))
                cells.append(_cell(metrics))
            llm, vision = model.get("llm", ""), model.get("vision", "")
            lines.append("| " + " | ".join([method, llm, vision, label, *cells]) + " |")
    notes = [
        "",
        "VQAv2/VizWiz/TextVQA: soft accuracy; GQA, SQA-IMG: accuracy; POPE: mean F1 of random/popular/"
        "adversarial; MME-P: perception score (max 2000); MMB, MMB-CN: circular accuracy (dev); "
        "MM-Vet: LLM-judge mean.",
    ]
    notes += [f"{column} –: {reason}." for column, reason in sorted(unscored)]
    return "\n".join(lines + notes) + "\n"


def collect_details(root: Path) -> list[dict[str, Any]]:
    """Every ``details.json`` under ``root`` (one folder per release), sorted by folder name."""
    found = sorted(Path(root).glob("*/details.json"))
    if not found:
        raise FileNotFoundError(f"no evaluation results (*/details.json) under {root}")
    return [json.loads(path.read_text(encoding="utf-8")) for path in found]


def evaluate_release(
    release: Path,
    twins_dir: Path,
    image_root: Path,
    out_dir: Path,
    cfg: Any,
    *,
    run: str = "torch",
    benchmarks: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """``evaluate`` with the batched PyTorch runner over a release folder, as ``cfg`` (the `eval`
    section, ``EvalConfig``) says: batch size, image cache, generation budgets, blind baseline, MM-Vet judge."""
    from impkit.eval.judge import make_judge
    from impkit.eval.parallel import device
    from impkit.eval.runners import TorchRunner

    benchmarks = registry.names() if benchmarks is None else benchmarks
    check_benchmarks(benchmarks)
    runner = TorchRunner.from_release(
        release,
        image_root=image_root,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        device=device(),
        feature_cache_mb=cfg.feature_cache_mb,
    )
    open_runner = copy.copy(runner)  # the same model with MM-Vet's longer generation budget
    open_runner.max_new_tokens = cfg.open_max_new_tokens
    judge = make_judge(cfg.judge) if cfg.judge is not None else None
    meta = Release.open(release).meta
    return evaluate(
        runner,
        twins_dir,
        out_dir,
        run=run,
        benchmarks=benchmarks,
        blind=cfg.blind,
        judge=judge,
        open_runner=open_runner,
        release=meta,
    )
