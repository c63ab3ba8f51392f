"""Comparison grids: an output folder's images laid out by two parameters, as AUTOMATIC1111's
X/Y/Z plot lays them out.

``genbatch grid OUT --rows prompt --cols lora`` reads the ledger (the done images on disk)
and writes one PNG per page into ``OUT/.genbatch-grids/``: a column label above each column,
a row label left of each row (long prompts wrapped, and cut with "…" where a row is too
short for them), the images at their own size (or fitted into ``--cell-size``). A third axis
(``--pages seed``) makes one grid per value; ``--inputs`` puts each row's input images (the
image, mask and control image its images were made from) in columns of their own first. Beside
each PNG a JSON file records the layout: the axes, the labels, and for each cell the image's
file, key and box in the grid (an input's: its field, path and sha256). The grids
sit in a hidden folder, like the report's thumbnails, so a data-set layout in OUT is left as
it is; the HTML report lists them.

An axis is a generation field (prompt, negative_prompt, seed, steps, guidance, width,
height, sampler/scheduler, lora, prompt_weighting, image, strength...), ``model``, or a column
of the manifest.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from genbatch.errors import GenbatchError
from genbatch.manifest.fields import ALIASES, BY_NAME, INPUT_FIELDS, text_value
from genbatch.report.folder import as_int, load_folder
from genbatch.report.input_thumbnails import LABELS, input_picture, recorded_inputs
from genbatch.report.thumbnails import thumbnail
from genbatch.safe_write import contained, remove, write_atomic
from genbatch.store.ledger import iter_records

GRIDS_DIR = ".genbatch-grids"
BACKGROUND = (255, 255, 255)
CELL_BACKGROUND = (238, 240, 243)
TEXT = (29, 33, 37)
MUTED = (106, 115, 125)
PAD = 6
MAX_HEADER_LINES = 4
# Names people use for an axis -> the ledger field they mean.
_SYNONYMS = {
    "sampler": "scheduler",
    "cfg": "guidance_scale",
    "guidance": "guidance_scale",
    "size": "size",
    "negative": "negative_prompt",
    "weighting": "prompt_weighting",
}
FIELD_AXES = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "width",
    "height",
    "scheduler",
    "lora",
    "prompt_weighting",
    "model",
    "size",
    "image",
    "mask_image",
    "control_image",
    "strength",
    "resize",
    "controlnet",
    "controlnet_conditioning_scale",
    "ip_adapter_image",
    "ip_adapter",
    "ip_adapter_scale",
)


class GridError(GenbatchError):
    """A grid that cannot be made from this folder as asked."""


@dataclass
class Page:
    """One grid image: its labels and, per cell, the ledger record shown there (or None)."""

    title: str | None
    row_axis: str
    col_axis: str
    rows: list[str]
    cols: list[str]
    cells: list[list[dict[str, Any] | None]]
    # With --inputs: the input columns' fields (image, mask_image, control_image), and each row's
    # input of each (a record of the row and its input's: path, sha256...; None where it has none)
    input_fields: list[str] = field(default_factory=list)
    inputs: list[list[tuple[dict[str, Any], dict[str, Any]] | None]] = field(default_factory=list)


def ledger_order(ledger: list[dict[str, Any]], cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``cards`` in the order their jobs were made: run by run, in the order the runs first
    appear in the ledger (``ledger``, every record in file order; it is append-only, so an
    earlier run's records come first), and in job order (manifest row, then variant) within a
    run, whatever order its images were finished in. A job belongs to the run that first
    recorded it, even when a later run made its image. Ties (no run id, as in an old ledger)
    go by where the job first appears in the ledger; nothing goes by a job key, which is a hash."""
    runs: dict[object, int] = {}
    first: dict[object, tuple[int, int]] = {}  # job key -> (its first run, its first record)
    for position, record in enumerate(ledger):
        run = runs.setdefault(record.get("run_id"), len(runs))
        first.setdefault(record.get("key"), (run, position))

    def made(record: dict[str, Any]) -> tuple[int, int, int, int]:
        run, position = first.get(record.get("key"), (len(runs), len(ledger)))
        return (run, as_int(record.get("index"), 1 << 62), as_int(record.get("k"), 0), position)

    return sorted(cards, key=made)


def axis_name(name: str, records: list[dict[str, Any]]) -> str:
    """The field an axis name means, or the manifest column it names; GridError otherwise."""
    norm = name.strip().lower().replace("-", "_").replace(" ", "_")
    norm = _SYNONYMS.get(norm, norm)
    norm = next((field for field, aliases in ALIASES.items() if norm in aliases), norm)
    if norm in FIELD_AXES:
        return norm
    if any(isinstance(r.get("fields"), dict) and name in r["fields"] for r in records):
        return f"fields.{name}"
    columns = sorted({c for r in records if isinstance(r.get("fields"), dict) for c in r["fields"]})
    axes = ", ".join(_SHOWN_AXES.get(axis, axis) for axis in FIELD_AXES)
    raise GridError(
        f"no axis {name!r}: expected one of {axes}, or a manifest column"
        + (f" ({', '.join(columns)})" if columns else "")
    )


# How an axis is named in messages, where a shorter name means it too (_SYNONYMS, the fields' aliases).
_SHOWN_AXES = {
    "guidance_scale": "guidance",
    "scheduler": "sampler",
    "mask_image": "mask",
    "controlnet_conditioning_scale": "control_scale",
    "ip_adapter_scale": "ip_scale",
}


def label(record: dict[str, Any], axis: str) -> str:
    """How a record reads on an axis."""
    if axis.startswith("fields."):
        value = (record.get("fields") or {}).get(axis[len("fields.") :])
        return "" if value is None else str(value)
    if axis == "size":
        return f"{record.get('width')}x{record.get('height')}"
    if axis == "prompt_weighting":
        return record.get("prompt_weighting") or "off"
    if axis in BY_NAME:
        return text_value(axis, record.get(axis))
    return str(record.get(axis, ""))


def plan_pages(records: list[dict[str, Any]], rows: str, cols: str, pages: str | None) -> list[Page]:
    """The grid pages of ``records`` (done images, in the order ledger_order gives): labels in
    order of first appearance. A cell that would hold two images is refused, naming what differs in it."""
    axes = [rows, cols] + ([pages] if pages else [])
    if len(set(axes)) < len(axes):
        raise GridError(f"--rows, --cols and --pages must be different axes, not {', '.join(axes)}")
    order: dict[str, dict[str, None]] = {axis: {} for axis in axes}
    for record in records:
        for axis in axes:
            order[axis].setdefault(label(record, axis), None)
    found: list[Page] = []
    for page in list(order[pages]) if pages else [None]:
        chosen = [r for r in records if pages is None or label(r, pages) == page]
        row_labels = [v for v in order[rows] if any(label(r, rows) == v for r in chosen)]
        col_labels = [v for v in order[cols] if any(label(r, cols) == v for r in chosen)]
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in chosen:
            cells.setdefault((label(record, rows), label(record, cols)), []).append(record)
        for (row, col), held in cells.items():
            if len(held) > 1:
                raise GridError(_crowded(held, rows, cols, row, col, page, pages))
        found.append(
            Page(
                None if pages is None else f"{_axis_title(pages)}: {page}",
                _axis_title(rows),
                _axis_title(cols),
                row_labels,
                col_labels,
                [[cells.get((row, col), [None])[0] for col in col_labels] for row in row_labels],
            )
        )
    return found


def _crowded(
    held: list[dict[str, Any]], rows: str, cols: str, row: str, col: str, page: str | None, pages: str | None
) -> str:
    columns = sorted({f"fields.{c}" for r in held for c in (r.get("fields") or {})})
    differ = [a for a in [*FIELD_AXES, *columns] if len({label(r, a) for r in held}) > 1 and a != "size"]
    where = f"{_axis_title(rows)} {row!r}, {_axis_title(cols)} {col!r}" + (
        f", {_axis_title(pages)} {page!r}" if pages else ""
    )
    hint = f"; add --pages {_axis_title(differ[0])}" if differ and not pages else ""
    return (
        f"the cell {where} would hold {len(held)} images, which differ in "
        f"{', '.join(_axis_title(d) for d in differ) or 'nothing but their number (k)'}{hint}, or pick "
        "other axes"
    )


def _axis_title(axis: str) -> str:
    return axis[len("fields.") :] if axis.startswith("fields.") else {"guidance_scale": "guidance"}.get(axis, axis)


def with_inputs(page: Page) -> Page:
    """``page`` with its input columns first (``--inputs``): a column for each kind of input its
    images were made from (image, mask, control image), holding each row's. A row whose images
    were made from different inputs of a kind has no one input to show: GridError, naming them."""
    held = [[r for r in row if r is not None] for row in page.cells]
    fields = [name for name in INPUT_FIELDS if any(isinstance(r.get(name), dict) for row in held for r in row)]
    inputs: list[list[tuple[dict[str, Any], dict[str, Any]] | None]] = []
    for label_text, row in zip(page.rows, held):
        found: list[tuple[dict[str, Any], dict[str, Any]] | None] = []
        for name in fields:
            given = {_input_identity(r.get(name)): r.get(name) for r in row}
            if len(given) > 1:
                paths = ", ".join(sorted(text_value(name, v) for v in given.values()))
                raise GridError(
                    f"--inputs: the row {page.row_axis} {label_text!r} holds images made from different "
                    f"{LABELS[name]}s ({paths}): put them on the rows (--rows {name}), or leave --inputs out"
                )
            record = next((r for r in row if isinstance(r.get(name), dict)), None)
            found.append((record, record[name]) if record is not None else None)
        inputs.append(found)
    return replace(page, input_fields=fields, inputs=inputs)


def _input_identity(value: Any) -> Any:
    return (value.get("sha256"), value.get("path")) if isinstance(value, dict) else None


def write_grids(
    out: Path,
    rows: str,
    cols: str,
    pages: str | None = None,
    *,
    cell_size: int | None = None,
    inputs: bool = False,
) -> list[Path]:
    """Write the grids of ``out`` (PNG plus layout JSON each) and return the PNGs' paths; with
    ``inputs``, each row's input images in columns of their own first (:func:`with_inputs`)."""
    out = Path(out)
    ledger = list(iter_records(out))
    records = ledger_order(ledger, load_folder(out, ledger).cards)
    if not records:
        raise GridError(f"{out}: no images on disk to lay out (the ledger records none as done)")
    if inputs and not any(recorded_inputs(r) for r in records):
        raise GridError(f"--inputs: no image in {out} was made from an input image (an image, mask or control column)")
    rows_axis, cols_axis = axis_name(rows, records), axis_name(cols, records)
    pages_axis = axis_name(pages, records) if pages else None
    found = plan_pages(records, rows_axis, cols_axis, pages_axis)
    if inputs:
        found = [with_inputs(page) for page in found]
    base = "-by-".join(_slug(_axis_title(a)) for a in (rows_axis, cols_axis)) + (
        f"-per-{_slug(_axis_title(pages_axis))}" if pages_axis else ""
    )
    folder = contained(out, GRIDS_DIR)
    paths = []
    for number, page in enumerate(found, start=1):
        name = f"{base}-{number:03d}" if pages_axis else base
        image, layout = render(out, page, cell_size)
        layout.update(
            rows_axis=_axis_title(rows_axis),
            cols_axis=_axis_title(cols_axis),
            pages_axis=_axis_title(pages_axis) if pages_axis else None,
            image=f"{name}.png",
        )
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        write_atomic(folder / f"{name}.png", buffer.getvalue(), root=out)
        write_atomic(
            folder / f"{name}.json", (json.dumps(layout, indent=1, ensure_ascii=False) + "\n").encode(), root=out
        )
        paths.append(folder / f"{name}.png")
    if pages_axis:  # pages left from an earlier grid of the same axes with more values
        pattern = re.compile(re.escape(base) + r"-(\d{3,})\.(png|json)$")
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match and int(match.group(1)) > len(found):
                remove(out, path)
    return paths


def list_grids(out: Path) -> list[dict[str, Any]]:
    """The grids in ``out`` (their layout JSON, with ``image`` relative to ``out``), by name."""
    folder = Path(out) / GRIDS_DIR
    if not folder.is_dir() or folder.is_symlink():
        return []
    grids = []
    for path in sorted(folder.glob("*.json")):
        try:
            layout = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(layout, dict) and (folder / str(layout.get("image"))).is_file():
            grids.append(dict(layout, image=f"{GRIDS_DIR}/{layout['image']}"))
    return grids


# --- drawing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """Where things go on a page's grid: cell, column and label sizes, and the font."""

    font: Any
    line_h: int
    cell_w: int
    cell_h: int
    col_w: int
    label_w: int
    title_h: int
    header_h: int

    @property
    def left(self) -> int:
        return self.label_w + PAD

    @property
    def top(self) -> int:
        return self.title_h + self.header_h


def render(out: Path, page: Page, cell_size: int | None) -> tuple[Image.Image, dict[str, Any]]:
    """The grid image of a page, and its layout (labels, and each cell's box and image); with
    input columns (``--inputs``), each row's inputs first, fitted into the images' cell size."""
    pictures = [[_picture(out, record, cell_size) for record in row] for row in page.cells]
    sizes = [p.size for row in pictures for p in row if p is not None]
    cell_w = max((w for w, _ in sizes), default=64)
    cell_h = max((h for _, h in sizes), default=64)
    cols = [LABELS[name] for name in page.input_fields] + page.cols
    entries = [
        [_input_entry(out, name, given, cell_w, cell_h) for name, given in zip(page.input_fields, inputs)]
        + [_entry(record, picture) for record, picture in zip(records, row_pictures)]
        for records, row_pictures, inputs in zip(page.cells, pictures, page.inputs or [[]] * len(page.cells))
    ]
    font_size = max(11, min(24, cell_w // 14))
    font, line_h = _font(font_size), font_size + 4
    col_w = max(cell_w, 96)  # a column is at least wide enough for a short label
    col_lines = [fitted_lines(text, font, col_w - PAD, MAX_HEADER_LINES) for text in cols]
    header_h = max((len(lines) for lines in col_lines), default=1) * line_h + 2 * PAD
    title_h = line_h + 2 * PAD if page.title else 0
    f = _Frame(font, line_h, cell_w, cell_h, col_w, max(cell_w, 160), title_h, header_h)
    width = f.left + len(cols) * (col_w + PAD)
    height = f.top + len(page.rows) * (cell_h + PAD)
    grid = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    _draw_headers(draw, page, f, col_lines)
    cells = [_draw_row(grid, draw, f, r, text, entries[r]) for r, text in enumerate(page.rows)]
    layout = {
        "title": page.title,
        "rows": page.rows,
        "cols": cols,
        "input_cols": len(page.input_fields),
        "cell_width": cell_w,
        "col_width": col_w,
        "cell_height": cell_h,
        "label_width": f.label_w,
        "header_height": header_h,
        "top": f.top,
        "left": f.left,
        "cells": cells,
    }
    return grid, layout


# A cell to draw: what the layout records of it (None: nothing), its picture, and the text shown
# where it has none.
_Entry = tuple[dict[str, Any] | None, Image.Image | None, str]


def _entry(record: dict[str, Any] | None, picture: Image.Image | None) -> _Entry:
    if record is None:
        return None, None, "—"
    return ({"file": record["file"], "key": record.get("key")} if picture is not None else None), picture, "unreadable"


def _input_entry(out: Path, name: str, given: tuple[dict[str, Any], dict[str, Any]] | None, w: int, h: int) -> _Entry:
    """An input's cell: its picture fitted into ``w`` x ``h`` (its file, else its thumbnail), or its path."""
    if given is None:
        return None, None, "—"
    record, value = given
    picture = input_picture(out, record, value)
    if picture is not None:
        picture = ImageOps.contain(picture, (w, h), method=Image.Resampling.LANCZOS)
    path = str(value.get("path"))
    return {"input": name, "path": path, "sha256": value.get("sha256"), "shown": picture is not None}, picture, path


def _draw_headers(draw: ImageDraw.ImageDraw, page: Page, f: _Frame, col_lines: list[list[str]]) -> None:
    """The page's title, the axes' names in the corner, and each column's label."""
    if page.title:
        width = f.left + len(col_lines) * (f.col_w + PAD)
        draw.text((PAD, PAD), _ellipsis(page.title, f.font, width - 2 * PAD), font=f.font, fill=TEXT)
    corner = _ellipsis(f"{page.row_axis} \\ {page.col_axis}", f.font, f.label_w - 2 * PAD)
    draw.text((PAD, f.top - f.line_h - PAD), corner, font=f.font, fill=MUTED)
    for c, lines in enumerate(col_lines):
        x = f.left + c * (f.col_w + PAD)
        for i, line in enumerate(lines):
            position = (x + (f.col_w - f.font.getlength(line)) / 2, f.title_h + PAD + i * f.line_h)
            draw.text(position, line, font=f.font, fill=TEXT)


def _draw_row(
    grid: Image.Image, draw: ImageDraw.ImageDraw, f: _Frame, r: int, text: str, entries: list[_Entry]
) -> list[dict[str, Any] | None]:
    """Row ``r``: its label (wrapped, and cut with "…" where the row is too short), then its
    cells; each cell's box and what it shows, for the layout (None where it shows nothing)."""
    y = f.top + r * (f.cell_h + PAD)
    lines = fitted_lines(text, f.font, f.label_w - 2 * PAD, f.cell_h // f.line_h)
    for i, line in enumerate(lines):
        draw.text((PAD, y + i * f.line_h), line, font=f.font, fill=TEXT)
    row_cells: list[dict[str, Any] | None] = []
    for c, (shown, picture, missing) in enumerate(entries):
        x = f.left + c * (f.col_w + PAD) + (f.col_w - f.cell_w) // 2
        draw.rectangle([x, y, x + f.cell_w - 1, y + f.cell_h - 1], fill=CELL_BACKGROUND)
        if picture is None:
            room = max(1, (f.cell_h - PAD) // f.line_h)
            for i, line in enumerate(fitted_lines(missing, f.font, f.cell_w - 2 * PAD, room)):
                draw.text((x + PAD, y + PAD + i * f.line_h), line, font=f.font, fill=MUTED)
            box = {"x": x, "y": y, "width": f.cell_w, "height": f.cell_h}
            row_cells.append(None if shown is None else {**box, **shown})
            continue
        grid.paste(picture, (x, y))
        row_cells.append({"x": x, "y": y, "width": picture.width, "height": picture.height, **(shown or {})})
    return row_cells


def _picture(out: Path, record: dict[str, Any] | None, cell_size: int | None) -> Image.Image | None:
    if record is None:
        return None
    path = out / record["file"]
    if cell_size:
        picture = thumbnail(path, cell_size)
    else:
        try:
            with Image.open(path) as image:
                picture = image.convert("RGB")
        except (OSError, ValueError):
            return None
    if picture is not None and picture.mode != "RGB":
        flat = Image.new("RGB", picture.size, CELL_BACKGROUND)
        flat.paste(picture, mask=picture.getchannel("A") if picture.mode == "RGBA" else None)
        picture = flat
    return picture


def wrap(text: str, font: Any, width: float, limit: int | None = None) -> list[str]:
    """``text`` in lines that fit ``width`` pixels, broken between words (inside a word too
    long for a line); only the first ``limit`` lines when a limit is given.

    Each line costs a few measurements of that line (a doubling then a binary search for how
    much of a long word fits), so a label takes time in proportion to what is laid out, and
    with a limit no more than that is read: a 20,000-character word is cut in milliseconds."""
    lines: list[str] = []
    line = ""
    for match in re.finditer(r"\S+", str(text)):
        word, start = match.group(), 0
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while True:  # cut the word where it is wider than a line (one character at the least)
            cut = start + max(1, _fitting(word, start, font, width))
            if cut >= len(word) or (limit is not None and len(lines) >= limit):
                break
            lines.append(word[start:cut])
            start = cut
        line = word[start:]
        if limit is not None and len(lines) >= limit:
            return lines[:limit]
    if line or not lines:
        lines.append(line)
    return lines if limit is None else lines[:limit]


def fitted_lines(text: str, font: Any, width: float, fit: int) -> list[str]:
    """``text`` wrapped into at most ``fit`` lines of ``width`` pixels: where it needs more,
    the last line is cut with "…"."""
    fit = max(1, fit)
    lines = wrap(text, font, width, limit=fit + 1)
    if len(lines) > fit:
        lines = lines[: fit - 1] + [_ellipsis(" ".join(lines[fit - 1 :]), font, width)]
    return lines


def _fitting(text: str, start: int, font: Any, width: float, suffix: str = "") -> int:
    """How many characters of ``text`` from ``start`` fit in ``width`` pixels (``suffix``
    after them): lengths 1, 2, 4... are measured until one is too wide, then the last step
    is halved. The cost follows the length that fits, not the length of ``text``."""
    end = len(text) - start
    size = 1
    while size <= end and font.getlength(text[start : start + size] + suffix) <= width:
        size *= 2
    fits, wide = size // 2, min(size, end + 1)  # fits: 0 or a length that fits; wide: one that does not
    while wide - fits > 1:
        middle = (fits + wide) // 2
        if font.getlength(text[start : start + middle] + suffix) <= width:
            fits = middle
        else:
            wide = middle
    return fits


def _ellipsis(text: str, font: Any, width: float) -> str:
    """``text``, or as much of it as fits ``width`` pixels followed by "…"."""
    if font.getlength(text) <= width:
        return text
    return text[: _fitting(text, 0, font, width, "…")].rstrip() + "…"


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # FreeType build of Pillow >= 10.1
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "axis"
