"""Deterministic input images for the tests of rows with images (img2img, inpainting, ControlNet,
instruction edits): shapes on a background, masks and edge maps, each in a few variants that
differ from one another everywhere that counts.

Flat colours are no use as inputs: a tiny random VAE normalises them away, and two flat
inputs can come out the same. These are shapes of contrasting colours on a background with a
gradient, so an image's content, not just its mean, differs between variants.

    from image_inputs import shapes_image, mask_image, edge_image
    image = shapes_image(64, 0)          # a PIL RGB image of 64x64
    other = shapes_image((64, 32), 1)    # width x height
    mask = mask_image(64, 0)             # white (repaint) on black (keep), mode "L"
    edges = edge_image(64, 0)            # white outlines on black, RGB, as a Canny control image
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

Size = int | tuple[int, int]

Colour = tuple[int, int, int]
Shape = tuple[str, tuple[float, ...], Colour]  # kind, box (or polygon) in 0..1, colour

# background top colour, background bottom colour, shapes
_SCENES: tuple[tuple[Colour, Colour, tuple[Shape, ...]], ...] = (
    (
        (30, 40, 120),
        (200, 210, 240),
        (
            ("ellipse", (0.10, 0.15, 0.55, 0.60), (230, 40, 30)),
            ("rectangle", (0.55, 0.50, 0.92, 0.90), (250, 220, 40)),
        ),
    ),
    (
        (240, 230, 200),
        (60, 120, 40),
        (
            ("rectangle", (0.08, 0.55, 0.45, 0.95), (20, 20, 20)),
            ("polygon", (0.55, 0.10, 0.95, 0.10, 0.75, 0.55), (40, 90, 230)),
        ),
    ),
    (
        (10, 10, 10),
        (120, 30, 120),
        (
            ("ellipse", (0.45, 0.40, 0.95, 0.95), (250, 250, 250)),
            ("rectangle", (0.05, 0.05, 0.40, 0.35), (30, 200, 200)),
        ),
    ),
)


def _wh(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _scaled(box: tuple[float, ...], width: int, height: int) -> list[float]:
    return [v * (width if i % 2 == 0 else height) for i, v in enumerate(box)]


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, points: list[float], **style: Any) -> None:
    if kind == "ellipse":
        draw.ellipse(points, **style)
    elif kind == "rectangle":
        draw.rectangle(points, **style)
    else:
        draw.polygon(points, **style)


def shapes_image(size: Size = 64, variant: int = 0) -> Image.Image:
    """Variant ``variant`` (0, 1, 2, then round again) of shapes on a vertical gradient, RGB."""
    width, height = _wh(size)
    top, bottom, shapes = _SCENES[variant % len(_SCENES)]
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(height - 1, 1)
        draw.line([(0, y), (width, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    for kind, box, colour in shapes:
        _draw_shape(draw, kind, _scaled(box, width, height), fill=colour)
    return image


def edge_image(size: Size = 64, variant: int = 0) -> Image.Image:
    """The outlines of :func:`shapes_image`'s shapes (and a border line), white on black, RGB:
    what a Canny ControlNet takes as its control image."""
    width, height = _wh(size)
    _, _, shapes = _SCENES[variant % len(_SCENES)]
    image = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    line = max(1, min(width, height) // 32)
    for kind, box, _ in shapes:
        _draw_shape(draw, kind, _scaled(box, width, height), outline=(255, 255, 255), width=line)
    # a horizon at a height of its own per variant, so edge maps differ also where no shape is
    y = round(height * (0.3 + 0.2 * (variant % 3)))
    draw.line([(0, y), (width, y)], fill=(255, 255, 255), width=line)
    return image


# the part of the image to repaint (white), as boxes in 0..1
_MASKS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("rectangle", (0.0, 0.0, 0.5, 1.0)),  # the left half
    ("ellipse", (0.35, 0.35, 1.0, 1.0)),  # a disc at the bottom right
    ("rectangle", (0.0, 0.5, 1.0, 1.0)),  # the bottom half
)


def mask_image(size: Size = 64, variant: int = 0) -> Image.Image:
    """An inpainting mask, mode "L": white (255) where the pipeline repaints, black where it keeps."""
    width, height = _wh(size)
    kind, box = _MASKS[variant % len(_MASKS)]
    image = Image.new("L", (width, height), 0)
    _draw_shape(ImageDraw.Draw(image), kind, _scaled(box, width, height), fill=255)
    return image


def save_inputs(folder: Path, size: Size = 64, variant: int = 0) -> dict[str, Path]:
    """Write the three images of ``variant`` into ``folder`` (image.png, mask.png, edges.png),
    for a manifest row to name. Returns their paths by kind: image, mask_image, control_image."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "image": folder / f"image-{variant}.png",
        "mask_image": folder / f"mask-{variant}.png",
        "control_image": folder / f"edges-{variant}.png",
    }
    shapes_image(size, variant).save(paths["image"])
    mask_image(size, variant).save(paths["mask_image"])
    edge_image(size, variant).save(paths["control_image"])
    return paths
