"""Every quantization level of an exported release on the benchmarks, with the same scorers as the
PyTorch run, and how far each level moves from it (paper Table 4's SQA and MMB columns, here for
all the benchmarks).

For each level: an ``evaluate`` run with the llama.cpp runner (``<out>/<level>/``, the same files
as the PyTorch run: predictions, details, metrics, Table 3). Then the comparison:

* ``headline``: each level's headline per benchmark beside PyTorch's, and the difference;
* ``answer_agreement``: the share of questions where the level's answer string equals PyTorch's
  (F16 should agree almost everywhere: float16 weights and other kernels only flip near-ties);
* ``vs_f16``: each quantized level's headline minus F16's (what the quantization itself costs).
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from impkit.config import GGUFEvalConfig
from impkit.eval import benchmarks as registry
from impkit.eval.evaluate import ANSWERS_FILE, check_benchmarks, evaluate
from impkit.release import Release

log = logging.getLogger(__name__)


def gguf_run(level: str) -> str:
    return f"gguf-{level}"


def evaluate_levels(
    release: Path,
    gguf_dir: Path,
    levels: Sequence[str],
    twins_dir: Path,
    image_root: Path,
    out_root: Path,
    cfg: Any,
    run_cfg: GGUFEvalConfig,
    *,
    benchmarks: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``evaluate`` once per level (no blind baseline: that is the model's, not the file's), up to
    ``run_cfg.workers`` levels at once in separate processes. Each level's folder is written
    atomically by its own process, so the levels cannot mix."""
    benchmarks = registry.names() if benchmarks is None else benchmarks
    check_benchmarks(benchmarks)
    jobs = [
        (
            Path(release),
            Path(gguf_dir),
            level,
            Path(twins_dir),
            Path(image_root),
            Path(out_root) / level,
            cfg,
            run_cfg.threads,
            tuple(benchmarks),
        )
        for level in levels
    ]
    if run_cfg.workers == 1 or len(jobs) == 1:
        return {job[2]: _evaluate_level(*job) for job in jobs}
    # spawn: a fresh interpreter per worker (forking a process that holds OpenMP threads is unsafe)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(run_cfg.workers, len(jobs)), mp_context=context, initializer=_worker_logging
    ) as pool:
        futures = {job[2]: pool.submit(_evaluate_level, *job) for job in jobs}
        return {level: future.result() for level, future in futures.items()}


def _worker_logging() -> None:
    from impkit.progress import setup_logging

    setup_logging()


def _evaluate_level(
    release: Path,
    gguf_dir: Path,
    level: str,
    twins_dir: Path,
    image_root: Path,
    out_dir: Path,
    cfg: Any,
    threads: int | None,
    benchmarks: Sequence[str],
) -> dict[str, Any]:
    from impkit.eval.judge import make_judge
    from impkit.eval.runners import LlamaCppRunner

    judge = make_judge(cfg.judge) if cfg.judge is not None else None
    meta = Release.open(release).meta
    runner = LlamaCppRunner.from_export(
        gguf_dir,
        level,
        release,
        image_root=image_root,
        max_new_tokens=cfg.max_new_tokens,
        n_threads=threads,
        desc=level,
    )
    open_runner = copy.copy(runner)  # the same session with MM-Vet's longer generation budget
    open_runner.max_new_tokens = cfg.open_max_new_tokens
    try:
        log.info("%s: answering with %s (%s thread(s))", level, runner.source["llm"], runner.session.n_threads)
        return evaluate(
            runner,
            twins_dir,
            out_dir,
            run=gguf_run(level),
            benchmarks=benchmarks,
            blind=False,
            judge=judge,
            open_runner=open_runner,
            release=meta,
        )
    finally:
        runner.close()


def _answers(run_dir: Path) -> dict[str, dict[str, str]]:
    """benchmark -> {question id: answer} from a run folder's ``answers.jsonl`` files."""
    out = {}
    for path in sorted(Path(run_dir).glob(f"*/{ANSWERS_FILE}")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[path.parent.name] = {row["id"]: row["answer"] for row in rows}
    return out


def _headlines(details: Mapping[str, Any], run: str) -> dict[str, float | None]:
    return {b: s["headline"]["value"] for b, s in details["scores"][run].items()}


def compare_levels(
    torch_details: Mapping[str, Any], torch_dir: Path, level_details: Mapping[str, Mapping[str, Any]], out_root: Path
) -> dict[str, Any]:
    """The comparison of every level with the PyTorch run (see the module docstring)."""
    torch_run = torch_details["run"]
    reference = _headlines(torch_details, torch_run)
    torch_answers = _answers(Path(torch_dir) / torch_run)
    summary: dict[str, Any] = {"torch": reference, "levels": {}}
    for level, details in level_details.items():
        heads = _headlines(details, gguf_run(level))
        answers = _answers(Path(out_root) / level / gguf_run(level))
        agreement, same_all, n_all = {}, 0, 0
        for benchmark, ref in torch_answers.items():
            got = answers.get(benchmark, {})
            same = sum(got.get(qid) == text for qid, text in ref.items())
            agreement[benchmark] = round(same / len(ref), 4) if ref else None
            same_all, n_all = same_all + same, n_all + len(ref)
        entry = {
            "headline": heads,
            "vs_torch": {b: _delta(v, reference.get(b)) for b, v in heads.items()},
            "answer_agreement": {"all": round(same_all / n_all, 4) if n_all else None, **agreement},
        }
        summary["levels"][level] = entry
    if "F16" in summary["levels"]:
        f16 = summary["levels"]["F16"]["headline"]
        for level, entry in summary["levels"].items():
            if level != "F16":
                entry["vs_f16"] = {b: _delta(v, f16.get(b)) for b, v in entry["headline"].items()}
    return summary


def _delta(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else round(value - reference, 2)
