"""The benchmark registry as an extension point: a benchmark defined and registered here, in a test
file only, is built into the twins, written as predictions and scored through `impkit score` by the
same code that serves the ten built-in ones, and the built-in twins do not change beside it."""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from impkit import cli
from impkit.config import TwinSizes
from impkit.eval import benchmarks as registry
from impkit.eval import prompts
from impkit.eval.benchmarks.base import (
    Benchmark,
    Official,
    Prompt,
    ReadRequest,
    ScoreInputs,
    TwinContext,
    write_value,
)
from impkit.eval.benchmarks.prepare import prepare
from impkit.eval.scoring.inputs import PathLike, ScoringError, existing, percent, read_json, reject_unused, result
from impkit.eval.twins.common import TwinFiles, pick
from impkit.eval.twins.generate import generate_twins

TOY = "toy_background"
TOY_QUESTIONS = 6


def _score(annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None) -> dict[str, Any]:
    """Exact match on the background colour; a missing answer counts as wrong."""
    reject_unused(questions, "--questions", TOY)
    gold = read_json(existing(annotations, "toy annotations"), "toy annotations", dict)
    given = read_json(existing(predictions, "toy predictions"), "toy predictions", dict)
    extra = sorted(set(given) - set(gold))
    if extra:
        raise ScoringError(f"{predictions}: answers for unknown questions {extra[:3]}")
    right = sum(given.get(qid, "").strip().lower() == item["answer"] for qid, item in gold.items())
    missing = sum(qid not in given for qid in gold)
    return result(TOY, "accuracy", percent(right, len(gold)), len(gold), missing=missing)


def _twin(ctx: TwinContext) -> TwinFiles:
    data, rows = {}, []
    for i, item in enumerate(pick(ctx.rng(TOY), ctx.heldout.scenes, TOY_QUESTIONS)):
        question, answer = "What colour is the background?", item.spec.background
        data[f"t{i}"] = {"image": item.image, "question": question, "answer": answer}
        rows.append(Prompt(f"t{i}", item.image, prompts.short_answer(question), answer, "background"))
    return TwinFiles(files={"toy.json": data}, prompts=rows, annotations="toy.json")


def _read(request: ReadRequest) -> Official:
    path = existing(request.annotations, "toy annotations")
    rows = [
        Prompt(
            qid,
            str(Path(request.images or ".") / item["image"]),
            prompts.short_answer(item["question"]),
            None,
            "background",
        )
        for qid, item in read_json(path, "toy annotations", dict).items()
    ]
    return Official(rows, path, path)


def _write(given: Sequence[tuple[str, str]], out: Path, twin_dir: Path) -> None:
    write_value(out, dict(given))


TOY_BENCHMARK = Benchmark(
    name=TOY,
    label="Toy",
    score=_score,
    score_inputs=ScoreInputs("toy.json", "-", '{"t0": answer, ...}'),
    prompt=prompts.short_answer,
    read=_read,
    image_patterns=("{image}",),
    pattern_fields=("image",),
    build_twin=_twin,
    predictions='answers.json: {"t0": answer, ...}',
    write_predictions=_write,
)
SIZES = TwinSizes(vqav2=10, gqa=10, vizwiz=8, textvqa=6, sqa=8, pope_images=2, mme_images=1, mmbench=4, mmvet=3)


@pytest.fixture
def toy():
    registry.register(TOY_BENCHMARK)
    try:
        yield TOY_BENCHMARK
    finally:
        registry.unregister(TOY)


def test_a_registered_benchmark_is_built_written_and_scored_like_the_others(toy, eval_world, tmp_path, capsys):
    out = tmp_path / "twins"
    manifest = generate_twins(eval_world, out, seed=3, sizes=SIZES)
    assert registry.names()[-1] == TOY and tuple(manifest["benchmarks"]) == registry.names()
    entry = manifest["benchmarks"][TOY]
    assert entry["n_prompts"] == TOY_QUESTIONS and entry["predictions"] == toy.predictions
    gold = {json.loads(line)["id"]: json.loads(line)["answer"] for line in (out / TOY / "gold.jsonl").open()}

    # every answer right but one wrong and one missing, through the registry's writer
    answers = dict(gold) | {"t0": "no colour at all"}
    del answers["t1"]
    predictions = registry.write_predictions(TOY, out / TOY, answers, tmp_path / toy.prediction_file)
    cli.main(["score", TOY, "--annotations", str(out / entry["annotations"]), "--predictions", str(predictions)])
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == {
        "benchmark": TOY,
        "headline": {"name": "accuracy", "value": pytest.approx(100 * 4 / 6)},
        "missing": 1,
        "n": 6,
    }
    with pytest.raises(ValueError, match="prompts.jsonl does not have"):
        registry.write_predictions(TOY, out / TOY, {"t99": "red"}, tmp_path / "other.json")

    # `impkit prepare` reads the twin's own official file back through the toy's reader
    prepared = prepare(TOY, tmp_path / "prepared", annotations=out / entry["annotations"], images=eval_world / "images")
    assert prepared["n_prompts"] == TOY_QUESTIONS and prepared["gold"] is None
    asked = [row["prompt"] for row in map(json.loads, (out / TOY / "prompts.jsonl").open())]
    assert [row["prompt"] for row in map(json.loads, (tmp_path / "prepared" / TOY / "prompts.jsonl").open())] == asked


def test_the_built_in_twins_do_not_change_beside_a_registered_one(toy, eval_world, tmp_path):
    with_toy = tmp_path / "with"
    generate_twins(eval_world, with_toy, seed=3, sizes=SIZES)
    registry.unregister(TOY)
    try:
        generate_twins(eval_world, tmp_path / "without", seed=3, sizes=SIZES)
    finally:
        registry.register(TOY_BENCHMARK)
    for name in registry.names():
        if name == TOY:
            continue
        for path in sorted((tmp_path / "without" / name).rglob("*")):
            twin = with_toy / path.relative_to(tmp_path / "without")
            assert path.is_dir() or twin.read_bytes() == path.read_bytes(), twin


def test_score_help_lists_a_registered_benchmark_and_errors_name_the_known_ones(toy, capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    assert f"{TOY:<11} --annotations toy.json" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already registered"):
        registry.register(TOY_BENCHMARK)
    with pytest.raises(registry.UnknownBenchmarkError, match=rf"known benchmarks: \[.*'{TOY}'"):
        registry.get("toy")


@pytest.mark.parametrize("name", registry.names())
def test_each_benchmarks_official_image_naming_uses_only_the_fields_it_offers(name):
    bench = registry.get(name)
    used = {
        field.split(":")[0].split("!")[0]
        for pattern in bench.image_patterns
        for _, field, _, _ in string.Formatter().parse(pattern)
        if field
    }
    assert bench.image_patterns and used <= set(bench.pattern_fields)
