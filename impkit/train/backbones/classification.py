"""The ablation arm "classification-pretrained" (paper Table 1's vision encoder ablation): the same
tower as :mod:`.contrastive` (with its head) and a linear classifier, trained with cross-entropy on
labels read from ``scenes.jsonl`` (see :func:`scene_label`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import SiglipVisionModel

from impkit.data.synth.scene import COLOURS, SHAPES
from impkit.train.backbones.inputs import PathLike, as_scenes
from impkit.train.backbones.loop import run_summary
from impkit.train.backbones.vision import (
    TowerImages,
    save_vision_tower,
    tower_config,
    tower_images,
    tower_record,
    train_tower,
)

EVAL_IMAGES = 256  # held-back images for the before-vs-after accuracy (never trained on)
# Scenes: "<colour> <shape>" of the main object, i.e. the first large object in reading order (row,
# then column), or the first object if all are small. Text images: "text". Charts: "bar chart" /
# "line chart".
CLASS_LABELS: tuple[str, ...] = (
    *(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES),
    "text",
    "bar chart",
    "line chart",
)


def scene_label(record: dict[str, Any]) -> str:
    """The class of one ``scenes.jsonl`` record (one of :data:`CLASS_LABELS`)."""
    kind = record.get("kind")
    if kind == "text":
        return "text"
    if kind == "chart":
        if record.get("chart_type") not in ("bar", "line"):
            raise ValueError(f"chart {record.get('image')}: unknown chart type {record.get('chart_type')!r}")
        return f"{record['chart_type']} chart"
    if kind == "scene":
        objects = sorted(record["objects"], key=lambda o: tuple(o["cell"]))
        if not objects:
            raise ValueError(f"scene {record.get('image')} has no objects")
        main = next((o for o in objects if o["size"] == "large"), objects[0])
        label = f"{main['colour']} {main['shape']}"
        if label not in CLASS_LABELS:
            raise ValueError(f"scene {record.get('image')}: '{label}' is not a colour and shape of the world")
        return label
    raise ValueError(f"unknown image kind {kind!r} in {record.get('image')}")


@torch.no_grad()
def _accuracy(
    tower: SiglipVisionModel,
    classifier: torch.nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    interpolate: bool = False,
):
    tower.eval()
    logits = classifier(tower(pixel_values=pixels, interpolate_pos_encoding=interpolate).pooler_output)
    return float((logits.argmax(-1) == labels).float().mean())


class _Classifier(torch.nn.Module):
    def __init__(self, tower: SiglipVisionModel, n_classes: int) -> None:
        super().__init__()
        self.tower = tower
        self.classifier = torch.nn.Linear(tower.config.hidden_size, n_classes)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        features = self.tower(pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        return self.classifier(features.pooler_output)


def _held_back_accuracy(model: _Classifier, images: TowerImages, labels: torch.Tensor, size: int) -> float | None:
    """Accuracy on the held-back images at ``size`` (None: none held back)."""
    if not images.n_eval:
        return None
    rows = images.eval_idx
    return _accuracy(model.tower, model.classifier, images.pixels(size, rows), labels[rows], images.interpolate(size))


def pretrain_classifier_vision_tower(
    scenes: Sequence[dict[str, Any]] | PathLike,
    image_root: PathLike,
    *,
    vision_arch: dict[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    out_dir: PathLike,
    progress: bool = True,
    weight_decay: float = 1e-4,
    warmup: float = 0.1,
    eval_images: int = EVAL_IMAGES,
    aspect: str = "pad",
    precision: str = "fp32",
    also_sizes: Sequence[int] = (),
) -> dict[str, Any]:
    """Classification-pretrained tower: ``SiglipVisionModel`` (with head) + a linear classifier
    trained with cross-entropy over :data:`CLASS_LABELS`; saves the tower (no head) to ``out_dir``.

    ``scenes``: ``scenes.jsonl`` records (or its path); images under ``image_root``. Up to
    ``eval_images`` images (at most a tenth) are held back for accuracy before/after (after: at
    every training size). ``also_sizes`` as in :func:`.contrastive.pretrain_vision_tower`.
    """
    vision_config = tower_config(vision_arch, steps=steps, batch_size=batch_size, lr=lr, precision=precision)
    scenes = as_scenes(scenes)
    if not scenes:
        raise ValueError("no scene records to pretrain on")
    index = {label: i for i, label in enumerate(CLASS_LABELS)}
    labels = torch.tensor([index[scene_label(r)] for r in scenes])
    images = tower_images(
        [r["image"] for r in scenes],
        image_root,
        vision_arch=vision_arch,
        also_sizes=also_sizes,
        max_eval=eval_images,
        seed=seed,
        aspect=aspect,
        show=progress,
    )

    torch.manual_seed(seed)
    model = _Classifier(SiglipVisionModel(vision_config), len(index))

    acc_before = _held_back_accuracy(model, images, labels, images.sizes[0])

    def loss(rows: torch.Tensor, pixels: torch.Tensor, interpolate: bool) -> torch.Tensor:
        return F.cross_entropy(model(pixels, interpolate_pos_encoding=interpolate), labels[rows])

    losses, wall = train_tower(
        loss,
        model,
        images,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        desc="pretrain vision tower (classification)",
        progress=progress,
        precision=precision,
    )
    acc_after = {size: _held_back_accuracy(model, images, labels, size) for size in images.sizes}
    n_params = save_vision_tower(model.tower, vision_arch, out_dir)
    n_train = len(images.train_idx)
    counts = torch.bincount(labels[images.train_idx], minlength=len(index))
    return {
        **tower_record(images, steps=steps, batch_size=batch_size, lr=lr, precision=precision),
        "train_images": n_train,
        "epochs": round(steps * batch_size / n_train, 3),
        "classes": len(index),
        "majority_share": float(counts.max() / counts.sum()),
        **run_summary(losses, wall, steps * batch_size, "samples_per_s"),
        "eval_images": images.n_eval,
        "accuracy_before": acc_before,
        "accuracy_after": acc_after[images.sizes[0]],
        "accuracy_after_by_size": acc_after,
        "vision_params": n_params,
    }
