"""Evaluating a release on the ten twins: answers written in the official formats and scored as
`impkit score` scores them, the blind and majority baselines beside the model, MM-Vet only with a
judge, compact DVC metrics and the Table 3 layout; the real PyTorch runner over a saved release,
and `accelerate launch` with two processes giving the very same answer files as one process."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TWIN_SIZES
from sections import section_with

from impkit.cli import main as cli
from impkit.config import ConfigError, EvalConfig, TwinSizes
from impkit.eval import benchmarks as registry
from impkit.eval.benchmarks.mmvet import NOT_SCORED
from impkit.eval.evaluate import (
    MAJORITY,
    NO_ANNOTATIONS,
    NO_GOLD,
    NO_MAJORITY,
    collect_details,
    evaluate,
    evaluate_release,
    majority_answers,
    table3,
)
from impkit.eval.parallel import shard_bounds
from impkit.eval.runners import Question, Runner
from impkit.release import write_release

BENCHMARKS = registry.names()

SIZES = TwinSizes(**TWIN_SIZES)
FULL_MARKS = {"mme": 2000.0}  # perception: 10 subtasks x 200


@pytest.fixture(scope="session")
def world(eval_world) -> Path:
    return eval_world


@pytest.fixture(scope="session")
def twins(eval_twins) -> Path:
    return eval_twins


def gold_of(twins: Path) -> dict[tuple[str, str | None], str]:
    """The right answer by (prompt, image): prompt ids repeat across benchmarks, prompts do not."""
    gold = {}
    for benchmark in BENCHMARKS:
        prompts = (twins / benchmark / "prompts.jsonl").read_text(encoding="utf-8").splitlines()
        answers = (twins / benchmark / "gold.jsonl").read_text(encoding="utf-8").splitlines()
        for prompt, answer in zip(map(json.loads, prompts), map(json.loads, answers), strict=True):
            gold[prompt["prompt"], prompt["image"]] = answer["answer"]
    return gold


class GoldRunner(Runner):
    """Answers every question right when it sees the image and "no" when the image is blank; it
    records what it was asked, so the tests can check what evaluate() asks and in which condition."""

    name = "gold"

    def __init__(self, gold: dict[tuple[str, str | None], str]):
        self.gold = gold
        self.asked: list[tuple[str, bool]] = []

    def answer(self, questions: Sequence[Question], *, blank_images: bool = False) -> list[str]:
        self.asked += [(q.id, blank_images) for q in questions]
        return ["no" if blank_images and q.image else self.gold[q.prompt, q.image] for q in questions]

    def describe(self) -> dict:
        return {"backend": self.name}


def test_majority_baseline_gives_each_type_its_most_common_answer_ties_alphabetical():
    rows = [{"id": str(i), "type": kind} for i, kind in enumerate("aaaabbc")]
    gold = dict(zip(map(str, range(7)), ["2", "2", "3", "3", "yes", "no", "blue"], strict=True))
    gold["3"] = "2"  # type a: 2, 2, 3, 2 -> "2"
    assert majority_answers(rows, gold) == {"0": "2", "1": "2", "2": "2", "3": "2", "4": "no", "5": "no", "6": "blue"}


def test_shards_are_contiguous_cover_everything_once_and_differ_by_at_most_one():
    for n in (0, 1, 7, 10):
        for processes in (1, 2, 3):
            bounds = [shard_bounds(n, processes, i) for i in range(processes)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [end - start for start, end in bounds]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        shard_bounds(5, 2, 2)


def test_evaluate_writes_official_files_scored_as_impkit_score_with_both_baselines(twins, tmp_path, capsys):
    gold = gold_of(twins)
    runner = GoldRunner(gold)
    out = tmp_path / "eval"
    details = evaluate(runner, twins, out, run="gold", release={"preset": "nano-test", "model": {"llm": "phi2 64d"}})
    scores = details["scores"]
    assert set(scores) == {"gold", "gold-blind", MAJORITY}

    # The model (right on every question) gets full marks on every benchmark it was asked.
    for benchmark in BENCHMARKS:
        if benchmark == "mmvet":
            continue
        assert scores["gold"][benchmark]["headline"]["value"] == pytest.approx(FULL_MARKS.get(benchmark, 100.0))
    # Without a judge MM-Vet is neither asked nor given a number.
    asked = {qid for qid, _ in runner.asked}
    assert not any(qid.startswith("v1_") for qid in asked)
    assert scores["gold"]["mmvet"]["scored"] is False and scores["gold"]["mmvet"]["headline"]["value"] is None
    # Every other question was asked twice: with its image and with a blank one.
    n_prompts = sum(len((twins / b / "prompts.jsonl").read_text().splitlines()) for b in BENCHMARKS if b != "mmvet")
    assert len(runner.asked) == 2 * n_prompts and sum(blank for _, blank in runner.asked) == n_prompts

    # Blind: "no" to everything with an image -> POPE's negatives only; SQA keeps its text-only ones.
    assert scores["gold-blind"]["pope"]["headline"]["value"] < 100
    assert scores["gold-blind"]["vqav2"]["headline"]["value"] < scores["gold"]["vqav2"]["headline"]["value"]
    # Majority per type: a real prior, below the model, and defeated by MMBench's circular evaluation.
    assert 0 < scores[MAJORITY]["vqav2"]["headline"]["value"] < 100
    assert scores[MAJORITY]["mmbench"]["headline"]["value"] < 50

    # The files are the official formats: `impkit score` on them gives the numbers evaluate() reports.
    entries = json.loads((twins / "twins.json").read_text())["benchmarks"]
    for benchmark, predictions in (
        ("vqav2", "gold/vqav2/results.json"),
        ("pope", "gold-blind/pope/answers"),
        ("mmbench", "majority/mmbench/answers.jsonl"),
        ("mme", "gold/mme/results"),
        ("mmbench_cn", "gold-blind/mmbench_cn/submission.xlsx"),
    ):
        args = ["score", benchmark, "--predictions", str(out / predictions)]
        if benchmark != "mme":
            args += ["--annotations", str(twins / entries[benchmark]["annotations"])]
        cli(args)
        printed = json.loads(capsys.readouterr().out)
        run = predictions.split("/")[0]
        assert printed == scores[run][benchmark]

    # metrics.json: compact, numbers for DVC, the reason for MM-Vet.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gold"]["vqav2"] == {
        "soft_accuracy": 100.0,
        "n": SIZES.vqav2,
        "blind": round(scores["gold-blind"]["vqav2"]["headline"]["value"], 2),
    }
    assert metrics["gold"]["mmvet"] == NOT_SCORED and metrics[MAJORITY]["mmvet"] == NO_MAJORITY
    # Table 3: the paper's columns in its order, one row per condition, MM-Vet explained.
    table = (out / "table3.md").read_text()
    header = table.splitlines()[0]
    columns = ["VQAv2", "GQA", "VizWiz", "SQA-IMG", "TextVQA", "POPE", "MME-P", "MMB", "MMB-CN", "MM-Vet"]
    assert [header.index(c) for c in columns] == sorted(header.index(c) for c in columns)
    rows = [line for line in table.splitlines() if line.startswith("| nano-test")]
    assert len(rows) == 3 and "| 100.0 |" in rows[0] and rows[0].rstrip().endswith("| – |")
    assert NOT_SCORED in table
    assert collect_details(tmp_path) == [json.loads((out / "details.json").read_text())]


def test_with_a_judge_mmvet_is_asked_with_the_open_ended_runner_and_scored(twins, tmp_path):
    gold = gold_of(twins)
    runner, open_runner = GoldRunner(gold), GoldRunner(gold)
    seen = []

    def judge(question, answer, prediction):
        seen.append(question)
        return float(answer == prediction)

    details = evaluate(
        runner,
        twins,
        tmp_path / "eval",
        run="gold",
        benchmarks=["gqa", "mmvet"],
        blind=False,
        judge=judge,
        open_runner=open_runner,
    )
    assert {qid for qid, _ in open_runner.asked} == {f"v1_{i}" for i in range(SIZES.mmvet)}
    assert not any(qid.startswith("v1_") for qid, _ in runner.asked)
    assert len(seen) == SIZES.mmvet
    assert details["scores"]["gold"]["mmvet"]["headline"]["value"] == 100.0
    assert details["scores"][MAJORITY]["mmvet"]["reason"] == NO_MAJORITY
    assert set(details["scores"]) == {"gold", MAJORITY}  # blind=False: no blank-image run
    assert set(details["scores"]["gold"]) == {"gqa", "mmvet"}


def test_a_split_without_answers_is_answered_and_written_for_submission_but_not_scored(twins, tmp_path):
    test_split = tmp_path / "test-split"
    shutil.copytree(twins, test_split)
    manifest = json.loads((test_split / "twins.json").read_text())
    manifest["benchmarks"]["vqav2"].update(annotations=None, gold=None)  # as VQAv2 test-dev comes
    (test_split / "twins.json").write_text(json.dumps(manifest))
    (test_split / "vqav2" / "gold.jsonl").unlink()
    runner = GoldRunner(gold_of(twins))
    details = evaluate(runner, test_split, tmp_path / "eval", run="gold", benchmarks=["vqav2", "gqa"])
    vqav2 = details["scores"]["gold"]["vqav2"]
    assert vqav2["scored"] is False and vqav2["reason"] == NO_ANNOTATIONS
    submitted = json.loads((tmp_path / "eval" / vqav2["predictions"]).read_text())
    assert len(submitted) == SIZES.vqav2 and set(submitted[0]) == {"question_id", "answer"}  # EvalAI's upload
    assert details["scores"][MAJORITY]["vqav2"]["reason"] == NO_GOLD
    assert details["scores"]["gold"]["gqa"]["headline"]["value"] == 100.0  # the other benchmark is scored


def test_unknown_benchmarks_and_missing_twins_are_clear_errors(twins, tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        evaluate(GoldRunner({}), twins, tmp_path / "x", run="gold", benchmarks=["vqa3"])
    with pytest.raises(FileNotFoundError, match="impkit twins"):
        evaluate(GoldRunner({}), tmp_path / "nowhere", tmp_path / "x", run="gold")


# --------------------------------------------------------------------------- the real runner
def test_a_negative_image_cache_size_is_a_config_error():
    with pytest.raises(ConfigError, match="eval.feature_cache_mb must be 0"):
        section_with(EvalConfig, "eval", feature_cache_mb=-1)


EVAL = {
    "seed": 1,
    "twins": dataclasses.asdict(SIZES),
    "batch_size": 4,
    "feature_cache_mb": 1,
    "max_new_tokens": 4,
    "open_max_new_tokens": 8,
    "blind": True,
    "judge": None,
}
SUBSET = ["pope", "sqa", "mmbench_cn"]


@pytest.fixture(scope="module")
def release(tiny, tmp_path_factory) -> Path:
    preset, tok, model = tiny
    return write_release(
        model,
        tok,
        preset,
        tmp_path_factory.mktemp("rel") / "nano-test",
        {"preset": "nano-test", "stage": "tune", "model": {"llm": "phi2 64d x2"}},
    ).folder


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_torch_runner_release_evaluation_and_two_process_accelerate_launch_agree(release, twins, world, tmp_path):
    cfg = EvalConfig(**{**EVAL, "twins": SIZES})
    one = tmp_path / "one"
    details = evaluate_release(release, twins, world / "images", one, cfg, benchmarks=SUBSET)
    assert details["runner"]["backend"] == "torch" and details["runner"]["batch_size"] == 4
    assert details["runner"]["feature_cache_mb"] == 1  # eval.feature_cache_mb reaches the runner
    assert details["release"]["preset"] == "nano-test"
    for benchmark in SUBSET:
        assert details["scores"]["torch"][benchmark]["n"] > 0
        assert details["scores"]["torch-blind"][benchmark]["headline"]["value"] is not None

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"eval": EVAL}))
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMPKIT_PROGRESS": "0"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "impkit.cli",
        "evaluate",
        str(release),
        "--params",
        str(params),
        "--twins",
        str(twins),
        "--images",
        str(world / "images"),
        "--out",
        str(two),
        "--benchmarks",
        *SUBSET,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process 2/2 answers questions" in done.stderr
    answers = {name: data for name, data in files_of(two).items() if name.split("/")[0] in ("torch", "torch-blind")}
    sheets = [name for name in answers if name.endswith(".xlsx")]  # zip archives carry their write time
    for name in sheets:
        assert pd.read_excel(two / name).equals(pd.read_excel(one / name))
        del answers[name]
    assert sheets and answers and answers == {name: files_of(one)[name] for name in answers}
    assert json.loads((two / "metrics.json").read_text()) == json.loads((one / "metrics.json").read_text())
    assert table3([details]).splitlines()[2].startswith("| nano-test | phi2 64d x2 |")
