"""MMBench-CN: MMBench's questions in Chinese, asked with the Chinese option-letter instruction and
scored the same way (see ``mmbench``: the sheet, its images and the submission sheet are alike)."""

from __future__ import annotations

import functools

from impkit.eval import prompts
from impkit.eval.benchmarks import mmbench
from impkit.eval.benchmarks.base import Benchmark, ScoreInputs

NAME = "mmbench_cn"

BENCHMARK = Benchmark(
    name=NAME,
    label="MMB-CN",
    paper_column=8,
    score=mmbench.score_mmbench_cn,
    score_inputs=ScoreInputs("CN dev TSV", "-", "as mmbench"),
    prompt=functools.partial(prompts.mmbench, language="cn"),
    read=mmbench.reader("cn"),
    image_patterns=mmbench.IMAGE_PATTERNS,
    pattern_fields=mmbench.PATTERN_FIELDS,
    build_twin=mmbench.twin("cn"),
    predictions=mmbench.PREDICTIONS,
    write_predictions=mmbench.answers_writer(NAME),
    options=mmbench.OPTIONS,
    submission=mmbench.write_submission,
)
