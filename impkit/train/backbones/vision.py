"""What the vision-tower recipes share, and the "no pretraining" arm.

Both pretrained arms (:mod:`.contrastive`, :mod:`.classification`) train a ``SiglipVisionModel``
with its pooling head on the world's images, held-back images split off by a seeded generator, at
the tower's own size and, with ``also_sizes``, at lower ones in turn; both save the tower without
the head. :func:`tower_images` and :func:`train_tower` are that common part, so the two arms differ
only in their loss and their evaluation. :func:`random_vision_tower` is the ablation arm with no
pretraining at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import SiglipVisionConfig, SiglipVisionModel

from impkit.config import ConfigError
from impkit.io import atomic_path
from impkit.model.image_processing import ImageProcessor
from impkit.progress import progress as progress_bar
from impkit.train.backbones.inputs import PathLike
from impkit.train.backbones.loop import (
    autocast_context,
    bar_disabled,
    check_positive,
    shuffled_batches,
    split_eval,
    train_loop,
)


# --------------------------------------------------------------------------- images at each size
def load_images(paths: Sequence[str], image_root: PathLike, processor: ImageProcessor, desc: str, show: bool):
    """Decode and square every image once: uint8 [N, size, size, 3] (normalised per batch)."""
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    out = np.empty((len(paths), processor.size, processor.size, 3), dtype=np.uint8)
    for i, rel in enumerate(progress_bar(paths, desc=desc, unit="img", disable=bar_disabled(show))):
        file = root / rel
        try:
            with Image.open(file) as im:
                out[i] = np.asarray(processor.prepare(im), dtype=np.uint8)
        except FileNotFoundError:
            raise FileNotFoundError(f"image not found: {file} (listed as '{rel}')") from None
    return torch.from_numpy(out)


def normalise(images_u8: torch.Tensor, processor: ImageProcessor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W], exactly as ``ImageProcessor.__call__`` does."""
    x = images_u8.to(torch.float32) / 255.0
    mean = torch.tensor(processor.mean, dtype=torch.float32)
    std = torch.tensor(processor.std, dtype=torch.float32)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


def images_by_size(
    paths: Sequence[str], image_root: PathLike, sizes: Sequence[int], aspect: str, show: bool
) -> dict[int, tuple[ImageProcessor, torch.Tensor]]:
    """Every image decoded once per training resolution, with the processor that squares it."""
    out = {}
    for size in sizes:
        processor = ImageProcessor(size=size, aspect=aspect)
        out[size] = (processor, load_images(paths, image_root, processor, f"load images ({size} px)", show))
    return out


def training_sizes(vision_arch: dict[str, Any], also_sizes: Sequence[int]) -> list[int]:
    """The tower's own image size first, then the lower ones it also trains at (each once)."""
    own = int(vision_arch["image_size"])
    patch = int(vision_arch["patch_size"])
    extra = sorted({int(s) for s in also_sizes} - {own}, reverse=True)
    for size in extra:
        if size > own or size % patch:
            raise ConfigError(
                f"the vision tower trains at {own} px and may also train at lower multiples of its "
                f"{patch} px patch, not at {size} px"
            )
    return [own, *extra]


def in_turn(sizes: Sequence[int], batches: Iterator[torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
    """Each step's batch with the resolution it is seen at: the sizes in turn, step by step."""
    return zip(itertools.cycle(sizes), batches)


# --------------------------------------------------------------------------- the common recipe
def tower_config(vision_arch: dict[str, Any], *, steps: int, batch_size: int, lr: float, precision: str):
    """The settings every tower recipe checks before it reads anything; the tower's config with head."""
    check_positive(steps=steps, batch_size=batch_size, lr=lr)
    autocast_context(precision)
    return SiglipVisionConfig(**vision_config_kwargs(vision_arch, head=True))


@dataclass(frozen=True)
class TowerImages:
    """A recipe's images decoded at every training size, split into training and held-back rows.

    ``generator`` drew the split and draws the training batches after it, so a seed fixes both.
    """

    sizes: list[int]  # the tower's own size first
    at_size: dict[int, tuple[ImageProcessor, torch.Tensor]]
    train_idx: torch.Tensor
    eval_idx: torch.Tensor
    generator: torch.Generator

    @property
    def n_eval(self) -> int:
        return len(self.eval_idx)

    def pixels(self, size: int, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` at ``size``, normalised as the tower's input."""
        processor, images = self.at_size[size]
        return normalise(images[rows], processor)

    def interpolate(self, size: int) -> bool:
        """Whether the tower resizes its position embeddings for ``size`` (any size but its own)."""
        return size != self.sizes[0]


def tower_images(
    paths: Sequence[str],
    image_root: PathLike,
    *,
    vision_arch: dict[str, Any],
    also_sizes: Sequence[int],
    max_eval: int,
    seed: int,
    aspect: str,
    show: bool,
) -> TowerImages:
    """Hold back up to ``max_eval`` images (at most a tenth) and decode all of them at every size."""
    sizes = training_sizes(vision_arch, also_sizes)
    generator = torch.Generator().manual_seed(seed)
    n_eval = min(max_eval, len(paths) // 10)
    train_idx, eval_idx = split_eval(len(paths), n_eval, generator)
    at_size = images_by_size(paths, image_root, sizes, aspect, show)
    return TowerImages(sizes, at_size, train_idx, eval_idx, generator)


def train_tower(
    loss: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor],
    model: torch.nn.Module,
    images: TowerImages,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup: float,
    desc: str,
    progress: bool,
    precision: str,
) -> tuple[list[float], float]:
    """Train ``model`` on shuffled batches of the training rows, the sizes in turn step by step.

    ``loss(rows, pixels, interpolate)``: the loss of the rows ``rows`` (indices into the recipe's
    items) whose images ``pixels`` are at a size that needs the position embeddings resized or not.
    """

    def step(sized_batch: tuple[int, torch.Tensor]) -> torch.Tensor:
        size, batch = sized_batch
        rows = images.train_idx[batch]
        return loss(rows, images.pixels(size, rows), images.interpolate(size))

    return train_loop(
        step,
        model,
        in_turn(images.sizes, shuffled_batches(len(images.train_idx), batch_size, images.generator)),
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        clip=1.0,
        desc=desc,
        unit="img",
        units_per_step=batch_size,
        show=progress,
        precision=precision,
    )


def tower_record(images: TowerImages, *, steps: int, batch_size: int, lr: float, precision: str) -> dict[str, Any]:
    """The head of a tower recipe's record: what it trained, at which sizes and how."""
    return {"steps": steps, "image_sizes": images.sizes, "batch_size": batch_size, "lr": lr, "precision": precision}


# --------------------------------------------------------------------------- saving; the random arm
def save_vision_tower(trained: SiglipVisionModel, vision_arch: dict[str, Any], out_dir: PathLike) -> int:
    """Save the tower without its pooling head as a plain ``SiglipVisionModel``; returns its size."""
    config = SiglipVisionConfig(**{**vision_arch, "vision_use_head": False})
    tower = SiglipVisionModel(config)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("head.")}
    tower.load_state_dict(state, strict=True)
    with atomic_path(out_dir) as tmp:
        tower.save_pretrained(tmp)
    return sum(p.numel() for p in tower.parameters())


def vision_config_kwargs(vision_arch: dict[str, Any], *, head: bool) -> dict[str, Any]:
    for key in ("hidden_size", "image_size", "patch_size"):
        if key not in vision_arch:
            raise ConfigError(f"vision arch lacks '{key}'")
    return {**vision_arch, "vision_use_head": head}


def random_vision_tower(vision_arch: dict[str, Any], seed: int, out_dir: PathLike) -> dict[str, Any]:
    """A randomly initialised ``SiglipVisionModel`` (no head), saved to ``out_dir``."""
    torch.manual_seed(seed)
    tower = SiglipVisionModel(SiglipVisionConfig(**vision_config_kwargs(vision_arch, head=False)))
    with atomic_path(out_dir) as tmp:
        tower.save_pretrained(tmp)
    return {"seed": seed, "vision_params": sum(p.numel() for p in tower.parameters())}
