"""The benchmark name -> scorer table. Exact keys; an unknown name fails with the known ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from impkit.eval.scoring.gqa import score_gqa
from impkit.eval.scoring.inputs import ScoringError
from impkit.eval.scoring.mmbench import score_mmbench, score_mmbench_cn
from impkit.eval.scoring.mme import score_mme
from impkit.eval.scoring.mmvet import score_mmvet
from impkit.eval.scoring.pope import score_pope
from impkit.eval.scoring.scienceqa import score_sqa
from impkit.eval.scoring.textvqa import score_textvqa
from impkit.eval.scoring.vizwiz import score_vizwiz
from impkit.eval.scoring.vqav2 import score_vqav2

Scorer = Callable[..., dict[str, Any]]


class UnknownBenchmarkError(ScoringError, KeyError):
    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class _Registry(dict):
    def __missing__(self, name: str) -> Scorer:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; known benchmarks: {sorted(self)}")


SCORERS: dict[str, Scorer] = _Registry(
    vqav2=score_vqav2,
    gqa=score_gqa,
    vizwiz=score_vizwiz,
    textvqa=score_textvqa,
    sqa=score_sqa,
    pope=score_pope,
    mme=score_mme,
    mmbench=score_mmbench,
    mmbench_cn=score_mmbench_cn,
    mmvet=score_mmvet,
)

# What each scorer reads, for `impkit score --help` (annotations | questions | predictions).
INPUTS: dict[str, tuple[str, str, str]] = {
    "vqav2": ("val annotations JSON", "val questions JSON (optional: restricts the set)", "[{question_id, answer}]"),
    "gqa": ("testdev_balanced_questions.json", "-", "[{questionId, prediction}]"),
    "vizwiz": ("val.json", "-", "[{image, answer}]"),
    "textvqa": ("TextVQA_0.5.1_val.json", "-", "[{question_id, answer}]"),
    "sqa": ("problems.json", "pid_splits.json (default: next to problems.json)", "JSONL {question_id, text}"),
    "pope": (
        "folder of the 3 split question files (or one JSONL with category)",
        "-",
        "answers JSONL, or a folder with one per split",
    ),
    "mme": ("not used (or the same folder)", "-", "eval-tool folder of <subtask>.txt"),
    "mmbench": ("dev TSV", "-", "submission sheet (.xlsx/.tsv/.csv) or JSONL {question_id, text}"),
    "mmbench_cn": ("CN dev TSV", "-", "as mmbench"),
    "mmvet": ("mm-vet.json", "-", '{"v1_0": answer, ...}; a number only with --judge-endpoint/--judge-model'),
}
