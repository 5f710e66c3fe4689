"""The benchmarks, one module each (``impkit/eval/benchmarks/<name>.py``), behind one interface
(``Benchmark`` in ``base``) and listed in one registry, here.

Every consumer looks a benchmark up through ``get`` / ``names``: ``impkit score`` (its scorer and
``--help``), ``impkit prepare`` (its reader of the official files), the twins stage (its twin
builder), evaluation (its prompts' prediction writer, submission form, judge) and the GGUF
evaluation. Adding a benchmark is one module and one line in ``_BUILT_IN``; ``register`` adds one at
run time (tests register toy benchmarks that way).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from impkit.eval.benchmarks import gqa, mmbench, mmbench_cn, mme, mmvet, pope, sqa, textvqa, vizwiz, vqav2
from impkit.eval.benchmarks.base import Benchmark, Prompt, ScoreInputs, TwinContext
from impkit.eval.scoring.inputs import ScoringError

__all__ = [
    "Benchmark",
    "Prompt",
    "ScoreInputs",
    "TwinContext",
    "UnknownBenchmarkError",
    "get",
    "names",
    "register",
    "table3_columns",
    "unregister",
    "write_predictions",
]

# In the order the twins are built and listed (twins.json); each twin draws from its own generator,
# so the order changes no file.
_BUILT_IN = (
    vqav2.BENCHMARK,
    gqa.BENCHMARK,
    vizwiz.BENCHMARK,
    textvqa.BENCHMARK,
    sqa.BENCHMARK,
    pope.BENCHMARK,
    mme.BENCHMARK,
    mmbench.BENCHMARK,
    mmbench_cn.BENCHMARK,
    mmvet.BENCHMARK,
)


class UnknownBenchmarkError(ScoringError, KeyError):
    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


_registry: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark under its name; a name already taken is an error."""
    if benchmark.name in _registry:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered")
    _registry[benchmark.name] = benchmark
    return benchmark


def unregister(name: str) -> None:
    """Remove a benchmark ``register`` added (tests that register a toy one clean up with this)."""
    get(name)
    del _registry[name]


def get(name: str) -> Benchmark:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; known benchmarks: {sorted(_registry)}") from None


def table3_columns() -> list[tuple[str, str]]:
    """(benchmark, column heading) in the paper's Table 3 order, then the other benchmarks in the
    registry's order."""
    found = [get(name) for name in names()]
    ordered = sorted(found, key=lambda b: (b.paper_column is None, b.paper_column or 0))
    return [(b.name, b.label) for b in ordered]


def names() -> tuple[str, ...]:
    """Every registered benchmark's name, in registration order."""
    return tuple(_registry)


for _benchmark in _BUILT_IN:
    register(_benchmark)


def write_predictions(benchmark: str, twin_dir: Path, answers: Mapping[str, str], out: Path) -> Path:
    """Write a runner's answers (prompt id -> text) as the prediction file(s) the benchmark's scorer
    reads (its ``predictions``); returns the path to pass to ``impkit score --predictions``.
    Prompts without an answer are left out (the scorers count them as missing)."""
    from impkit.eval.twins.common import read_prompts

    bench = get(benchmark)
    twin_dir, out = Path(twin_dir), Path(out)
    known = [row["id"] for row in read_prompts(twin_dir)]
    unknown = sorted(set(answers) - set(known))
    if unknown:
        raise ValueError(f"answers for ids that {twin_dir}/prompts.jsonl does not have: {unknown[:5]}")
    bench.write_predictions([(qid, answers[qid]) for qid in known if qid in answers], out, twin_dir)
    return out
