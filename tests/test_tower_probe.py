"""The tower probe benchmark's parts: an object's token feature is the mean of the patches its box
overlaps (and another object's, the tokens of the next object of its scene), and the linear probe
separates what is separable and not what is noise."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.tower_probe import object_rows, probe_accuracy


def test_an_objects_feature_averages_the_patches_its_box_overlaps():
    # a 32 px image of 2x2 patches of 16 px (world coordinates at 96 px: 3x scale)
    tokens = torch.arange(4, dtype=torch.float32).reshape(1, 4, 1)  # token i holds the value i
    pixels = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    record = {
        "objects": [
            {"bbox": [0, 0, 20, 20], "center": [10, 10], "shape": "circle", "colour": "red", "size": "small"},
            {"bbox": [30, 54, 70, 90], "center": [50, 72], "shape": "square", "colour": "blue", "size": "large"},
        ]
    }
    alone = {"objects": record["objects"][:1]}
    tokens = torch.cat([tokens, tokens])
    pixels = np.concatenate([pixels, pixels])
    feats, crops, labels, others = object_rows([record, alone], tokens, pixels, world_size=96, patch=16)
    assert feats[:, 0].tolist() == [0.0, 2.5, 0.0]  # top-left patch only; the two bottom patches
    # each object beside the other object's tokens; an object alone in its scene has none
    assert others[:2, 0].tolist() == [2.5, 0.0] and others[2].isnan().all()
    assert labels == {
        "shape": ["circle", "square", "circle"],
        "colour": ["red", "blue", "red"],
        "size": ["small", "large", "small"],
    }
    assert crops.shape == (3, 10 * 10 * 3)  # a window of a third of the image around each centre


def test_the_probe_reads_a_separable_attribute_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    y = ["a" if v > 0 else "b" for v in x[:, 3].tolist()]
    assert probe_accuracy(x[:400], y[:400], x[400:], y[400:]) > 0.95
    noise = ["a" if v > 0 else "b" for v in torch.randn(600, generator=g).tolist()]
    assert probe_accuracy(x[:400], noise[:400], x[400:], noise[400:]) < 0.65
