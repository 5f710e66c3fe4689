"""PIL drawing of scene specs: object scenes, text images and charts (RGB, square).

Shapes and bars are drawn with solid fills and no anti-aliasing, so every object pixel carries
its exact palette colour; tests (and later sanity checks) can recover objects from colour masks.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from impkit.data.synth.scene import PALETTE, TEXT_COLOURS, Chart, Scene, Spec, TextImage

GRID_LINE = (222, 222, 222)  # light grey: a scale cue for charts that no palette colour matches
AXIS = (90, 90, 90)
LABEL_INK = (40, 40, 40)

# Chart layout as fractions of the image size.
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 0.08, 0.05, 0.06, 0.20


@lru_cache(maxsize=256)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable default font, so no font file has to be bundled.
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def _word_font_size(text: str, image_size: int, width_fraction: float) -> int:
    """Font size at which ``text`` spans ``width_fraction`` of the image (height kept below 60%)."""
    probe = 100
    x0, y0, x1, y1 = _font(probe).getbbox(text, stroke_width=probe // 16)
    by_width = probe * width_fraction * image_size / (x1 - x0)
    by_height = probe * 0.6 * image_size / (y1 - y0)
    return max(8, int(min(by_width, by_height)))


def render_scene(scene: Scene, image_size: int) -> Image.Image:
    image = Image.new("RGB", (image_size, image_size), scene.background_rgb)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        fill = PALETTE[obj.colour]
        x0, y0, x1, y1 = obj.bbox
        if obj.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "triangle":
            # Apex up, base along the bottom edge of the box: half the box area, which is what
            # distinguishes it from a square (full) and a circle (pi/4) by fill ratio.
            draw.polygon(((x0 + x1) / 2, y0, x1, y1, x0, y1), fill=fill)
        else:
            raise ValueError(f"unknown shape {obj.shape!r}")
    return image


def render_text(spec: TextImage, image_size: int) -> Image.Image:
    image = Image.new("RGB", (image_size, image_size), spec.background_rgb)
    draw = ImageDraw.Draw(image)
    if spec.frame is not None:
        # Scaled with the image so the frame stays inside the margin the word leaves free.
        inset, width = round(0.02 * image_size), max(1, round(0.03 * image_size))
        draw.rectangle(
            (inset, inset, image_size - 1 - inset, image_size - 1 - inset),
            outline=PALETTE[spec.frame],
            width=width,
        )
    # Capitals are the most legible glyphs at 64 px; answers use the lower-case word.
    text = spec.word.upper()
    size = _word_font_size(text, image_size, round(spec.width_fraction, 3))
    ink = TEXT_COLOURS[spec.ink]
    centre = (image_size / 2 + spec.offset[0], image_size / 2 + spec.offset[1])
    # A stroke in the ink colour thickens the regular default face into a bold one.
    draw.text(centre, text, fill=ink, font=_font(size), anchor="mm", stroke_width=max(1, size // 16), stroke_fill=ink)
    return image


def chart_geometry(image_size: int, n: int) -> tuple[int, int, float, float, float]:
    """(left, baseline y, slot width, pixels per unit value, plot top) of a chart with n items."""
    left = round(CHART_LEFT * image_size)
    right = image_size - round(CHART_RIGHT * image_size)
    top = round(CHART_TOP * image_size)
    base = image_size - round(CHART_BOTTOM * image_size)
    unit = (base - top) / 9
    return left, base, (right - left) / n, unit, top


def render_chart(chart: Chart, image_size: int) -> Image.Image:
    image = Image.new("RGB", (image_size, image_size), chart.background_rgb)
    draw = ImageDraw.Draw(image)
    n = len(chart.values)
    left, base, slot, unit, _ = chart_geometry(image_size, n)
    right = image_size - round(CHART_RIGHT * image_size)
    for v in range(1, 10):
        y = round(base - v * unit)
        draw.line((left, y, right, y), fill=GRID_LINE)
    colour = PALETTE[chart.colour]
    centres = [left + slot * (i + 0.5) for i in range(n)]
    if chart.chart_type == "bar":
        half = slot * 0.3
        for cx, value in zip(centres, chart.values, strict=True):
            draw.rectangle((round(cx - half), round(base - value * unit), round(cx + half) - 1, base - 1), fill=colour)
    elif chart.chart_type == "line":
        points = [(cx, base - value * unit) for cx, value in zip(centres, chart.values, strict=True)]
        draw.line(points, fill=colour, width=2)
        r = max(2, image_size // 40)
        for x, y in points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    else:
        raise ValueError(f"unknown chart type {chart.chart_type!r}")
    draw.line((left, base, right, base), fill=AXIS)
    draw.line((left, round(base - 9 * unit), left, base), fill=AXIS)
    label_font = _font(max(8, round(image_size * 0.13)))
    label_y = base + (image_size - base) / 2
    for cx, label in zip(centres, chart.labels, strict=True):
        draw.text((cx, label_y), label, fill=LABEL_INK, font=label_font, anchor="mm")
    return image


def render(spec: Spec, image_size: int) -> Image.Image:
    if isinstance(spec, Scene):
        return render_scene(spec, image_size)
    if isinstance(spec, TextImage):
        return render_text(spec, image_size)
    if isinstance(spec, Chart):
        return render_chart(spec, image_size)
    raise TypeError(f"cannot render {type(spec).__name__}")
