"""One release's headline figures, drawn from the build's detailed reports.

`dvc metrics show` prints every metrics file as one row; with the detailed reports declared as
metrics that was one row of hundreds of columns per file. The per-release headline keeps the
figures a person compares between builds, in the units the reports use, and nothing else:

- the held-out check during training: accuracy with the question's image and the image's lead
  over the better of a blank image and another question's image (percent);
- each benchmark's headline on the PyTorch release (the metric of the paper's Table 3);
- per GGUF level: the share of answers equal to the PyTorch release's, and the files' size;
- the F16 file's logit parity with the PyTorch release;
- per device profile and level: T_total of the paper's Table 4 protocol (seconds).

The details stay in their own files (`reports/{train,eval,eval-gguf,export,parity,latency}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from impkit.errors import ImpkitError


class ReportError(ImpkitError):
    """A detailed report lacks a figure the headline needs."""


def _get(report: Mapping[str, Any], *keys: str, source: str) -> Any:
    value: Any = report
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            raise ReportError(f"{source}: no '{'.'.join(keys)}' (is the report from this version of impkit?)")
        value = value[key]
    return value


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)


def heldout_figures(train: Mapping[str, Any], source: str) -> dict[str, float]:
    check = _get(train, "heldout", "release", source=source)
    with_image = _get(check, "with_image", "accuracy", source=source)
    without = max(
        _get(check, "blank_image", "accuracy", source=source), _get(check, "shuffled_image", "accuracy", source=source)
    )
    return {"with_image": _percent(with_image), "lead": _percent(with_image - without)}


NOT_HEADLINES = ("n", "blind")  # beside a benchmark's headline in a result: its count and blind baseline


def headline_value(result: Any) -> float | None:
    """The one headline figure of a benchmark's result (``{"soft_accuracy": 53.2, "n": 200, "blind":
    42.1}`` -> 53.2); None when the result holds no single number (unscored, or not a result)."""
    if not isinstance(result, Mapping):
        return None
    values = [v for k, v in result.items() if k not in NOT_HEADLINES]
    ok = len(values) == 1 and isinstance(values[0], int | float) and not isinstance(values[0], bool)
    return values[0] if ok else None


def benchmark_figures(evaluation: Mapping[str, Any], source: str) -> dict[str, float]:
    """The PyTorch release's headline per benchmark; a benchmark the build could not score is left out."""
    figures = {}
    for name, result in _get(evaluation, "torch", source=source).items():
        if not isinstance(result, Mapping):  # e.g. MM-Vet without a judge: the report says why
            continue
        value = headline_value(result)
        if value is None:
            raise ReportError(f"{source}: benchmark '{name}' has no single headline metric: {sorted(result)}")
        figures[name] = value
    return figures


def gguf_figures(gguf_eval: Mapping[str, Any], export: Mapping[str, Any], sources: tuple[str, str]) -> dict[str, Any]:
    levels = _get(gguf_eval, "levels", source=sources[0])
    sizes = _get(export, "bytes", source=sources[1])
    return {
        "answer_agreement": {
            level: _get(figures, "answer_agreement", "all", source=sources[0]) for level, figures in levels.items()
        },
        "size_mb": {level: round(_get(files, "total", source=sources[1]) / 1e6, 2) for level, files in sizes.items()},
    }


def latency_figures(latency: Mapping[str, Any], source: str) -> dict[str, float]:
    return {
        name: _get(figures, "t_total_s", source=source)
        for name, figures in _get(latency, "metrics", source=source).items()
    }


def headline(reports: Mapping[str, Mapping[str, Any]], names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The headline of one release from its reports, keyed train, eval, eval_gguf, export, parity, latency.
    An imported release (``impkit import``) has no train report, so no held-out check (``heldout``: None).

    ``names`` gives each report's file name for error messages.
    """
    names = dict(names or {})
    where = {key: names.get(key, key) for key in ("train", "eval", "eval_gguf", "export", "parity", "latency")}
    parity = reports["parity"]
    return {
        "heldout": heldout_figures(reports["train"], where["train"]) if "train" in reports else None,
        "benchmarks": benchmark_figures(reports["eval"], where["eval"]),
        "gguf": gguf_figures(reports["eval_gguf"], reports["export"], (where["eval_gguf"], where["export"])),
        "parity": {
            "passed": _get(parity, "passed", source=where["parity"]),
            "top1_agreement": _get(parity, "top1_agreement", source=where["parity"]),
        },
        "t_total_s": latency_figures(reports["latency"], where["latency"]),
    }


def heldout_cell(heldout: Mapping[str, Any] | None) -> str:
    """A table cell of the held-out check: accuracy with the image and the image's lead, or "imported"
    for a release this workflow did not train (``impkit import``)."""
    return f"{heldout['with_image']:.1f} ({heldout['lead']:+.1f})" if heldout else "imported"
