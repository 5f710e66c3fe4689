"""The evaluation prompts exactly as LLaVA-1.5 (and Imp, which reuses its evaluation scripts) build
them for the ten benchmarks (see the reference table of benchmarks and suffixes).

Every suffix string lives here once; the benchmark twins write prompts with these functions and the
runners read those prompts, so a wording change is one edit. All builders return the text that
follows ``<image>\\n`` in the first user turn (``with_image`` adds the tag); generation is greedy.
"""

from __future__ import annotations

from collections.abc import Sequence

from impkit.data.llava_format import IMAGE_TAG

# LLaVA-1.5's short-answer instruction (VQAv2, GQA, VizWiz, TextVQA, POPE, MME).
SHORT_ANSWER = "Answer the question using a single word or phrase."
# Multiple choice (ScienceQA-IMG, MMBench EN).
OPTION_ANSWER = "Answer with the option's letter from the given choices directly."
# MMBench-CN: the Chinese form of the same instruction.
OPTION_ANSWER_CN = "请直接回答选项字母。"
# VizWiz: LLaVA-1.5 asks for "Unanswerable" before the short-answer instruction.
VIZWIZ_UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."
# TextVQA: LLaVA-1.5's OCR-token line (without it the numbers are not comparable with the papers).
OCR_REFERENCE = "Reference OCR token: "
# MME's own question tail, which LLaVA-1.5 replaces with the short-answer instruction.
MME_YES_NO = "Please answer yes or no."
OPTION_LETTERS = "ABCDEFGHI"

LANGUAGES = ("en", "cn")


def with_image(prompt: str) -> str:
    """The full first user turn of an image question: the image tag, a newline, the prompt."""
    return f"{IMAGE_TAG}\n{prompt}"


def short_answer(question: str) -> str:
    """VQAv2, GQA, POPE: ``question`` + newline + the short-answer instruction."""
    return f"{question}\n{SHORT_ANSWER}"


def vizwiz(question: str) -> str:
    return f"{question}\n{VIZWIZ_UNANSWERABLE}\n{SHORT_ANSWER}"


def textvqa(question: str, ocr_tokens: Sequence[str]) -> str:
    """LLaVA-1.5's TextVQA prompt with the reference OCR tokens (the line is left out when the
    image has no OCR tokens, rather than ending in an empty list)."""
    if not ocr_tokens:
        return short_answer(question)
    return f"{question}\n{OCR_REFERENCE}{', '.join(ocr_tokens)}\n{SHORT_ANSWER}"


def mme(question: str) -> str:
    """MME's question ends with ``Please answer yes or no.``; LLaVA-1.5 asks it with that tail
    replaced by a newline and the short-answer instruction."""
    stem = question.rstrip()
    if not stem.endswith(MME_YES_NO):
        raise ValueError(f"an MME question ends with {MME_YES_NO!r}: {question!r}")
    return short_answer(stem[: -len(MME_YES_NO)].rstrip())


def options_block(options: Sequence[str]) -> str:
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"at most {len(OPTION_LETTERS)} options, got {len(options)}")
    return "\n".join(f"{letter}. {option}" for letter, option in zip(OPTION_LETTERS, options, strict=False))


def scienceqa(question: str, choices: Sequence[str], hint: str) -> str:
    """LLaVA-1.5's ScienceQA prompt: ``Context: {hint}`` (only when the problem has a hint), the
    question, the lettered choices, then the option-letter instruction."""
    lines = [f"Context: {hint}"] if hint.strip() else []
    lines += [question, options_block(choices), OPTION_ANSWER]
    return "\n".join(lines)


def mmbench(question: str, options: Sequence[str], hint: str, language: str = "en") -> str:
    """LLaVA-1.5's MMBench prompt: the hint (if any) on its own line, the question, the lettered
    options, then the option-letter instruction (Chinese for MMBench-CN)."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown MMBench language {language!r}; known: {list(LANGUAGES)}")
    lines = [hint] if hint.strip() else []
    lines += [question, options_block(options), OPTION_ANSWER if language == "en" else OPTION_ANSWER_CN]
    return "\n".join(lines)


def mmvet(question: str) -> str:
    """MM-Vet questions are asked as they are, with no instruction added."""
    return question
