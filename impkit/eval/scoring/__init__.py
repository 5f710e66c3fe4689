"""Scoring benchmark predictions the way each benchmark's reference code does (see docs/evaluation.md,
"Scoring benchmark predictions"). Every scorer takes ``(annotations, predictions, questions=None)``
paths and returns ``{"benchmark", "headline": {"name", "value"}, ...sub-metrics, "n"}`` with the
paper-comparable headline; rates are ×100 (percent), MME is its point sum. Each benchmark's module
(``impkit/eval/benchmarks/<name>.py``) names its scorer; the registry there looks them up.
"""

from impkit.eval.scoring.inputs import ScoringError
from impkit.eval.scoring.vqa import normalize_answer, soft_accuracy

__all__ = ["ScoringError", "normalize_answer", "soft_accuracy"]
