"""The plot of ``genbatch bench``: images/s against batch size, one line per backend and image
size for genbatch (solid), the plain loop with the same speed options (dashed) and the plain
loop without them (``--vs exact``, dotted). matplotlib draws it when it is installed; otherwise
Pillow does, plainly (the plain loops in thin lines)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

Series = dict[str, list[tuple[int, float]]]


def series(cells: list[dict[str, Any]]) -> Series:
    lines: Series = {}
    for c in cells:
        for side in ("genbatch", "plain", "exact"):
            if c.get(side):
                name = f"{side} {c['backend']} {c['size']}px"
                lines.setdefault(name, []).append((c["batch_size"], c[side]["images_per_s"]))
    return {name: sorted(points) for name, points in lines.items()}


def plot(cells: list[dict[str, Any]], target: Path, title: str) -> None:
    lines = series(cells)
    try:  # an optional package: imported by name
        importlib.import_module("matplotlib").use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        _pillow(lines, target, title)
        return
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, points in lines.items():
        style = {"plain": "--", "exact": ":"}.get(name.split()[0], "-")
        axes.plot(*zip(*points), style, marker="o", label=name)
    axes.set_xlabel("batch size")
    axes.set_ylabel("images/s")
    axes.set_title(title)
    axes.set_ylim(bottom=0)
    axes.legend()
    figure.savefig(target, dpi=100, bbox_inches="tight")
    plt.close(figure)


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _pillow(lines: Series, target: Path, title: str, width: int = 800, height: int = 450) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 60, 40, width - 200, height - 50
    batches = sorted({b for points in lines.values() for b, _ in points}) or [1]
    top_rate = max((r for points in lines.values() for _, r in points), default=1.0) * 1.1 or 1.0
    low, high = min(batches), max(batches)

    def at(batch: int, rate: float) -> tuple[float, float]:
        x = left + (right - left) * ((batch - low) / (high - low) if high > low else 0.5)
        return x, bottom - (bottom - top) * rate / top_rate

    draw.text((left, 10), title, fill="black")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    for batch in batches:
        x, _ = at(batch, 0)
        draw.text((x - 4, bottom + 6), str(batch), fill="black")
    draw.text(((left + right) // 2 - 30, bottom + 24), "batch size", fill="black")
    for k in range(5):
        rate = top_rate * k / 4
        draw.text((5, at(low, rate)[1] - 6), f"{rate:.2f}", fill="black")
    draw.text((5, top - 20), "images/s", fill="black")
    for n, (name, points) in enumerate(lines.items()):
        colour = _COLOURS[n % len(_COLOURS)]
        xy = [at(b, r) for b, r in points]
        dashed = not name.startswith("genbatch")
        for a, b in zip(xy, xy[1:]):
            draw.line([a, b], fill=colour, width=1 if dashed else 3)
        for x, y in xy:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=colour, fill="white" if dashed else colour)
        draw.text((right + 15, top + 18 * n), name + (" (thin)" if dashed else ""), fill=colour)
    image.save(target)
