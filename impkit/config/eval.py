"""The `eval` section (the twins and how releases are asked, with MM-Vet's judge), the `parity`
section (the exported GGUF against the PyTorch release) and the `eval_gguf` section (how the
llama.cpp runs of every level use the machine)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from impkit.config.loading import ConfigError

MAX_JUDGE_TEMPERATURE = 2.0  # the OpenAI API's upper bound


@dataclass(frozen=True)
class TwinSizes:
    """How many questions (or images) each twin holds (`params.yaml: eval.twins`). Small: the twins
    are asked by every preset of a pipeline run, so they are sized for the evaluation budget, not
    for statistical power (the real benchmarks hold thousands of questions)."""

    vqav2: int  # questions
    gqa: int  # questions (some not balanced, so fewer are scored)
    vizwiz: int  # questions, one per image (VizWiz keys answers by image)
    textvqa: int  # questions about the text images
    sqa: int  # problems, about a quarter of them without an image
    pope_images: int  # images per split; up to three positive and as many negative questions each
    mme_images: int  # images per subtask (two questions each, 14 subtasks)
    mmbench: int  # questions before the circular copies (each has 2-4 rows)
    mmvet: int  # open-ended questions

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"eval.twins.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class JudgeConfig:
    """Where MM-Vet's judge runs and how it is asked (params.yaml ``eval.judge``, null there by
    default). A user writes it, so only ``endpoint`` and ``model`` are required; the other keys keep
    the values below unless the entry sets them."""

    endpoint: str  # base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1
    model: str  # model name sent in each request (llama.cpp accepts any)
    api_key_env: str | None = None  # name of the environment variable holding the API key; None: no key
    timeout_s: float = 60.0  # per request
    max_attempts: int = 3  # requests per question while the reply carries no usable mark
    temperature: float = 0.0  # of the first attempt; retries raise it (impkit.eval.judge)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"judge endpoint must be an http:// or https:// URL, got {self.endpoint!r}")
        if not self.model.strip():
            raise ConfigError("judge model must be a non-empty name")
        if self.api_key_env is not None and not self.api_key_env.strip():
            raise ConfigError("judge api_key_env must name an environment variable (or be null for no key)")
        if not self.timeout_s > 0:
            raise ConfigError(f"judge timeout_s must be positive, got {self.timeout_s}")
        if self.max_attempts < 1:
            raise ConfigError(f"judge max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.temperature <= MAX_JUDGE_TEMPERATURE:
            raise ConfigError(f"judge temperature must be in [0, {MAX_JUDGE_TEMPERATURE}], got {self.temperature}")

    @property
    def url(self) -> str:
        """The chat-completions URL (an endpoint already ending in /chat/completions is used as is)."""
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


@dataclass(frozen=True)
class EvalConfig:
    """The `eval` section of params.yaml: the twins' seed and sizes, and how releases are asked."""

    seed: int
    twins: TwinSizes
    batch_size: int
    feature_cache_mb: float  # image features and heads kept per call: a repeated image is encoded and read once
    max_new_tokens: int  # short answers and option letters (greedy, cut at the template's stop)
    open_max_new_tokens: int  # MM-Vet's open-ended answers (LLaVA-1.5's evaluation budget)
    blind: bool  # also ask every question with blank images (the "blind" baseline)
    judge: JudgeConfig | None  # MM-Vet's LLM judge; null: MM-Vet is "not scored: no judge"

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_new_tokens", "open_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eval.{name} must be at least 1, got {getattr(self, name)}")
        if self.feature_cache_mb < 0:
            raise ConfigError(f"eval.feature_cache_mb must be 0 (no cache) or more, got {self.feature_cache_mb}")


@dataclass(frozen=True)
class ParityConfig:
    """The `parity` section of params.yaml (impkit.eval.parity)."""

    prompts: int  # questions with images taken from the benchmark twins, spread over benchmarks
    level: str  # the file compared logit by logit (quantized levels are scored on the benchmarks)
    min_top1: float  # share of text positions with the same top-1 token
    max_rel_error: float  # max |Δlogit| / max |logit|; F16 measures ~1e-3..4e-3
    min_answer_agreement: float  # F16 answers equal to PyTorch's, on the benchmark questions

    def __post_init__(self) -> None:
        if self.prompts < 1:
            raise ConfigError(f"parity.prompts must be at least 1, got {self.prompts}")
        for name in ("min_top1", "min_answer_agreement"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"parity.{name} is a share between 0 and 1, got {getattr(self, name)}")
        if self.max_rel_error <= 0:
            raise ConfigError(f"parity.max_rel_error must be positive, got {self.max_rel_error}")


@dataclass(frozen=True)
class GGUFEvalConfig:
    """The `eval_gguf` section of params.yaml: how the llama.cpp runs use the machine.

    Measured on the 2-core machine with a nano release: one llama.cpp thread answers 2.5x faster
    than two (ggml's OpenMP threads synchronise after every operation, and a nano model's
    operations take microseconds; with sleeping OpenMP threads, the pipeline's default, two threads
    were about 24x slower). So params.yaml runs every level at once, each on one thread (three levels
    on two cores finish sooner than two at a time, which leaves a core idle during the last one). A
    real Imp release wants the opposite: ``threads: null`` (every core) and ``workers: 1``.
    """

    threads: int | None  # llama.cpp threads per level; null: every core
    workers: int  # levels evaluated at once, each in its own process

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"eval_gguf.threads must be at least 1 or null, got {self.threads}")
        if self.workers < 1:
            raise ConfigError(f"eval_gguf.workers must be at least 1, got {self.workers}")
