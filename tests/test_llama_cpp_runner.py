"""The llama.cpp runner over exported GGUF files: the same answers as the PyTorch runner on the
benchmark twins' questions, the parity check that passes on a faithful export and fails on a file
that computes something else, and every quantization level scored and compared with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TWIN_SIZES
from sections import raw, section_with
from test_gguf_export import THREADS, make_release

from impkit.cli import main as cli
from impkit.config import EvalConfig, GGUFEvalConfig, ParityConfig
from impkit.eval import benchmarks as registry
from impkit.eval.evaluate import ANSWERS_FILE, evaluate
from impkit.eval.gguf_levels import compare_levels, evaluate_levels
from impkit.eval.parity import check, logit_parity, pick_prompts
from impkit.eval.runners import LlamaCppRunner, TorchRunner, questions_from_prompts
from impkit.eval.twins import read_prompts
from impkit.export import export_and_quantize

BENCHMARKS = registry.names()

pytest.importorskip("llama_cpp.mtmd_cpp")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny qwen2 release and its GGUF files at F16 and Q8_0."""
    root = tmp_path_factory.mktemp("runner")
    release = make_release(root / "releases", "qwen2")
    export_and_quantize(release, root / "gguf", levels=("F16", "Q8_0"), threads=THREADS)
    return release, root / "gguf"


def twin_questions(twins: Path, per_benchmark: int):
    rows = {b: read_prompts(twins / b) for b in BENCHMARKS}
    return rows, [q for b in BENCHMARKS for q in questions_from_prompts(rows[b][:per_benchmark])]


def test_f16_answers_equal_the_torch_runners_with_and_without_the_image(exported, eval_twins, eval_world):
    release, gguf = exported
    _, questions = twin_questions(eval_twins, 4)
    torch_runner = TorchRunner.from_release(release, image_root=eval_world / "images", max_new_tokens=6, device="cpu")
    runner = LlamaCppRunner.from_export(
        gguf, "F16", release, image_root=eval_world / "images", max_new_tokens=6, n_threads=THREADS
    )
    try:
        for blank in (False, True):
            ours = runner.answer(questions, blank_images=blank)
            ref = torch_runner.answer(questions, blank_images=blank)
            same = sum(a == b for a, b in zip(ours, ref, strict=True)) / len(ref)
            assert same >= 0.9, list(zip(ours, ref, strict=True))
            assert len(set(ref)) > 3  # the answers depend on the question: the comparison can fail
        seeing, blind = runner.answer(questions), runner.answer(questions, blank_images=True)
        assert seeing != blind  # the image reaches the model through llama.cpp's vision file
        described = runner.describe()
        assert described["backend"] == "llama.cpp" and described["level"] == "F16"
    finally:
        runner.close()


def test_the_shared_system_text_is_read_once_and_changes_no_logit(exported, eval_twins, eval_world):
    from impkit.eval.runners.base import question_image

    release, gguf = exported
    _, questions = twin_questions(eval_twins, 3)
    runner = LlamaCppRunner.from_export(gguf, "Q8_0", release, image_root=eval_world / "images", n_threads=THREADS)
    session, decoded = runner.session, []
    read_text = session.eval_text
    session.eval_text = lambda tokens: (decoded.append(len(tokens)), read_text(tokens))[1]
    logits, read = {}, {}
    try:
        for reuse in (False, True):
            decoded.clear()
            logits[reuse] = []
            for question in questions:
                image = question.image and runner.processor.prepare(
                    question_image(question, eval_world / "images", runner.image_size)
                )
                session.eval_prompt(runner.prompt_text(question), image or None, reuse_prefix=reuse)
                logits[reuse].append(session.last_logits())
                session.greedy(4, runner.stop_ids)  # an answer in between, as when answering
            read[reuse] = sum(decoded)
    finally:
        runner.close()
    assert all(np.array_equal(a, b) for a, b in zip(logits[False], logits[True], strict=True))
    assert len({tuple(row[:8]) for row in logits[False]}) > 3  # the logits differ between questions
    with_image = [q for q in questions if q.image is not None]
    assert len(with_image) > 3 and read[True] < read[False]  # the system text was not read again


def test_parity_holds_for_the_export_and_breaks_for_another_models_file(exported, eval_twins, eval_world, tmp_path):
    release, gguf = exported
    rows, _ = twin_questions(eval_twins, 3)
    questions = pick_prompts(rows, 6)
    # one question with an image from each benchmark in turn (sorted names), first questions first
    first = {b: next(r for r in rows[b] if r.get("image")) for b in sorted(rows)}
    assert [(q.id, q.prompt) for q in questions] == [(r["id"], r["prompt"]) for r in list(first.values())[:6]]
    torch_runner = TorchRunner.from_release(release, image_root=eval_world / "images", device="cpu")
    runner = LlamaCppRunner.from_export(
        gguf, "F16", release, image_root=eval_world / "images", n_threads=THREADS, logits_all=True, n_ctx=512
    )
    try:
        report = logit_parity(torch_runner, runner, questions)
        # the same tokenizer and template, other weights: a file that computes something else
        other = make_release(tmp_path, "qwen2", width=128)
        broken = logit_parity(
            TorchRunner.from_release(other, image_root=eval_world / "images", device="cpu"), runner, questions
        )
    finally:
        runner.close()
    cfg = section_with(ParityConfig, "parity")  # the thresholds the pipeline holds releases to
    assert report["prompts"] == 6 and report["positions"] > 6 * 10
    assert report["top1_agreement"] >= cfg.min_top1 and report["max_rel_error"] < cfg.max_rel_error
    assert check(report, cfg) == []
    problems = check(broken, cfg)
    assert broken["top1_agreement"] < 0.5 and any("top-1" in p for p in problems)


def test_every_level_is_scored_and_compared_with_pytorch(exported, eval_twins, eval_world, tmp_path):
    release, gguf = exported
    cfg = section_with(
        EvalConfig,
        "eval",
        seed=1,
        twins=TWIN_SIZES,
        batch_size=8,
        max_new_tokens=6,
        open_max_new_tokens=8,
        blind=False,
        judge=None,
    )
    torch_dir = tmp_path / "torch"
    torch_runner = TorchRunner.from_release(release, image_root=eval_world / "images", max_new_tokens=6, device="cpu")
    torch_details = evaluate(torch_runner, eval_twins, torch_dir, run="torch", blind=False)
    levels = evaluate_levels(
        release,
        gguf,
        ["F16", "Q8_0"],
        eval_twins,
        eval_world / "images",
        tmp_path / "gguf",
        cfg,
        GGUFEvalConfig(threads=THREADS, workers=2),
    )
    assert sorted(levels) == ["F16", "Q8_0"]
    for level in levels:
        metrics = json.loads((tmp_path / "gguf" / level / "metrics.json").read_text())
        assert set(metrics) == {f"gguf-{level}", "majority"}
        answers = (tmp_path / "gguf" / level / f"gguf-{level}" / "vqav2" / ANSWERS_FILE).read_text().splitlines()
        assert len(answers) == TWIN_SIZES["vqav2"]
    summary = compare_levels(torch_details, torch_dir, levels, tmp_path / "gguf")
    f16 = summary["levels"]["F16"]
    assert f16["answer_agreement"]["all"] >= 0.9
    assert set(f16["headline"]) == set(summary["torch"])
    assert "vs_f16" in summary["levels"]["Q8_0"] and "vs_f16" not in f16
    for benchmark, value in f16["headline"].items():
        ref = summary["torch"][benchmark]
        assert f16["vs_torch"][benchmark] == (None if value is None or ref is None else round(value - ref, 2))


def test_a_missing_export_is_a_clear_error(exported, tmp_path):
    release, _ = exported
    with pytest.raises(FileNotFoundError, match="mmproj"):
        LlamaCppRunner.from_export(tmp_path, "F16", release)


def test_impkit_evaluate_answers_with_the_gguf_files(exported, eval_twins, eval_world, tmp_path, capsys):
    release, gguf = exported
    params = tmp_path / "params.yaml"
    eval_section = {
        **raw("eval"),
        "seed": 1,
        "twins": TWIN_SIZES,
        "batch_size": 4,
        "max_new_tokens": 6,
        "open_max_new_tokens": 8,
        "blind": True,
        "judge": None,
    }
    params.write_text(yaml.safe_dump({"eval": eval_section}))
    out = tmp_path / "cli"
    cli(
        [
            "evaluate",
            str(release),
            "--gguf",
            str(gguf),
            "--levels",
            "F16",
            "Q8_0",
            "--threads",
            "1",
            "--params",
            str(params),
            "--twins",
            str(eval_twins),
            "--images",
            str(eval_world / "images"),
            "--out",
            str(out),
            "--benchmarks",
            "pope",
            "sqa",
        ]
    )
    printed = capsys.readouterr().out
    metrics = json.loads(printed[: printed.rindex("}") + 1])
    assert sorted(metrics) == ["F16", "Q8_0"]
    assert set(metrics["F16"]["gguf-F16"]) == {"pope", "sqa"} and metrics["F16"]["gguf-F16"]["pope"]["n"] > 0
    assert sorted(p.name for p in (out / "Q8_0" / "gguf-Q8_0").iterdir()) == ["pope", "sqa"]
