"""Scoring benchmark predictions the way each benchmark's reference code does (see docs/evaluation.md,
"Scoring benchmark predictions"). Every scorer takes ``(annotations, predictions, questions=None)``
paths and returns ``{"benchmark", "headline": {"name", "value"}, ...sub-metrics, "n"}`` with the
paper-comparable headline; rates are ×100 (percent), MME is its point sum.
"""

from impkit.eval.scoring.inputs import ScoringError
from impkit.eval.scoring.registry import SCORERS, UnknownBenchmarkError
from impkit.eval.scoring.vqa import normalize_answer, soft_accuracy

__all__ = ["SCORERS", "ScoringError", "UnknownBenchmarkError", "normalize_answer", "soft_accuracy"]
