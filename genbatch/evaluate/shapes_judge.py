"""The ``shapes`` model's judge: does an image show what its caption asks for?

How it works, on a (64, 64, 3) uint8 image and the caption's spec (shapes_scene):

1. Every pixel gets the nearest palette colour (RGB distance).
2. The background is the most common colour on the outer 2-pixel ring (objects are
   drawn clear of it).
3. Foreground = pixels whose colour is not the background's; its 4-connected
   components of at least MIN_AREA pixels are the *blobs* (so a soft edge of another
   hue stays part of its object and specks are ignored).
4. A blob's colour is its most common palette colour. Its *object mask* is the set of
   pixels around it that lie nearer that colour than the background's along the line
   between the two (a soft edge is cut at the midpoint); its shape is the template
   (circle, square, ... drawn by the generator's own code into the mask's bounding
   box) with the highest IoU against that mask; its position is its centroid.

Scores (each True / False / None when the category does not apply to the caption):

    background  the detected background is the asked one (captions that name one)
    color       the set of blob colours equals the set of asked object colours
    shape       for each asked object, the largest blob of its colour has its shape
    relation    relation captions: the two objects' centroids are displaced the asked
                way, and more along that axis than across it
    count       count captions: the number of blobs equals the asked number
    size        single captions that name a size: the blob's box side is nearest
                the asked size's side
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from genbatch.evaluate import shapes_scene as sd

MIN_AREA = 20
CATEGORIES = ("color", "shape", "relation", "count", "background", "size")
_PALETTE_NAMES = list(sd.PALETTE)
_PALETTE = np.array([sd.PALETTE[c] for c in _PALETTE_NAMES], dtype=np.int32)


@dataclass
class Blob:
    color: str
    shape: str
    area: int
    box: tuple[int, int, int, int]  # x0, y0, w, h
    centroid: tuple[float, float]  # x, y


def palette_labels(image: np.ndarray) -> np.ndarray:
    """(H, W) index into the palette of each pixel's nearest colour."""
    px = image.astype(np.int32)[..., None, :]
    return ((px - _PALETTE) ** 2).sum(-1).argmin(-1)


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, as arrays of (y, x) pixels."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    out = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        q, pixels = deque([(y0, x0)]), []
        while q:
            y, x = q.popleft()
            pixels.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    q.append((ny, nx))
        out.append(np.array(pixels))
    return out


def classify_shape(mask: np.ndarray) -> str:
    """The template shape whose drawing in the mask's box overlaps it best (IoU)."""
    best, best_iou = sd.SHAPES[0], -1.0
    for shape in sd.SHAPES:
        t = sd.shape_mask(shape, mask.shape[1], mask.shape[0])
        iou = (t & mask).sum() / max((t | mask).sum(), 1)
        if iou > best_iou:
            best, best_iou = shape, iou
    return best


def _object_mask(image: np.ndarray, pix: np.ndarray, obj: np.ndarray, bg: np.ndarray):
    """The object's own pixels near a blob: nearer its colour than the background's
    along the line between the two (so a soft edge of an in-between hue is split at
    the midpoint). Returns the mask cropped to its box, and the box's corner (x, y)."""
    ys, xs = pix[:, 0], pix[:, 1]
    y0, y1 = max(ys.min() - 1, 0), min(ys.max() + 2, image.shape[0])
    x0, x1 = max(xs.min() - 1, 0), min(xs.max() + 2, image.shape[1])
    region = image[y0:y1, x0:x1].astype(np.float32)
    d = (obj - bg).astype(np.float32)
    t = ((region - bg) @ d) / max(float(d @ d), 1.0)
    mask = t > 0.5
    if not mask.any():
        mask = np.zeros_like(mask)
        mask[ys - y0, xs - x0] = True
    my, mx = np.nonzero(mask)
    return mask[my.min() : my.max() + 1, mx.min() : mx.max() + 1], (x0 + mx.min(), y0 + my.min())


def analyse(image: np.ndarray) -> tuple[str, list[Blob]]:
    """The background colour and the blobs of an image."""
    labels = palette_labels(image)
    ring = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    bg = Counter(ring.tolist()).most_common(1)[0][0]
    blobs = []
    for pix in _components(labels != bg):
        if len(pix) < MIN_AREA:
            continue
        ys, xs = pix[:, 0], pix[:, 1]
        label = Counter(labels[ys, xs].tolist()).most_common(1)[0][0]
        mask, (x0, y0) = _object_mask(image, pix, _PALETTE[label], _PALETTE[bg])
        h, w = mask.shape
        blobs.append(
            Blob(
                _PALETTE_NAMES[label],
                classify_shape(mask),
                len(pix),
                (int(x0), int(y0), int(w), int(h)),
                (float(xs.mean()), float(ys.mean())),
            )
        )
    return _PALETTE_NAMES[bg], blobs


def _largest(blobs: list[Blob], color: str) -> Blob | None:
    mine = [b for b in blobs if b.color == color]
    return max(mine, key=lambda b: b.area) if mine else None


def score(image: np.ndarray, spec: dict) -> dict[str, bool | None]:
    """Per-category adherence of one image to the spec its caption asks for."""
    bg, blobs = analyse(image)
    objs = spec["objects"]
    out: dict[str, bool | None] = dict.fromkeys(CATEGORIES)
    if spec["background"] is not None:
        out["background"] = bg == spec["background"]
    out["color"] = {b.color for b in blobs} == {o["color"] for o in objs}
    matched = [_largest(blobs, o["color"]) for o in objs]
    out["shape"] = all(m is not None and m.shape == o["shape"] for m, o in zip(matched, objs))
    if spec["kind"] == "relation":
        a, b = matched
        if a is None or b is None:
            out["relation"] = False
        else:
            dx, dy = b.centroid[0] - a.centroid[0], b.centroid[1] - a.centroid[1]
            along, across = {"left": (dx, dy), "right": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[
                spec["relation"]
            ]
            out["relation"] = along > 0 and along > abs(across)
    if spec["kind"] == "count":
        out["count"] = len(blobs) == spec["count"]
    if spec["kind"] == "single" and objs[0].get("size") and spec.get("say_size", True):
        m = matched[0]
        if m is None:
            out["size"] = False
        else:
            side = max(m.box[2], m.box[3])
            nearest = min(sd.SIZES, key=lambda s: abs(sd.SIZES[s] - side))
            out["size"] = nearest == objs[0]["size"]
    return out


def summarize(scores: list[dict[str, bool | None]]) -> dict[str, dict]:
    """Per category: accuracy over the images where it applies, and how many those are."""
    summary = {}
    for cat in CATEGORIES:
        vals = [bool(s[cat]) for s in scores if s[cat] is not None]
        summary[cat] = {"accuracy": (sum(vals) / len(vals)) if vals else None, "n": len(vals)}
    return summary


def judge(image: np.ndarray, prompt: str) -> dict[str, bool | None] | None:
    """Score an image of any size against a caption of the grammar; None when the
    caption is not one the grammar reads (the judge cannot say what it asks for).
    Images other than 64x64 are resized to it first, as the shapes model draws."""
    spec = sd.parse_caption(prompt)
    if spec is None:
        return None
    if image.shape[:2] != (sd.IMAGE_SIZE, sd.IMAGE_SIZE):
        from PIL import Image

        resized = Image.fromarray(image).resize((sd.IMAGE_SIZE, sd.IMAGE_SIZE), Image.Resampling.BILINEAR)
        image = np.asarray(resized)
    return score(image, spec)
