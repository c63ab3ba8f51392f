"""The contract of rows with images, shared by the tests of each pipeline kind (img2img,
inpainting, ControlNet, instruction edits): a CLI run makes the images; an image is the same
alone or in a batch of 3; it equals what plain diffusers returns for the same inputs and
``generator=torch.Generator("cpu").manual_seed(seed)`` (the pipeline made as diffusers' auto
pipelines make it, and called with the ledger line's ``call``); and the tiny build responds to
each input the rows give (a test that compares genbatch with diffusers cannot fail on a build
that ignores them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from helpers import genbatch, ledger, pixels
from PIL import Image, ImageDraw

SENSITIVE = 8  # levels (0-255) a different input must move plain diffusers' image by


def picture(path: Path, variant: int, size: tuple[int, int] = (64, 64)) -> Path:
    """A deterministic input image: shapes on a background (a flat colour is normalised away)."""
    width, height = size
    colours = [(200, 40, 40), (40, 60, 200), (30, 170, 60), (230, 200, 40)]
    image = Image.new("RGB", size, (120 + 20 * (variant % 3), 110, 100))
    draw = ImageDraw.Draw(image)
    a = colours[variant % 4]
    if variant % 2:
        draw.ellipse([width // 8, height // 6, width * 5 // 8, height * 4 // 6], fill=a)
    else:
        draw.rectangle([width // 3, height // 5, width * 7 // 8, height * 3 // 4], fill=a)
    draw.line(
        [0, height - 1 - variant * 3, width, variant * 5], fill=colours[(variant + 1) % 4], width=max(2, width // 16)
    )
    image.save(path)
    return path


def mask(path: Path, variant: int, size: tuple[int, int] = (64, 64)) -> Path:
    """A deterministic mask: white (redrawn) where the variant puts its box, black elsewhere."""
    width, height = size
    image = Image.new("L", size, 0)
    box = [
        [width // 4, height // 4, width * 3 // 4, height * 3 // 4],
        [0, 0, width // 2, height],
        [width // 2, 0, width, height // 2],
    ]
    ImageDraw.Draw(image).rectangle(box[variant % 3], fill=255)
    image.save(path)
    return path


def loaded(record: dict[str, Any], manifest_folder: Path, mode: str) -> Image.Image:
    """An input as plain diffusers is given it: the file the ledger names, opened with Pillow."""
    with Image.open(manifest_folder / record["path"]) as image:
        return image.convert(mode)


def plain_call(call: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A ledger line's ``call`` with its image files opened, as a user would replay it."""
    opened = dict(call)
    for name, mode in (("image", "RGB"), ("mask_image", "L"), ("control_image", "RGB"), ("ip_adapter_image", "RGB")):
        if isinstance(opened.get(name), dict):
            opened[name] = loaded(opened[name], folder, mode)
    return opened


def plain_image(pipe: Any, call: dict[str, Any], seed: int) -> np.ndarray:
    out = pipe(**call, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    return np.round(out.images[0] * 255).astype(np.int16)


def check_image_rows(
    make_plain: Callable[[], Any],
    model: Path | str,
    tmp_path: Path,
    header: str,
    rows: list[str],
    *,
    run_args: tuple[str, ...] = (),
    swaps: dict[str, Any] | None = None,
    name: str = "rows",
) -> dict[str, int]:
    """Run rows with images (``header``: the manifest's columns, ``rows``: its lines, files
    relative to ``tmp_path``; ``name``: the manifest's and outputs' names there) through the CLI
    at batch 3 and 1, and through plain diffusers (``make_plain()``: the pipeline as the auto
    pipelines make it). ``swaps``: a field and another
    file for the first row, to measure how far that input moves plain diffusers' image.
    Returns the figures (max |d| in 0-255 levels)."""
    manifest = tmp_path / f"{name}.csv"
    manifest.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    figures: dict[str, int] = {}
    outs = {}
    for size in (3, 1):
        out = outs[size] = tmp_path / f"{name}-b{size}"
        result = genbatch("run", manifest, "--model", model, "--out", out, "--batch-size", str(size), *run_args)
        assert result.exit_code == 0, result.output
        assert [r["status"] for r in ledger(out)] == ["done"] * len(rows), ledger(out)
    records = ledger(outs[3])
    batched = {r["seed"]: pixels(outs[3] / r["file"]) for r in records}
    alone = {r["seed"]: pixels(outs[1] / r["file"]) for r in ledger(outs[1])}
    figures["batch 3 vs 1"] = max(int(np.abs(batched[s] - alone[s]).max()) for s in batched)
    assert figures["batch 3 vs 1"] <= 1, figures

    pipe = make_plain()
    pipe.set_progress_bar_config(disable=True)
    plain = {r["seed"]: plain_image(pipe, plain_call(r["call"], tmp_path), r["seed"]) for r in records}
    figures["vs plain diffusers"] = max(int(np.abs(batched[s] - plain[s]).max()) for s in batched)
    assert figures["vs plain diffusers"] <= 2, figures

    first = min(records, key=lambda r: r["index"])  # the first row (the ledger is in the order images were written)
    for field, other in (swaps or {}).items():
        call = plain_call(first["call"], tmp_path)
        if isinstance(first[field], dict):  # a file: the call's argument that took it gets another
            argument = next(k for k, v in first["call"].items() if isinstance(v, dict) and v == first[field])
            changed = plain_call({**first["call"], argument: {"path": other}}, tmp_path)
        else:  # a setting (strength): another value
            changed = plain_call({**first["call"], field: other}, tmp_path)
        moved = int(np.abs(plain_image(pipe, changed, first["seed"]) - plain_image(pipe, call, first["seed"])).max())
        figures[f"{field} moves it"] = moved
        assert moved >= SENSITIVE, (field, figures)
    print(f"\nfigures: {name} on {Path(str(model)).name}: {figures}")
    return figures
