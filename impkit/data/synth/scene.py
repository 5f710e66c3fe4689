"""Scene specifications for the synthetic world, sampled from a ``random.Random`` (pure data).

Every fact a caption, question or benchmark may state about an image lives in these specs, so
the renderer and the language templates share one source of truth and the ground truth written
next to the images is exactly what was drawn.

Geometry is decided here (not in the renderer) because it *is* ground truth: object centres and
bounding boxes are recorded for the held-out benchmarks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

RGB = tuple[int, int, int]

# Well-separated, saturated colours: they stay distinct after downscaling to 48 px and none is a
# grey, so anti-aliased text or grid lines can never be mistaken for an object colour.
PALETTE: dict[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "yellow": (240, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 135, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)

# Only shapes that remain unmistakable at 48-64 px (a star or a hexagon would not).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")

# Light backgrounds with a little per-image jitter, so no two renders of the same layout are
# pixel-identical and a model cannot key on one exact background value.
BACKGROUNDS: dict[str, RGB] = {
    "white": (250, 250, 250),
    "light grey": (226, 226, 226),
    "cream": (248, 240, 216),
    "pale blue": (222, 234, 248),
}
BACKGROUND_JITTER = 5

# Dark ink for text images; none of them is (or interpolates onto) a palette colour.
TEXT_COLOURS: dict[str, RGB] = {
    "black": (20, 20, 20),
    "dark blue": (20, 40, 120),
    "dark red": (130, 20, 20),
    "dark green": (20, 90, 40),
}

# Short, common words: few letters keep them legible when the image is shrunk to 64 px.
WORDS: tuple[str, ...] = (
    "cat",
    "dog",
    "sun",
    "hat",
    "cup",
    "box",
    "pen",
    "key",
    "car",
    "bus",
    "map",
    "egg",
    "bed",
    "cow",
    "pig",
    "fox",
    "owl",
    "bee",
    "ant",
    "ice",
    "tree",
    "lamp",
    "book",
    "fish",
    "bird",
    "star",
    "moon",
    "cake",
    "door",
    "ship",
    "milk",
    "road",
    "rain",
    "snow",
    "frog",
    "boat",
    "kite",
    "ball",
    "bell",
    "coat",
    "desk",
    "drum",
    "gift",
    "leaf",
    "nest",
    "rose",
    "sock",
    "tent",
    "wolf",
    "apple",
    "bread",
    "chair",
    "clock",
    "house",
    "horse",
    "water",
    "plant",
    "table",
    "train",
    "mouse",
    "heart",
    "lemon",
)

GRID = 3  # objects sit on a GRID x GRID layout of cells
CELL_MARGIN = 2  # pixels kept free inside each cell edge, so objects in neighbouring cells never touch
MAX_OBJECTS = 4
CHART_LABELS = ("A", "B", "C", "D", "E")
CHART_MIN_VALUE, CHART_MAX_VALUE = 1, 9

_ROW_NAMES = ("top", "", "bottom")
_COL_NAMES = ("left", "", "right")


def position_name(row: int, col: int) -> str:
    """Region phrase for a grid cell: 'top left', 'top', ..., 'center', ..., 'bottom right'."""
    name = " ".join(part for part in (_ROW_NAMES[row], _COL_NAMES[col]) if part)
    return name or "center"


POSITIONS: tuple[str, ...] = tuple(position_name(r, c) for r in range(GRID) for c in range(GRID))
POSITION_CELLS: dict[str, tuple[int, int]] = {position_name(r, c): (r, c) for r in range(GRID) for c in range(GRID)}


def cell_span(index: int, image_size: int) -> tuple[int, int]:
    """Pixel range [start, stop) of grid row/column ``index``."""
    return round(index * image_size / GRID), round((index + 1) * image_size / GRID)


def object_diameters(image_size: int) -> dict[str, int]:
    """Pixel diameter per size name: large fills most of a cell, small is about half of it."""
    narrowest_cell = image_size // GRID
    large = min(round(0.84 * image_size / GRID), narrowest_cell - 2 * CELL_MARGIN)
    return {"small": max(3, (large + 1) // 2), "large": large}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    row: int
    col: int
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1, inclusive pixel coordinates

    @property
    def center(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.bbox
        return (x0 + x1) // 2, (y0 + y1) // 2

    @property
    def position(self) -> str:
        return position_name(self.row, self.col)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "cell": [self.row, self.col],
            "position": self.position,
            "center": list(self.center),
            "bbox": list(self.bbox),
        }


@dataclass(frozen=True)
class Scene:
    background: str
    background_rgb: RGB
    objects: tuple[SceneObject, ...]  # in reading order (row, then column)

    kind = "scene"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "background": self.background,
            "background_rgb": list(self.background_rgb),
            "objects": [o.to_dict() for o in self.objects],
        }


@dataclass(frozen=True)
class TextImage:
    word: str
    ink: str  # name in TEXT_COLOURS
    frame: str | None  # palette colour of an optional frame
    background: str
    background_rgb: RGB
    width_fraction: float  # how much of the image width the word spans
    offset: tuple[int, int]  # small shift of the word from the image centre, in pixels

    kind = "text"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "word": self.word,
            "text_colour": self.ink,
            "frame": self.frame,
            "background": self.background,
            "background_rgb": list(self.background_rgb),
        }


@dataclass(frozen=True)
class Chart:
    chart_type: str  # "bar" or "line"
    labels: tuple[str, ...]
    values: tuple[int, ...]
    colour: str  # palette colour of the bars / line
    background_rgb: RGB

    kind = "chart"

    def value_of(self, label: str) -> int:
        return self.values[self.labels.index(label)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "chart_type": self.chart_type,
            "labels": list(self.labels),
            "values": list(self.values),
            "colour": self.colour,
            "background_rgb": list(self.background_rgb),
        }


Spec = Scene | TextImage | Chart


def _jittered(rng: random.Random, rgb: RGB) -> RGB:
    return tuple(min(255, max(0, c + rng.randint(-BACKGROUND_JITTER, BACKGROUND_JITTER))) for c in rgb)  # type: ignore[return-value]


def sample_background(rng: random.Random) -> tuple[str, RGB]:
    name = rng.choice(tuple(BACKGROUNDS))
    return name, _jittered(rng, BACKGROUNDS[name])


def sample_scene(rng: random.Random, image_size: int, n_objects: int | None = None) -> Scene:
    """1-4 objects in distinct grid cells; no two objects share shape, colour *and* size.

    Forbidding exact duplicates keeps every object nameable by a unique phrase, while repeated
    shapes or colours still occur (they make counting and disambiguation questions possible).
    """
    n = n_objects if n_objects is not None else rng.choice((1, 2, 2, 3, 3, 4))
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"a scene holds 1-{MAX_OBJECTS} objects, got {n}")
    background, background_rgb = sample_background(rng)
    diameters = object_diameters(image_size)
    cells = sorted(rng.sample(range(GRID * GRID), n))
    taken: set[tuple[str, str, str]] = set()
    objects = []
    for cell in cells:
        row, col = divmod(cell, GRID)
        while True:
            kind = (rng.choice(SHAPES), rng.choice(COLOURS), rng.choice(SIZES))
            if kind not in taken:
                taken.add(kind)
                break
        shape, colour, size = kind
        d = diameters[size]
        (x_lo, x_hi), (y_lo, y_hi) = cell_span(col, image_size), cell_span(row, image_size)
        # Jitter inside the cell but keep CELL_MARGIN free on every side.
        x0 = x_lo + CELL_MARGIN + rng.randint(0, x_hi - x_lo - d - 2 * CELL_MARGIN)
        y0 = y_lo + CELL_MARGIN + rng.randint(0, y_hi - y_lo - d - 2 * CELL_MARGIN)
        objects.append(SceneObject(shape, colour, size, row, col, (x0, y0, x0 + d - 1, y0 + d - 1)))
    return Scene(background, background_rgb, tuple(objects))


def sample_text_image(rng: random.Random) -> TextImage:
    background, background_rgb = sample_background(rng)
    return TextImage(
        word=rng.choice(WORDS),
        ink=rng.choice(tuple(TEXT_COLOURS)),
        frame=rng.choice(COLOURS) if rng.random() < 0.5 else None,
        background=background,
        background_rgb=background_rgb,
        width_fraction=rng.uniform(0.70, 0.80),
        offset=(rng.randint(-2, 2), rng.randint(-2, 2)),
    )


def sample_chart(rng: random.Random) -> Chart:
    chart_type = rng.choice(("bar", "line"))
    n = rng.randint(3, 4) if chart_type == "bar" else rng.randint(4, 5)
    values = tuple(rng.randint(CHART_MIN_VALUE, CHART_MAX_VALUE) for _ in range(n))
    # Charts always sit on a near-white background: grid lines must stay visible on it.
    background_rgb = _jittered(rng, BACKGROUNDS["white"])
    return Chart(chart_type, CHART_LABELS[:n], values, rng.choice(COLOURS), background_rgb)


def sample_any(rng: random.Random, image_size: int, weights: tuple[float, float, float]) -> Spec:
    """A scene, text image or chart with the given (scene, text, chart) weights."""
    kind = rng.choices(("scene", "text", "chart"), weights=weights)[0]
    if kind == "scene":
        return sample_scene(rng, image_size)
    if kind == "text":
        return sample_text_image(rng)
    return sample_chart(rng)
