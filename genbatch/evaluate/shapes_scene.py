"""The scene grammar of the built-in ``shapes`` model, as far as judging needs it.

What its captions may say (colours, shapes, sizes, relations, counts), how a caption is
read back into the *spec* it asks for, and how each shape is drawn (the judge's
templates). The training data generator (``training/shapes_data.py``) draws its scenes
and captions from the same definitions.

A spec is a plain dict::

    {"kind": "single" | "relation" | "count",
     "background": "blue",                # PLAIN_BACKGROUND when the caption names none
     "objects": [{"color": "red", "shape": "circle", "size": "large"}, ...],
     "relation": "left" | "right" | "above" | "below" | None,
     "count": 1..3 | None,
     "say_background": bool}
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
BORDER = 2  # objects keep this many pixels clear of the image edge

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (30, 170, 50),
    "blue": (30, 60, 230),
    "yellow": (245, 225, 30),
    "orange": (250, 140, 20),
    "purple": (140, 40, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
# The background of a scene whose caption names none: a grey no object has, so that
# "a red circle" has one right answer. (On a random colour the model learnt to paint
# the whole image in the object's colour.) No caption word asks for it.
PLAIN_BACKGROUND = "grey"
PALETTE = {**COLORS, PLAIN_BACKGROUND: (128, 128, 128)}  # every colour a scene can hold
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds", "cross": "crosses"}
SIZES: dict[str, int] = {"small": 14, "medium": 22, "large": 32}  # side of the box, px
SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium",), "large": ("large", "big")}
RELATIONS = ("left", "right", "above", "below")
RELATION_WORDS = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
}
NUMBERS = {1: "one", 2: "two", 3: "three"}


def parse_caption(text: str) -> dict | None:
    """The spec (without positions) a caption from the grammar asks for, else None."""
    words = ["a" if w == "an" else w for w in text.lower().replace(",", " ").split()]
    number_of = {w: n for n, w in NUMBERS.items()}
    background, body, said = PLAIN_BACKGROUND, words, False
    if len(words) >= 4 and words[-1] == "background" and words[-4:-2] == ["on", "a"]:
        background, body, said = words[-2], words[:-4], True
        if background not in COLORS:
            return None
    if body and body[0] in number_of:
        o = _noun_phrase(body[1:])
        return _spec("count", background, [o], said, count=number_of[body[0]]) if o else None
    if not body or body[0] != "a":
        return None
    related = _relation(body[1:])
    if related is not None:
        a, rel, b = related
        return _spec("relation", background, [a, b], said, relation=rel)
    o = _noun_phrase(body[1:])
    return _spec("single", background, [o], said) if o else None


def _spec(
    kind: str, background: str, objects: list[dict], said: bool, relation: str | None = None, count: int | None = None
) -> dict:
    return {
        "kind": kind,
        "background": background,
        "objects": objects,
        "relation": relation,
        "count": count,
        "say_background": said,
    }


def _noun_phrase(ws: list[str]) -> dict | None:
    """``[size] colour shape`` (a shape's plural too) as an object, else None."""
    size_of = {w: s for s, ws in SIZE_WORDS.items() for w in ws}
    singular = {p: s for s, p in PLURALS.items()}
    size = None
    if ws and ws[0] in size_of:
        size, ws = size_of[ws[0]], ws[1:]
    if len(ws) != 2 or ws[0] not in COLORS:
        return None
    shape = ws[1] if ws[1] in SHAPES else singular.get(ws[1])
    if shape is None:
        return None
    return {"color": ws[0], "shape": shape, "size": size}


def _relation(body: list[str]) -> tuple[dict, str, dict] | None:
    """``<object> <relation phrase> a <object>``: the two objects and the relation, longest
    phrase first, else None."""
    phrases = {p: r for r, ps in RELATION_WORDS.items() for p in ps}
    for phrase, rel in sorted(phrases.items(), key=lambda kv: -len(kv[0])):
        p = phrase.split()
        for i in range(len(body) - len(p) + 1):
            if body[i : i + len(p)] == p and i + len(p) < len(body) and body[i + len(p)] == "a":
                a = _noun_phrase(body[:i])
                b = _noun_phrase(body[i + len(p) + 1 :])
                if a and b:
                    return a, rel, b
    return None


def shape_polygon(shape: str, x: float, y: float, w: float, h: float) -> list[tuple] | None:
    """Vertices of `shape` in the box (x, y, w, h); None for a circle (an ellipse)."""
    x1, y1 = x + w - 1, y + h - 1
    cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
    if shape == "circle":
        return None
    if shape == "square":
        return [(x, y), (x1, y), (x1, y1), (x, y1)]
    if shape == "triangle":
        return [(cx, y), (x1, y1), (x, y1)]
    if shape == "diamond":
        return [(cx, y), (x1, cy), (cx, y1), (x, cy)]
    if shape == "cross":
        a, b = x + w / 3, x + 2 * w / 3 - 1
        c, d = y + h / 3, y + 2 * h / 3 - 1
        return [(a, y), (b, y), (b, c), (x1, c), (x1, d), (b, d), (b, y1), (a, y1), (a, d), (x, d), (x, c), (a, c)]
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple, fill) -> None:
    x, y, w, h = box
    poly = shape_polygon(shape, x, y, w, h)
    if poly is None:
        draw.ellipse([x, y, x + w - 1, y + h - 1], fill=fill)
    else:
        draw.polygon(poly, fill=fill)


def shape_mask(shape: str, w: int, h: int) -> np.ndarray:
    """A boolean (h, w) mask of `shape` filling a w×h box: the checker's template."""
    img = Image.new("L", (w, h), 0)
    draw_shape(ImageDraw.Draw(img), shape, (0, 0, w, h), 255)
    return np.asarray(img) > 127
