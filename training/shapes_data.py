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

from genbatch.evaluate.shapes_scene import (  # noqa: F401  (the grammar and drawing the judge shares)
    BORDER,
    COLORS,
    IMAGE_SIZE,
    NUMBERS,
    PALETTE,
    PLAIN_BACKGROUND,
    PLURALS,
    RELATION_WORDS,
    RELATIONS,
    SHAPES,
    SIZE_WORDS,
    SIZES,
    draw_shape,
    parse_caption,
    shape_mask,
    shape_polygon,
)

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
