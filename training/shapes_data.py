"""Procedural scenes of flat-colour shapes, with captions from a small grammar.

Every scene is described by a *spec* (a plain dict) from which both the caption and
the image are made, so the spec is the ground truth a checker can score against:

    {"kind": "single" | "relation" | "count",
     "background": "blue",                # PLAIN_BACKGROUND when the caption names none
     "objects": [{"color": "red", "shape": "circle", "size": "large",
                  "box": [x0, y0, side]}, ...],
     "relation": "left" | "right" | "above" | "below" | None,   # relation scenes
     "count": 1..3 | None,                                     # count scenes
     "say_background": bool}              # False: the caption leaves the background out

Caption kinds (with paraphrases chosen at random):

    single    a large red circle on a blue background      (big = large, little = small;
              a red circle on a blue background            size may be left out)
              a large red circle                           (so may the background, see
                                                            sample_scene's say_background:
                                                            the scene is then on grey)
    relation  a red circle to the left of a blue square on a white background
              (left of / to the left of, right of / to the right of, above / over,
               below / under)
    count     two small green triangles on a black background  (one, two, three)

Held-out captions: a scene's *semantic key* (what its caption says, paraphrases
aside) is hashed; keys whose hash falls in the held-out bucket are never sampled for
training and are the only ones sampled for evaluation.
"""

from __future__ import annotations

import random
import zlib

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
KINDS = ("single", "relation", "count")
KIND_WEIGHTS = (0.35, 0.35, 0.30)
HELDOUT_BUCKETS = 10  # one key in ten is held out
SAY_BACKGROUND_HELDOUT = 0.8  # held-out captions name the background this often


# --------------------------------------------------------------------------- grammar


def vocabulary() -> list[str]:
    """Every word a caption can contain, in a fixed order."""
    words = ["a", "an", "on", "background", "of", "to", "the"]
    words += list(COLORS) + list(SHAPES) + list(PLURALS.values())
    for ws in SIZE_WORDS.values():
        words += list(ws)
    for ws in RELATION_WORDS.values():
        for phrase in ws:
            words += phrase.split()
    words += list(NUMBERS.values())
    return list(dict.fromkeys(words))


def semantic_key(spec: dict) -> str:
    """What a caption says, without paraphrase, sizes of unsized objects or positions."""
    objs = spec["objects"]
    if spec["kind"] == "single":
        o = objs[0]
        bg = spec["background"] if spec.get("say_background", True) else "any"
        return f"single|{o['color']}|{o['shape']}|{bg}"
    if spec["kind"] == "relation":
        a, b = objs
        return f"relation|{a['color']}|{a['shape']}|{spec['relation']}|{b['color']}|{b['shape']}"
    o = objs[0]
    return f"count|{spec['count']}|{o['color']}|{o['shape']}"


def is_heldout(spec: dict) -> bool:
    return zlib.crc32(semantic_key(spec).encode()) % HELDOUT_BUCKETS == 0


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(spec: dict, rng: random.Random | None = None) -> str:
    """The caption for a spec; with an rng, paraphrases are picked at random."""
    pick = (lambda xs: rng.choice(xs)) if rng is not None else (lambda xs: xs[0])
    bg = f" on {_a(spec['background'])} background" if spec.get("say_background", True) else ""
    objs = spec["objects"]
    if spec["kind"] == "single":
        o = objs[0]
        size = f"{pick(SIZE_WORDS[o['size']])} " if spec.get("say_size", True) else ""
        return f"{_a(size + o['color'])} {o['shape']}{bg}"
    if spec["kind"] == "relation":
        a, b = objs
        rel = pick(RELATION_WORDS[spec["relation"]])
        return f"{_a(a['color'])} {a['shape']} {rel} {_a(b['color'])} {b['shape']}{bg}"
    o = objs[0]
    n = spec["count"]
    noun = o["shape"] if n == 1 else PLURALS[o["shape"]]
    size = f"{pick(SIZE_WORDS[o['size']])} " if spec.get("say_size", True) else ""
    return f"{NUMBERS[n]} {size}{o['color']} {noun}{bg}"


def parse_caption(text: str) -> dict | None:
    """The spec (without positions) a caption from the grammar asks for, else None."""
    words = ["a" if w == "an" else w for w in text.lower().replace(",", " ").split()]
    size_of = {w: s for s, ws in SIZE_WORDS.items() for w in ws}
    singular = {p: s for s, p in PLURALS.items()}
    number_of = {w: n for n, w in NUMBERS.items()}
    background, body, said = PLAIN_BACKGROUND, words, False
    if len(words) >= 4 and words[-1] == "background" and words[-4:-2] == ["on", "a"]:
        background, body, said = words[-2], words[:-4], True
        if background not in COLORS:
            return None

    def noun_phrase(ws: list[str]) -> dict | None:
        size = None
        if ws and ws[0] in size_of:
            size, ws = size_of[ws[0]], ws[1:]
        if len(ws) != 2 or ws[0] not in COLORS:
            return None
        shape = ws[1] if ws[1] in SHAPES else singular.get(ws[1])
        if shape is None:
            return None
        return {"color": ws[0], "shape": shape, "size": size}

    if body and body[0] in number_of:
        o = noun_phrase(body[1:])
        if o is None:
            return None
        return {
            "kind": "count",
            "background": background,
            "objects": [o],
            "relation": None,
            "count": number_of[body[0]],
            "say_background": said,
        }
    if not body or body[0] != "a":
        return None
    body = body[1:]
    phrases = {p: r for r, ps in RELATION_WORDS.items() for p in ps}
    for phrase, rel in sorted(phrases.items(), key=lambda kv: -len(kv[0])):
        p = phrase.split()
        for i in range(len(body) - len(p) + 1):
            if body[i : i + len(p)] == p and i + len(p) < len(body) and body[i + len(p)] == "a":
                a = noun_phrase(body[:i])
                b = noun_phrase(body[i + len(p) + 1 :])
                if a and b:
                    return {
                        "kind": "relation",
                        "background": background,
                        "objects": [a, b],
                        "relation": rel,
                        "count": None,
                        "say_background": said,
                    }
    o = noun_phrase(body)
    if o is None:
        return None
    return {
        "kind": "single",
        "background": background,
        "objects": [o],
        "relation": None,
        "count": None,
        "say_background": said,
    }


# --------------------------------------------------------------------------- scenes


def place(rng: random.Random, side: int) -> tuple[int, int]:
    """A random top-left corner for a box of this side, clear of the border."""
    hi = IMAGE_SIZE - BORDER - side
    return rng.randint(BORDER, hi), rng.randint(BORDER, hi)


def _apart(a: list[int], b: list[int], gap: int = 3) -> bool:
    ax, ay, s = a
    bx, by, t = b
    return ax + s + gap <= bx or bx + t + gap <= ax or ay + s + gap <= by or by + t + gap <= ay


def _jitter(rng: random.Random, size: str) -> int:
    return SIZES[size] + rng.randint(-1, 1)


def centre(box: list[int]) -> tuple[float, float]:
    """The centre (x, y) of a box [x, y, side]."""
    x, y, side = box
    return x + side / 2, y + side / 2


def _along_across(rel: str, dx: float, dy: float) -> tuple[float, float]:
    """A displacement split into its part in the relation's direction and across it."""
    return {"left": (dx, dy), "right": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[rel]


def _relation_boxes(rng: random.Random, sizes: list[str], rel: str) -> list[list[int]]:
    mid = IMAGE_SIZE / 2
    while True:
        boxes = [[*place(rng, s := _jitter(rng, z)), s] for z in sizes]
        (ax, ay), (bx, by) = (centre(b) for b in boxes)
        along, across = _along_across(rel, bx - ax, by - ay)
        # the first-named object in the half of the image the relation names, the other
        # in the other half: where each goes is then said by the caption, not worked
        # out from where the other happened to land
        first, second = (_along_across(rel, x - mid, y - mid)[0] for x, y in ((ax, ay), (bx, by)))
        if along >= 12 and abs(across) <= 0.6 * along and first < 0 < second and _apart(*boxes):
            return boxes


def _count_boxes(rng: random.Random, size: str, n: int) -> list[list[int]]:
    """n boxes side by side: the i-th one's centre in the i-th of n equal columns, so
    that how many there are is said by where they are, as a relation's order is."""
    band = IMAGE_SIZE / n
    while True:
        boxes = [[*place(rng, s := _jitter(rng, size)), s] for _ in range(n)]
        if all(i * band <= centre(b)[0] < (i + 1) * band for i, b in enumerate(boxes)) and all(
            _apart(boxes[i], boxes[j]) for i in range(n) for j in range(i + 1, n)
        ):
            return boxes


def resample_layout(spec: dict, rng: random.Random) -> dict:
    """The same caption content with new random positions (the data's own diversity)."""
    new = {**spec, "objects": [dict(o) for o in spec["objects"]]}
    objs = new["objects"]
    if spec["kind"] == "single":
        side = _jitter(rng, objs[0]["size"])
        boxes = [[*place(rng, side), side]]
    elif spec["kind"] == "relation":
        boxes = _relation_boxes(rng, [o["size"] for o in objs], spec["relation"])
    else:
        boxes = _count_boxes(rng, objs[0]["size"], spec["count"])
    for o, b in zip(objs, boxes):
        o["box"] = b
    return new


def single_spec(background: str, color: str, shape: str, size: str, box: list[int], say_size: bool = True) -> dict:
    """The spec of one object (box: [x, y, side]) on a background."""
    obj = {"color": color, "shape": shape, "size": size, "box": box}
    return {
        "kind": "single",
        "background": background,
        "objects": [obj],
        "relation": None,
        "count": None,
        "say_size": say_size,
    }


def _random_spec(rng: random.Random) -> dict:
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    bg = rng.choice(list(COLORS))
    fg = [c for c in COLORS if c != bg]
    if kind == "single":
        size = rng.choice(list(SIZES))
        side = _jitter(rng, size)
        x, y = place(rng, side)
        color, shape = rng.choice(fg), rng.choice(SHAPES)
        return single_spec(bg, color, shape, size, [x, y, side], say_size=rng.random() < 0.8)
    if kind == "relation":
        ca, cb = rng.sample(fg, 2)
        rel = rng.choice(RELATIONS)
        sizes = [rng.choice(("small", "medium")) for _ in range(2)]
        boxes = _relation_boxes(rng, sizes, rel)
        objs = [
            {"color": c, "shape": rng.choice(SHAPES), "size": z, "box": b} for c, z, b in zip((ca, cb), sizes, boxes)
        ]
        return {"kind": kind, "background": bg, "objects": objs, "relation": rel, "count": None}
    n = rng.randint(1, 3)
    size = rng.choice(("small", "medium")) if n > 1 else rng.choice(list(SIZES))
    color, shape = rng.choice(fg), rng.choice(SHAPES)
    boxes = _count_boxes(rng, size, n)
    objs = [{"color": color, "shape": shape, "size": size, "box": b} for b in boxes]
    return {
        "kind": kind,
        "background": bg,
        "objects": objs,
        "relation": None,
        "count": n,
        "say_size": rng.random() < 0.7,
    }


def sample_scene(rng: random.Random, split: str = "train", say_background: float = 1.0) -> tuple[dict, str]:
    """A random (spec, caption) whose semantic key belongs to `split` ("train"/"heldout").

    `say_background` is the share of captions that name the background (below 1.0
    one more random draw is made per scene)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}")
    while True:
        spec = _random_spec(rng)
        spec["say_background"] = say_background >= 1.0 or rng.random() < say_background
        if not spec["say_background"]:
            spec["background"] = PLAIN_BACKGROUND
        if is_heldout(spec) == (split == "heldout"):
            return spec, caption(spec, rng)


# --------------------------------------------------------------------------- drawing


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


def render(spec: dict) -> np.ndarray:
    """The (64, 64, 3) uint8 image of a spec: flat colours, no anti-aliasing."""
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), PALETTE[spec["background"]])
    draw = ImageDraw.Draw(img)
    for o in spec["objects"]:
        x, y, s = o["box"]
        draw_shape(draw, o["shape"], (x, y, s, s), COLORS[o["color"]])
    return np.asarray(img)


def batch(rng: random.Random, n: int, split: str = "train", say_background: float = 1.0):
    """n fresh samples: (uint8 images (n, 64, 64, 3), captions, specs)."""
    specs, caps = zip(*(sample_scene(rng, split, say_background) for _ in range(n)))
    images = np.stack([render(s) for s in specs])
    return images, list(caps), list(specs)


def heldout_set(n: int, seed: int = 1234) -> list[tuple[dict, str]]:
    """A fixed evaluation set of n held-out (spec, caption) pairs."""
    rng = random.Random(seed)
    return [sample_scene(rng, "heldout", SAY_BACKGROUND_HELDOUT) for _ in range(n)]
