"""Answering benchmark questions with a model, behind one backend-neutral interface.

A runner takes ``Question``s (an image path or None, and the prompt text that follows ``<image>\\n``
as ``impkit.eval.prompts`` builds it) and returns answer strings in input order. Scorers, the
benchmark twins and the held-out check only ever see that interface, so a backend (PyTorch here, a
``LlamaCppRunner`` on exported GGUF files) is chosen by constructing a different ``Runner``.
"""

from impkit.eval.runners.base import BLANK_GREY, Question, Runner, clean_answer, question_image, questions_from_prompts
from impkit.eval.runners.llama_cpp_runner import LlamaCppRunner
from impkit.eval.runners.torch_runner import TorchRunner

__all__ = [
    "BLANK_GREY",
    "LlamaCppRunner",
    "Question",
    "Runner",
    "TorchRunner",
    "clean_answer",
    "question_image",
    "questions_from_prompts",
]
