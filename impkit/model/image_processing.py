"""Image preprocessing as Imp and LLaVA-1.5 do it, with PIL and numpy (no torchvision).

"square": resize straight to the input size. "pad": first pad to a square filled with the mean
colour (LLaVA's ``expand2square`` with the image mean, 127 for SigLIP's 0.5), then resize. Both
resize bicubically and normalise with SigLIP's mean = std = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


@dataclass(frozen=True)
class ImageProcessor:
    size: int
    aspect: str = "pad"  # pad | square
    mean: tuple[float, float, float] = SIGLIP_MEAN
    std: tuple[float, float, float] = SIGLIP_STD

    def __post_init__(self) -> None:
        if self.aspect not in ("pad", "square"):
            raise ValueError(f"aspect must be 'pad' or 'square', got '{self.aspect}'")

    def prepare(self, image: Image.Image) -> Image.Image:
        """The square RGB image the model sees (also what llama.cpp should be fed, already square)."""
        image = image.convert("RGB")
        if self.aspect == "pad":
            image = expand_to_square(image, tuple(int(m * 255) for m in self.mean))
        return image.resize((self.size, self.size), Image.BICUBIC)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The prepared image as uint8 [size, size, 3]: a quarter of the normalised tensor's bytes, for
        callers that keep images in memory (``normalise`` turns it into exactly what ``__call__`` gives)."""
        return np.asarray(self.prepare(image), dtype=np.uint8)

    def normalise(self, pixels: list[np.ndarray]) -> torch.Tensor:
        """uint8 [size, size, 3] arrays (``pixels``) -> float tensor [batch, 3, size, size], normalised."""
        arrays = np.stack([p.astype(np.float32) / 255.0 for p in pixels])
        arrays = (arrays - np.array(self.mean, dtype=np.float32)) / np.array(self.std, dtype=np.float32)
        return torch.from_numpy(arrays.transpose(0, 3, 1, 2).copy())

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        """Images -> float tensor [batch, 3, size, size], normalised."""
        return self.normalise([self.pixels(im) for im in images])
