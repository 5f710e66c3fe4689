"""The training loop the backbone recipes share: shuffled batches from a seeded generator, AdamW with
warmup and cosine decay, optional bf16 autocast, a progress bar, and a summary of the loss curve.

Every recipe runs its steps through :func:`train_loop` with its own ``step`` function, so the
optimiser, clipping and the order of random draws are the same for the tower and the LMs.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup

from impkit.config import ConfigError
from impkit.progress import progress as progress_bar


def bar_disabled(show: bool) -> bool | None:
    return True if not show else None  # None: progress_bar's default (IMPKIT_PROGRESS)


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


def shuffled_batches(n_items: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled batches of indices; each epoch a fresh permutation, the tail dropped."""
    if n_items < batch_size:
        raise ValueError(f"only {n_items} training items for a batch of {batch_size}; lower batch_size")
    while True:
        order = torch.randperm(n_items, generator=generator)
        for start in range(0, n_items - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def split_eval(n: int, n_eval: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return order[n_eval:], order[:n_eval]


def optimiser(model: torch.nn.Module, lr: float, weight_decay: float, steps: int, warmup: float):
    """AdamW (no decay on biases, norm weights and scalars) + linear warmup and cosine decay."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    sched = get_cosine_schedule_with_warmup(opt, max(1, round(warmup * steps)), steps)
    return opt, sched


def train_loop(
    step_fn: Callable[[Any], torch.Tensor],
    model: torch.nn.Module,
    batches: Iterator[Any],
    *,
    steps: int,
    lr: float,
    weight_decay: float,
    warmup: float,
    clip: float,
    desc: str,
    unit: str,
    units_per_step: int,
    show: bool,
    precision: str,
) -> tuple[list[float], float]:
    """Run ``steps`` optimiser steps; returns the per-step losses and the wall time of the loop."""
    autocast = autocast_context(precision)
    opt, sched = optimiser(model, lr, weight_decay, steps, warmup)
    model.train()
    losses: list[float] = []
    bar = progress_bar(total=steps * units_per_step, desc=desc, unit=unit, unit_scale=True, disable=bar_disabled(show))
    start = time.perf_counter()
    for step in range(steps):
        with autocast():
            loss = step_fn(next(batches))
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step + 1}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.update(units_per_step)
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", refresh=False)
    wall = time.perf_counter() - start
    bar.close()
    model.eval()
    return losses, wall


def autocast_context(precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """fp32, or bf16 autocast (weights and optimiser stay fp32; a large win on CPUs with AMX/AVX512-BF16)."""
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "bf16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    raise ConfigError(f"precision must be 'fp32' or 'bf16', got '{precision}'")


def loss_summary(losses: list[float], points: int = 20) -> dict[str, Any]:
    """First/last loss (means of the first/last 10 steps) and a coarse curve [[step, mean loss]]."""
    window = max(1, math.ceil(len(losses) / points))
    curve = [
        [min(i + window, len(losses)), round(float(np.mean(losses[i : i + window])), 4)]
        for i in range(0, len(losses), window)
    ]
    return {
        "loss_first": float(np.mean(losses[:10])),
        "loss_last": float(np.mean(losses[-10:])),
        "loss_step1": losses[0],
        "loss_curve": curve,
    }


def run_summary(losses: list[float], wall: float, units: int, rate: str) -> dict[str, Any]:
    """The loss summary and the speed of a run of ``units`` images or tokens; ``rate``: its key."""
    return {**loss_summary(losses), rate: units / wall, "wall_s": wall}
