"""Benchmark: can a nano language model answer from what it has just read? LLaVA-style tuning leans on
the LLM's reading comprehension (answer from the context, later from the image tokens, not from
priors), which a real Phi-2 or Qwen1.5 brings from pretraining. This asks the pretrained LM
(``models/backbones/llm-<family>``) questions about a scene written out in words, with the scene's
description before the question and without it, and ranks the question's possible answers by the
LM's log-likelihood. Reading shows as accuracy with the description well above accuracy without.

    .venv/bin/python -m benchmarks.lm_reading [--llm models/backbones/llm-phi2] [--scenes 150]

The description names every object's size, colour, shape and place (``describe_scene``, the text the
world's LM corpus and detailed-description records use), so every question is answerable from it.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import torch

from impkit.data.synth import language as lang
from impkit.data.synth.scene import sample_scene
from impkit.progress import progress, setup_logging

KINDS = ("colour", "shape", "size", "position", "existence")


def passages(n_scenes: int, seed: int, image_size: int = 96) -> list[tuple[str, lang.QA]]:
    """(description, question) pairs: per scene, one question of each kind the scene can answer."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_scenes):
        scene = sample_scene(rng, image_size)
        context = lang.describe_scene(rng, scene)
        for kind in KINDS:
            if kind == "existence":
                qa = lang.existence_question(rng, scene, present=rng.random() < 0.5)
            else:
                qa = lang.SCENE_QUESTIONS[kind](rng, scene)
            if qa is not None:
                out.append((context, qa))
    return out


@torch.no_grad()
def ranked_answer(model, tokenizer, prompt: str, domain: tuple[str, ...]) -> str:
    """The answer in ``domain`` the LM finds likeliest after ``prompt`` (summed token log-probs, so
    answers of several tokens, like "top left", compete fairly with one-token ones)."""
    prefix = tokenizer(prompt).input_ids
    best, best_score = domain[0], float("-inf")
    for answer in domain:
        ids = tokenizer(f"{prompt} {answer}").input_ids
        if ids[: len(prefix)] != prefix:  # the answer merged into the prompt's last token
            raise ValueError(f"'{answer}' does not tokenize apart from the prompt {prompt!r}")
        logprobs = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        score = sum(logprobs[i - 1, ids[i]].item() for i in range(len(prefix), len(ids)))
        if score > best_score:
            best, best_score = answer, score
    return best


def main() -> None:
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", type=Path, default=Path("models/backbones/llm-phi2"))
    parser.add_argument("--scenes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    setup_logging()
    if not (args.llm / "config.json").is_file():
        raise SystemExit(f"no language model at {args.llm}: run `dvc repro backbones` first")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(args.llm)
    model = AutoModelForCausalLM.from_pretrained(args.llm).eval()
    asked = passages(args.scenes, args.seed)
    total, read, unread, chance = Counter(), Counter(), Counter(), Counter()
    for context, qa in progress(asked, desc="questions with and without the description", unit="q"):
        total[qa.qtype] += 1
        read[qa.qtype] += ranked_answer(model, tokenizer, f"{context} {qa.question}", qa.domain) == qa.answer
        unread[qa.qtype] += ranked_answer(model, tokenizer, qa.question, qa.domain) == qa.answer
        chance[qa.qtype] += 1 / len(qa.domain)
    print(f"{args.llm}: {len(asked)} questions about {args.scenes} scenes described in words")
    print("| question | n | with the description | without it | chance |\n|---|---|---|---|---|")
    for kind in total:
        n = total[kind]
        print(f"| {kind} | {n} | {read[kind] / n:.2f} | {unread[kind] / n:.2f} | {chance[kind] / n:.2f} |")


if __name__ == "__main__":
    main()
