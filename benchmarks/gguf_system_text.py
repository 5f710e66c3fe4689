"""Benchmark: the llama.cpp runner with and without keeping the template's system text in the cache.

    .venv/bin/python -m benchmarks.gguf_system_text [--preset nano-3b] [--level Q8_0] [--n 120]
        [--benchmarks gqa vqav2 pope mmbench] [--rounds 2]

Every benchmark prompt starts with the same system text before the image, which llama.cpp decodes as
a batch of its own; ``GGUFSession.eval_prompt(reuse_prefix=True)`` keeps its cache from one question
to the next instead of reading it again. The two modes answer the same questions (the first ``--n``
of each twin) with one loaded model, in turns, ``--rounds`` times; each mode's figure is its fastest
round. Keeping the cache must not change an answer: the script says whether every answer agrees.

Needs `dvc repro export@<preset> twins` first (the GGUF files, the release and the twins).
"""

from __future__ import annotations

from impkit.stage import openmp_wait_policy

openmp_wait_policy("PASSIVE")  # as the evaluate-gguf stage sets it

import argparse
import time

from impkit import paths
from impkit.eval.runners import LlamaCppRunner, questions_from_prompts
from impkit.eval.twins import read_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="nano-3b")
    parser.add_argument("--level", default="Q8_0")
    parser.add_argument("--n", type=int, default=120, help="questions per benchmark")
    parser.add_argument("--benchmarks", nargs="+", default=["gqa", "vqav2", "pope", "mmbench"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runner = LlamaCppRunner.from_export(
        paths.gguf(args.preset),
        args.level,
        paths.release(args.preset),
        image_root=paths.HELDOUT_IMAGES,
        max_new_tokens=16,
        n_threads=1,  # as the evaluate-gguf stage runs each level
    )
    questions = [q for b in args.benchmarks for q in questions_from_prompts(read_prompts(paths.TWINS / b)[: args.n])]
    session, keep = runner.session, runner.session.eval_prompt
    seconds: dict[bool, list[float]] = {False: [], True: []}
    answers: dict[bool, list[str]] = {}
    try:
        for _ in range(args.rounds):
            for reuse in (False, True):
                session.eval_prompt = lambda text, image=None, reuse_prefix=False, r=reuse: keep(
                    text, image, reuse_prefix=r
                )
                start = time.perf_counter()
                answers[reuse] = runner.answer(questions)
                seconds[reuse].append(time.perf_counter() - start)
    finally:
        session.eval_prompt = keep
        runner.close()
    best = {reuse: min(times) for reuse, times in seconds.items()}
    print(f"{args.preset} {args.level}: {len(questions)} questions ({', '.join(args.benchmarks)}), one thread")
    for reuse, label in ((False, "system text read for every question"), (True, "system text kept in the cache")):
        rounds = " / ".join(f"{t:.1f}" for t in seconds[reuse])
        print(f"  {label}: {rounds} s ({len(questions) / best[reuse]:.1f} questions/s at best)")
    same = sum(a == b for a, b in zip(answers[False], answers[True], strict=True))
    print(f"  speed-up {best[False] / best[True]:.2f}x; answers the same: {same}/{len(questions)}")


if __name__ == "__main__":
    main()
