"""Benchmark: evaluation throughput of the PyTorch runner, batched vs one question at a time.

    .venv/bin/python benchmarks/eval_throughput.py [--release releases/nano-3b] [--n 512] [--batch 32]
        [--max-new-tokens 8] [--twins data/twins] [--device cpu|cuda] [--rounds 3]

Five modes over the same questions, side by side in one run: one question at a time with
``transformers``' ``generate`` (no batching, no shared prefix, every image encoded for its question:
what a plain generation loop does), the runner at batch 1 without and with its caches, batched
without them, and the runner as the pipeline uses it (batched, shared prefix computed once, each
distinct image encoded once). The modes run in turn, ``--rounds`` times; each mode's figure is its
fastest round, so a burst of noise on a shared machine does not decide a ratio.

Needs a release folder (``dvc repro`` builds ``releases/nano-3b``). The questions are the first
``--n`` prompts of the benchmark twins (taken in turn from each twin, so prompt lengths vary as in a
real evaluation) when ``<twins>/twins.json`` exists (``impkit twins`` writes it), else the world's
held-out questions with LLaVA-1.5's short-answer prompt. Both modes answer the same questions with
the same model in one run; the script prints questions/s for each, the speed-up (target: at least
4x) and how many answers agree. Batching must not change answers, so anything short of full
agreement is a finding to look at (on a GPU in reduced precision a near-tie can flip; in fp32 on
the CPU the answers should be identical).
"""

from __future__ import annotations

from impkit.stage import openmp_wait_policy

openmp_wait_policy("PASSIVE")  # first: before torch loads OpenMP, as the stages it measures set it

import argparse
import json
import time
from itertools import chain, zip_longest
from pathlib import Path

import torch

from impkit.eval.prompts import short_answer
from impkit.eval.runners import Question, TorchRunner, clean_answer, questions_from_prompts
from impkit.eval.runners.base import question_image
from impkit.eval.twins import read_prompts

HELDOUT = Path("data/world/heldout")


def load_questions(twins: Path, n: int) -> tuple[list[Question], str]:
    manifest = twins / "twins.json"
    if manifest.is_file():
        benchmarks = json.loads(manifest.read_text(encoding="utf-8"))["benchmarks"]
        per_twin = [read_prompts(twins / name) for name in benchmarks]
        mixed = [row for row in chain.from_iterable(zip_longest(*per_twin)) if row is not None]
        return questions_from_prompts(mixed[: n or None]), f"benchmark twins in {twins}"
    path = HELDOUT / "questions.jsonl"
    if not path.is_file():
        raise SystemExit(f"neither {manifest} nor {path} found: run `dvc repro` first")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][: n or None]
    return [Question(id=r["id"], image=r["image"], prompt=short_answer(r["question"])) for r in rows], str(path)


def timed(
    runner: TorchRunner, questions: list[Question], batch_size: int, caches: bool, cache_mb: float
) -> tuple[list[str], float]:
    """One pass over ``questions``; ``caches`` switches both the shared prefix and the image cache."""
    runner.batch_size = batch_size
    runner.prefix_cache = caches
    runner.feature_cache_mb = cache_mb if caches else 0
    runner.desc = f"batch {batch_size}{' + caches' if caches else ''}"
    start = time.perf_counter()
    answers = runner.answer(questions)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return answers, time.perf_counter() - start


@torch.inference_mode()
def generate_one_at_a_time(runner: TorchRunner, questions: list[Question]) -> tuple[list[str], float]:
    """The plain loop evaluation scripts run (LLaVA's ``model_vqa.py``): per question, its prompt
    tokenized, its image processed, ``transformers``' ``generate`` (greedy, KV cache), the answer
    cut at the template's stop strings as the runner cuts it."""
    param = next(runner.model.parameters())
    start = time.perf_counter()
    answers = []
    for q in questions:
        inputs = runner.tokenizer([runner.prompt_text(q)], add_special_tokens=False, return_tensors="pt").to(
            param.device
        )
        if q.image is not None:
            image = question_image(q, runner.image_root, runner.image_size)
            inputs["pixel_values"] = runner.processor([image]).to(device=param.device, dtype=param.dtype)
        out = runner.model.generate(
            **inputs,
            max_new_tokens=runner.max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=runner.pad_id,
            eos_token_id=runner.stop_ids or None,
        )
        text = runner.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
        answers.append(clean_answer(text, runner.stop_strings))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return answers, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", type=Path, default=Path("releases/nano-3b"))
    # 512: a benchmark's worth of questions (the real ones hold thousands); with only a handful,
    # fixed costs, the padding of a short mixed list and few repeated images dominate (docs/performance.md).
    parser.add_argument("--n", type=int, default=512, help="questions to answer in each mode; 0: all of them")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the batched mode")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--twins", type=Path, default=Path("data/twins"))
    parser.add_argument("--images", type=Path, default=HELDOUT / "images", help="root of the questions' images")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument(
        "--rounds", type=int, default=3, help="passes over every mode, in turn; each mode's fastest counts"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    if not (args.release / "impkit.json").is_file():
        raise SystemExit(f"no release at {args.release}: run `dvc repro` first (it writes releases/<preset>/)")

    questions, source = load_questions(args.twins, args.n)
    runner = TorchRunner.from_release(
        args.release, image_root=args.images, max_new_tokens=args.max_new_tokens, device=args.device
    )
    info = runner.describe()
    print(
        f"release {args.release}: {info['template']} template, {info['image_size']} px {info['image_aspect']}, "
        f"{info['image_tokens']} image tokens, {info['device']} {info['dtype']}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    with_image = sum(q.image is not None for q in questions)
    print(
        f"{len(questions)} questions from {source} ({with_image} with an image), "
        f"greedy, max_new_tokens={args.max_new_tokens}"
    )
    cache_mb = runner.feature_cache_mb  # the runner's default, as the pipeline uses it
    timed(runner, questions[: min(4, len(questions))], 2, True, cache_mb)  # warm-up: first-call allocations

    # Every round runs the five modes in turn; each mode's figure is its fastest round. On a shared
    # machine noise only ever adds time, and a burst of it in one mode's single pass skews its ratio
    # (one pass over 1,608 questions once measured batch 32 + caches slower than batch 32 alone).
    modes = {
        "generate, one at a time": lambda: generate_one_at_a_time(runner, questions),
        "runner, batch 1": lambda: timed(runner, questions, 1, False, cache_mb),
        "runner, batch 1 + caches": lambda: timed(runner, questions, 1, True, cache_mb),
        f"runner, batch {args.batch}": lambda: timed(runner, questions, args.batch, False, cache_mb),
        f"runner, batch {args.batch} + caches": lambda: timed(runner, questions, args.batch, True, cache_mb),
    }
    answers: dict[str, list[str]] = {}
    seconds: dict[str, list[float]] = {label: [] for label in modes}
    for _ in range(args.rounds):
        for label, run in modes.items():
            got, took = run()
            if answers.setdefault(label, got) != got:
                print(f"{label}: answers changed between rounds (not deterministic)")
            seconds[label].append(took)
    best = {label: min(times) for label, times in seconds.items()}
    for label, times in seconds.items():
        spread = f", rounds {' / '.join(f'{len(questions) / t:.1f}' for t in times)}" if len(times) > 1 else ""
        print(f"{label:<30}: {len(questions) / best[label]:8.2f} questions/s ({best[label]:.1f} s{spread})")
    t_generate, t_single, t_single_cached, t_plain, t_batched = best.values()
    print(
        f"speed-up, the runner (batch {args.batch} + caches) vs generate one at a time: "
        f"{t_generate / t_batched:.2f}x (target >= 4x)"
    )
    print(
        f"  vs the runner's own loop at batch 1: {t_single / t_batched:.2f}x; batching alone "
        f"{t_single / t_plain:.2f}x; the caches alone {t_single / t_single_cached:.2f}x"
    )
    generated = answers["generate, one at a time"]
    for label in list(modes)[1:]:
        agree = sum(a == b for a, b in zip(generated, answers[label], strict=True))
        print(f"agreement with generate one at a time, {label}: {agree}/{len(questions)} answers identical")
        pairs = zip(questions, generated, answers[label], strict=True)
        for q, a, b in [(q, a, b) for q, a, b in pairs if a != b][:5]:
            print(f"  differs on {q.id}: generate {a!r} vs {label} {b!r}")


if __name__ == "__main__":
    main()
