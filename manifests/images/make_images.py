"""Draw the input images of manifests/edits.csv: 64x64 scenes of the ``shapes`` model's world (a
shape or two of its colours on a background), each with a pencil line across it, which the
model does not draw, so its image-to-image outputs show what they kept of their input.

    python manifests/images/make_images.py     # (re)writes the PNGs beside this script

The PNGs are committed; the drawing is deterministic, so running this again writes the same files.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from genbatch.evaluate.shapes_scene import COLORS, draw_shape

HERE = Path(__file__).resolve().parent
SIZE = 64
PENCIL = (70, 70, 70)

# name: (background, [(shape, colour, (x, y, width, height))...], pencil line)
SCENES = {
    "red-circle-on-blue": ("blue", [("circle", "red", (14, 14, 36, 36))], (4, 58, 58, 44)),
    "green-square-on-white": ("white", [("square", "green", (18, 18, 28, 28))], (6, 8, 60, 20)),
    "circle-left-of-square": (
        "white",
        [("circle", "red", (6, 22, 22, 22)), ("square", "blue", (38, 22, 20, 20))],
        (2, 52, 62, 56),
    ),
    "yellow-triangle-on-black": ("black", [("triangle", "yellow", (16, 12, 32, 36))], (10, 60, 54, 4)),
}


def scene(background: str, shapes: list[tuple[str, str, tuple[int, int, int, int]]], line: tuple) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), COLORS[background])
    draw = ImageDraw.Draw(image)
    for shape, colour, box in shapes:
        draw_shape(draw, shape, box, COLORS[colour])
    draw.line(line, fill=PENCIL, width=2)
    return image


def main() -> None:
    for name, (background, shapes, line) in SCENES.items():
        scene(background, shapes, line).save(HERE / f"{name}.png", optimize=True)


if __name__ == "__main__":
    main()
