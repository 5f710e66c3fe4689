"""Benchmark: what do the vision tower's patch tokens say about each object? Linear probes for an
object's shape, colour and size, read from the tokens the projector reads, beside the same probe on
the pixels around the object (the information the image holds) and the class prior.

    .venv/bin/python -m benchmarks.tower_probe [--tower models/backbones/vision] [--sizes 64 48]

A probe is a multinomial logistic regression trained on the objects of the world's training scenes
(``data/world/scenes.jsonl``) and scored on those of the held-out scenes. An object's token feature is
the mean of the patch tokens its bounding box overlaps. Where the tokens score far below the pixels,
the tower drops what the multimodal model would need; where both are high and the model still
answers at chance, the loss is on the language model's side (docs/experiments.md).

The "another object's tokens" column probes an object's attribute from the tokens of a different
object of the same scene (scenes of two or more objects): well above the class prior, the tokens
carry the whole picture rather than their own patch, and a language model cannot find one named
object by matching its tokens. At 64 px a patch can straddle two neighbouring grid cells, so two
objects may share a token there; at 48 px a patch is a cell and the column is clean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import SiglipVisionModel

from impkit.model.image_processing import ImageProcessor
from impkit.train.backbones.inputs import read_scenes
from impkit.train.backbones.vision import load_images, normalise

ATTRIBUTES = ("shape", "colour", "size")
PROJECTOR_LAYER = -2  # the layer LLaVA's projector reads (vision_feature_layer in impkit/model/presets.py)


def scenes(path: Path, limit: int | None) -> list[dict]:
    return [r for r in read_scenes(path) if r["kind"] == "scene"][:limit]


@torch.no_grad()
def token_features(tower: SiglipVisionModel, pixels: torch.Tensor, processor: ImageProcessor, layer: int):
    """[images, patches, width] tokens of ``layer`` for uint8 images (positions resized where their
    size is not the tower's)."""
    size = processor.size
    chunks = []
    for start in range(0, len(pixels), 256):
        batch = normalise(pixels[start : start + 256], processor)
        out = tower(
            pixel_values=batch, output_hidden_states=True, interpolate_pos_encoding=size != tower.config.image_size
        )
        chunks.append(out.hidden_states[layer].float())
    return torch.cat(chunks)


def object_rows(records: list[dict], tokens: torch.Tensor, pixels: np.ndarray, world_size: int, patch: int):
    """Per object: the mean of the tokens its box overlaps, the pixels of a window around its centre
    (a third of the image on a side: one grid cell), its attributes, and the mean of the tokens the
    next object of its scene overlaps (NaN where the scene has no other object)."""
    size = pixels.shape[1]
    grid = size // patch
    half = size // 6
    padded = np.pad(pixels.astype(np.float32) / 255.0, ((0, 0), (half, half), (half, half), (0, 0)))
    feats, crops, others, labels = [], [], [], {a: [] for a in ATTRIBUTES}
    for i, record in enumerate(records):
        own = [tokens[i, _overlapped(obj["bbox"], grid, world_size)].mean(0) for obj in record["objects"]]
        for j, obj in enumerate(record["objects"]):
            feats.append(own[j])
            others.append(own[(j + 1) % len(own)] if len(own) > 1 else torch.full_like(own[j], float("nan")))
            cx, cy = (round(v * size / world_size) for v in obj["center"])
            window = padded[i, cy : cy + 2 * half, cx : cx + 2 * half]
            crops.append(torch.from_numpy((window - np.median(window, axis=(0, 1))).reshape(-1)))
            for a in ATTRIBUTES:
                labels[a].append(obj[a])
    return torch.stack(feats), torch.stack(crops), labels, torch.stack(others)


def _overlapped(bbox: list[int], grid: int, world_size: int) -> list[int]:
    """The patches (row-major) a box of inclusive world pixels overlaps."""
    x0, y0, x1, y1 = (v * grid / world_size for v in (bbox[0], bbox[1], bbox[2] + 1, bbox[3] + 1))
    return [
        py * grid + px
        for py in range(grid)
        for px in range(grid)
        if px < x1 and px + 1 > x0 and py < y1 and py + 1 > y0
    ]


def probe_accuracy(train_x: torch.Tensor, train_y: list[str], test_x: torch.Tensor, test_y: list[str]) -> float:
    """Held-out accuracy of a multinomial logistic regression (standardised inputs, L2, full-batch LBFGS)."""
    classes = sorted(set(train_y))
    index = {c: i for i, c in enumerate(classes)}
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    ys = torch.tensor([index[c] for c in train_y])
    torch.manual_seed(0)
    linear = torch.nn.Linear(xs.shape[1], len(classes))
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(xs), ys) + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        predicted = [classes[i] for i in linear(xt).argmax(-1).tolist()]
    return float(np.mean([p == t for p, t in zip(predicted, test_y, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", type=Path, default=Path("models/backbones/vision"))
    parser.add_argument("--world", type=Path, default=Path("data/world"))
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[64, 48], help="input sizes (the presets' 64 and 48 px)"
    )
    parser.add_argument("--train-scenes", type=int, default=2500)
    parser.add_argument("--layer", type=int, default=PROJECTOR_LAYER)
    args = parser.parse_args()
    if not (args.tower / "config.json").is_file():
        raise SystemExit(f"no vision tower at {args.tower}: run `dvc repro backbones` first")
    tower = SiglipVisionModel.from_pretrained(args.tower).eval()
    world_size = json.loads((args.world / "world.json").read_text())["image_size"]
    train = scenes(args.world / "scenes.jsonl", args.train_scenes)
    test = scenes(args.world / "heldout" / "scenes.jsonl", None)
    print(f"tower {args.tower} (layer {args.layer}); {len(train)} training scenes, {len(test)} held-out scenes")
    print(
        "| input | attribute | tokens | another object's tokens | pixels around the object | class prior |\n"
        "|---|---|---|---|---|---|"
    )
    for size in args.sizes:
        rows = {}
        for name, records, root in (
            ("train", train, args.world / "images"),
            ("test", test, args.world / "heldout" / "images"),
        ):
            processor = ImageProcessor(size, "pad")
            pixels = load_images([r["image"] for r in records], root, processor, f"{name} images", show=False)
            tokens = token_features(tower, pixels, processor, args.layer)
            rows[name] = object_rows(records, tokens, pixels.numpy(), world_size, tower.config.patch_size)
        (tr_tok, tr_pix, tr_y, tr_other), (te_tok, te_pix, te_y, te_other) = rows["train"], rows["test"]
        tr_has, te_has = ~tr_other[:, 0].isnan(), ~te_other[:, 0].isnan()
        for a in ATTRIBUTES:
            prior = max(te_y[a].count(c) for c in set(te_y[a])) / len(te_y[a])
            tok = probe_accuracy(tr_tok, tr_y[a], te_tok, te_y[a])
            other = probe_accuracy(
                tr_other[tr_has], _subset(tr_y[a], tr_has), te_other[te_has], _subset(te_y[a], te_has)
            )
            pix = probe_accuracy(tr_pix, tr_y[a], te_pix, te_y[a])
            grid = size // tower.config.patch_size
            print(
                f"| {size} px ({grid}x{grid} patches) | {a} | {tok:.3f} | {other:.3f} | {pix:.3f} | {prior:.3f} |",
                flush=True,
            )


def _subset(labels: list[str], keep: torch.Tensor) -> list[str]:
    return [y for y, k in zip(labels, keep.tolist(), strict=True) if k]


if __name__ == "__main__":
    main()
