"""Speed-ups of the training step that keep the recipe's computation, switched on per stage in
``params.yaml`` (``train.recipes.*.stage*``: ``attention``, ``bf16_frozen_weights``, ``packed_dropout``).

On the CPU a nano step is small enough that per-call overheads, not arithmetic, set its speed
(``benchmarks/train_throughput.py --levers`` measures each of these, in turn on the same batches):

- ``attention: eager``: transformers' own attention (matmul, softmax, matmul) instead of PyTorch's
  ``scaled_dot_product_attention``, whose CPU kernels are built for long sequences. The same
  function; other kernels, so other rounding.
- ``bf16_frozen_weights``: under bf16 autocast every Linear casts its fp32 weight to bf16 at every
  call, forward and backward. A frozen weight never changes, so its bf16 copy is made once: the same
  values bit for bit (autocast rounds the same way), for the memory of the copies. Only with
  ``precision: bf16``, and not under DeepSpeed ZeRO-3, whose weights are partitioned.
- ``packed_dropout``: LoRA dropout with ``torch.nn.Dropout``'s distribution, drawn four elements to a
  64-bit random word; torch's CPU ``bernoulli_`` draws element by element on one thread. The
  probability is rounded to a multiple of 1/65536 (0.05 becomes 0.050003).

Everything is undone when the stage's training ends, so merging LoRA and saving see the model as
it was built.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch

from impkit.config import ConfigError, StageTraining


class PackedDropout(torch.nn.Module):
    """``torch.nn.Dropout``'s distribution (each element kept with probability 1 - p, kept ones
    scaled by 1 / (1 - p)) drawn from 16-bit slices of random 64-bit words."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.cut = round(p * 65536) - 32768  # a uniform int16 below this drops its element

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = words.view(torch.int16)[: x.numel()].view(x.shape) >= self.cut
        return x * keep * (1 / (1 - self.p))


def _linear_from_bf16(x: torch.Tensor, *, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.nn.functional.linear(x.to(torch.bfloat16), weight, bias)


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def attention_implementation(model: torch.nn.Module, name: str) -> Callable[[], None]:
    """Switch every attention layer (text and vision) to transformers' ``name`` implementation;
    returns the undo."""
    base = _base_model(model)
    before = {key: config._attn_implementation for key, config in _attention_configs(base).items()}
    base.set_attn_implementation(name)

    def undo() -> None:
        for key, config in _attention_configs(base).items():
            config._attn_implementation = before[key]

    return undo


def _attention_configs(model: torch.nn.Module) -> dict[str, object]:
    """The model's config and its sub-configs (text, vision), which the layers read at every call."""
    config = model.config
    subs = {name: getattr(config, name) for name in getattr(config, "sub_configs", {}) if getattr(config, name, None)}
    return {"": config, **subs}


def frozen_weights_in_bf16(model: torch.nn.Module) -> Callable[[], None]:
    """Give every frozen ``nn.Linear`` a forward from a bf16 copy of its weights; returns the undo."""
    frozen = [m for m in model.modules() if type(m) is torch.nn.Linear and not m.weight.requires_grad]
    if any(hasattr(m.weight, "ds_id") for m in frozen):  # DeepSpeed ZeRO-3 holds shards, not weights
        raise ConfigError("bf16_frozen_weights cannot run under DeepSpeed ZeRO-3: its weights are partitioned")
    for module in frozen:
        bias = None if module.bias is None else module.bias.detach().to(torch.bfloat16)
        module.forward = functools.partial(
            _linear_from_bf16, weight=module.weight.detach().to(torch.bfloat16), bias=bias
        )

    def undo() -> None:
        for module in frozen:
            del module.forward  # back to nn.Linear.forward

    return undo


def replace_lora_dropout(model: torch.nn.Module, make: Callable[[float], torch.nn.Module]) -> Callable[[], None]:
    """Replace every PEFT LoRA dropout module (``nn.Dropout`` of probability p) by ``make(p)``;
    returns the undo."""
    replaced = []
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if isinstance(dropout, torch.nn.Dropout):
                    dropouts[name] = make(dropout.p)
                    replaced.append((dropouts, name, dropout))

    def undo() -> None:
        for dropouts, name, dropout in replaced:
            dropouts[name] = dropout

    return undo


@contextlib.contextmanager
def step_speedups(model: torch.nn.Module, cfg: StageTraining) -> Iterator[None]:
    """``model`` with the speed-ups ``cfg`` switches on, for the duration of the block."""
    undo: list[Callable[[], None]] = []
    try:
        if cfg.attention is not None:
            undo.append(attention_implementation(model, cfg.attention))
        if cfg.bf16_frozen_weights:
            undo.append(frozen_weights_in_bf16(model))
        if cfg.packed_dropout:
            undo.append(replace_lora_dropout(model, PackedDropout))
        yield
    finally:
        for step in reversed(undo):
            step()
