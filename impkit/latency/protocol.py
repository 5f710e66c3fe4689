"""The paper's latency protocol (Table 4, §5.2) as data: prompt, timings per run, the summary.

One inference = visual encoding (T_VE: ViT + projector) -> prompt encoding (the image embeddings,
then exactly ``prompt_tokens`` text tokens) -> generation (exactly ``gen_tokens`` tokens, greedy,
never stopping at an end-of-text token). Model loading is outside the timed region.

Equation (1) of the paper, with its typo fixed (it divides the speeds by the counts)::

    T_total = T_VE + N_prompt / S_prompt + N_gen / S_gen + T_other

where N_prompt = image tokens + text tokens, S_prompt = N_prompt / (image-embedding decode + text
decode) — T_VE is *not* part of the prompt time — and S_gen = N_gen / generation time. The summary
reports T_total by equation (1) (T_other = 0, as the paper does) beside the measured wall time of
the whole inference, whose difference is T_other (image preprocessing, tokenization, Python).

**Generation steps.** Each of the ``gen_tokens`` steps takes the argmax of the current logits and
decodes that token (one single-token forward): the first generated token comes from the prompt's
logits, and the last step's decode puts the 64th token into the KV cache as a chat would. So exactly
``gen_tokens`` single-token forwards are timed, the same count llama.cpp's perf counters report as
``n_eval`` and that ``llama-bench``'s ``tg64`` times.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from impkit.config import LatencyConfig

# A fixed English sentence; its tokens are repeated (cyclically) to exactly ``prompt_tokens`` ids,
# so the prompt length is the protocol's whatever the tokenizer (no special tokens, no image token).
PROMPT_SENTENCE = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions about the picture: describe the objects, their "
    "colours, shapes and positions."
)
PAPER_PROMPT_TOKENS = 41  # §5.2: "the same text prompt (41 tokens)"
PAPER_GEN_TOKENS = 64  # §5.2: "stops at the 64th token"
IMAGE_SEED = 0


@dataclass(frozen=True)
class Protocol:
    """How one latency figure is made: the prompt and generation lengths, runs and warm-up runs."""

    prompt_tokens: int = PAPER_PROMPT_TOKENS
    gen_tokens: int = PAPER_GEN_TOKENS
    runs: int = 3
    warmup: int = 1

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.gen_tokens < 1:
            raise ValueError(
                f"prompt_tokens and gen_tokens must be at least 1, got {self.prompt_tokens}, {self.gen_tokens}"
            )
        if self.runs < 1 or self.warmup < 0:
            raise ValueError(f"runs must be at least 1 and warmup at least 0, got {self.runs}, {self.warmup}")

    @classmethod
    def of(cls, cfg: LatencyConfig) -> Protocol:
        """The protocol params.yaml's ``latency`` section asks for."""
        return cls(prompt_tokens=cfg.prompt_tokens, gen_tokens=cfg.gen_tokens, runs=cfg.runs, warmup=cfg.warmup)

    def describe(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "image_position": "first",
            "greedy": True,
            "stop_at_eos": False,
            "model_loading": "excluded",
            "statistic": "median (min, max) over runs after warm-up",
        }


def prompt_ids(tokenize: Callable[[str], Sequence[int]], n: int, sentence: str = PROMPT_SENTENCE) -> list[int]:
    """Exactly ``n`` text token ids: the sentence's tokens, repeated from the start as needed."""
    ids = [int(i) for i in tokenize(sentence)]
    if not ids:
        raise ValueError("the tokenizer gave no tokens for the protocol's sentence")
    return [ids[i % len(ids)] for i in range(n)]


def protocol_image(size: int, seed: int = IMAGE_SEED) -> Image.Image:
    """The protocol's image: fixed random RGB pixels, square at the model's input size (so neither
    backend resizes or pads it)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


# ---------------------------------------------------------------------------------------------
# One run and the summary


@dataclass
class RunTiming:
    """The timed stages of one inference, in seconds, with the positions each stage processed."""

    n_image: int  # image embeddings decoded into the LLM
    n_text: int  # text prompt tokens
    n_gen: int  # generated tokens (single-token forwards)
    t_ve: float  # visual encoding: ViT + projector
    t_prompt: float  # image-embedding decode + text decode (T_VE excluded)
    t_gen: float
    wall: float  # the whole inference as measured around it (preprocessing and Python included)
    detail: dict[str, Any] = field(default_factory=dict)  # backend-specific breakdown and counters

    @property
    def n_prompt(self) -> int:
        return self.n_image + self.n_text

    @property
    def s_prompt(self) -> float:
        return self.n_prompt / self.t_prompt

    @property
    def s_gen(self) -> float:
        return self.n_gen / self.t_gen

    @property
    def total(self) -> float:
        """Equation (1) with T_other = 0: T_VE + N_prompt / S_prompt + N_gen / S_gen."""
        return self.t_ve + self.n_prompt / self.s_prompt + self.n_gen / self.s_gen

    def record(self) -> dict[str, Any]:
        return {
            "n_image": self.n_image,
            "n_text": self.n_text,
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "t_ve_s": self.t_ve,
            "t_prompt_s": self.t_prompt,
            "t_gen_s": self.t_gen,
            "s_prompt_tps": self.s_prompt,
            "s_gen_tps": self.s_gen,
            "t_total_s": self.total,
            "wall_s": self.wall,
            "t_other_s": self.wall - self.total,
            **self.detail,
        }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (rounded to 6 significant digits for the report)."""
    if not values:
        raise ValueError("no values to summarise")
    return {key: float(f"{fn(values):.6g}") for key, fn in (("median", statistics.median), ("min", min), ("max", max))}


def summarize(runs: Sequence[RunTiming], warmup: Sequence[RunTiming] = ()) -> dict[str, Any]:
    """The Table 4 figures over ``runs`` (warm-up runs are listed, not counted).

    ``t_total_s`` spreads equation (1) computed per run; ``t_total_eq1_s`` applies equation (1) to
    the medians of T_VE, S_prompt and S_gen, as a table built from those medians would.
    """
    if not runs:
        raise ValueError("no timed runs")
    counts = {(r.n_image, r.n_text, r.n_gen) for r in (*runs, *warmup)}
    if len(counts) != 1:
        raise ValueError(f"runs processed different numbers of positions: {sorted(counts)}")
    n_image, n_text, n_gen = counts.pop()
    t_ve, s_prompt, s_gen = (spread([getattr(r, key) for r in runs]) for key in ("t_ve", "s_prompt", "s_gen"))
    n_prompt = n_image + n_text
    eq1 = t_ve["median"] + n_prompt / s_prompt["median"] + n_gen / s_gen["median"]
    return {
        "n_image": n_image,
        "n_text": n_text,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "runs": len(runs),
        "warmup": len(warmup),
        "t_ve_s": t_ve,
        "s_prompt_tps": s_prompt,
        "s_gen_tps": s_gen,
        "t_total_s": spread([r.total for r in runs]),
        "t_total_eq1_s": float(f"{eq1:.6g}"),
        "wall_s": spread([r.wall for r in runs]),
        "t_other_s": spread([r.wall - r.total for r in runs]),
        "per_run": [r.record() for r in runs],
        "warmup_runs": [r.record() for r in warmup],
    }


# ---------------------------------------------------------------------------------------------
# Where a figure was measured

# /proc/cpuinfo flags that decide which ggml kernels run (and how fast)
_GGML_FLAGS = re.compile(r"avx.*|fma|f16c|amx.*")


def cpu_info(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """The host CPU: model name, logical CPUs and the ggml-relevant instruction-set flags."""
    model, flags = platform.processor() or platform.machine(), set()
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = {flag for flag in value.split() if _GGML_FLAGS.fullmatch(flag)}
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "flags": sorted(flags),
    }


def software_info(*, llama_cpp: bool = True, torch: bool = True) -> dict[str, Any]:
    """Versions of the inference stacks (and llama.cpp's own view of the CPU features it uses)."""
    from importlib import metadata

    info: dict[str, Any] = {"python": platform.python_version()}
    if llama_cpp:
        try:
            import llama_cpp as lc

            info["llama_cpp_python"] = metadata.version("llama_cpp_python")
            info["llama_cpp_system_info"] = lc.llama_print_system_info().decode(errors="replace").strip()
        except (ImportError, metadata.PackageNotFoundError) as exc:
            info["llama_cpp_python"] = f"unavailable: {exc}"
    if torch:
        try:
            info["torch"] = metadata.version("torch")
            info["transformers"] = metadata.version("transformers")
        except metadata.PackageNotFoundError as exc:
            info["torch"] = f"unavailable: {exc}"
    return info


def host_info() -> dict[str, Any]:
    # OpenMP's wait policy (read once, when the libraries load) changes small-model speed by an order
    # of magnitude on these machines: measured nano-3b Q4_K_M, 2 threads, 6,150 generated tokens/s
    # with spinning threads (ACTIVE) against 261 with sleeping ones (PASSIVE). Always recorded.
    return {"cpu": cpu_info(), "software": software_info(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def table_row(summary: Mapping[str, Any]) -> dict[str, float]:
    """The medians as Table 4 lists them (plus the measured wall time)."""
    return {
        "t_ve_s": summary["t_ve_s"]["median"],
        "s_prompt_tps": summary["s_prompt_tps"]["median"],
        "s_gen_tps": summary["s_gen_tps"]["median"],
        "t_total_s": summary["t_total_eq1_s"],
        "wall_s": summary["wall_s"]["median"],
    }
