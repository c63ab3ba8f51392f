"""Contact sheets: PNG grids of an output folder's images, with short captions.

``OUT/contact-sheet-001.png``, ``-002.png``, ... each hold ``cols × rows`` done images in
job order (ledger ``index``), captioned with the start of the prompt and the seed; made
for pasting into a chat or a paper. Built from the ledger, like the HTML report.
"""

from __future__ import annotations

import io
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from genbatch.report.scan import scan_folder
from genbatch.report.thumbnails import thumbnail, worker_count
from genbatch.safe_write import remove, write_atomic
from genbatch.store.image_formats import CONTACT_SHEET_RE

SHEET_NAME = "contact-sheet-{:03d}.png"
BACKGROUND = (255, 255, 255)
CELL_BACKGROUND = (238, 240, 243)
TEXT = (29, 33, 37)
MUTED = (106, 115, 125)
PAD = 6


def write_contact_sheets(out: Path, *, cols: int = 8, rows: int = 8, thumb: int = 128) -> list[Path]:
    """Write the contact sheets of ``out`` and return their paths (none if no images).

    Sheets left from an earlier, longer run (numbers past the last one written) are removed.
    """
    if cols < 1 or rows < 1 or thumb < 16:
        raise ValueError("contact sheets need cols >= 1, rows >= 1 and thumb >= 16")
    out = Path(out)
    cards = (card for card, _ in scan_folder(out).records("cards"))  # done, on disk, in job order
    font_size = max(9, min(14, thumb // 11))
    font = _font(font_size)
    paths = []
    # a sheet's cards at a time, read back from the ledger: memory stays flat however many images
    for number, chunk in enumerate(iter(lambda: list(itertools.islice(cards, cols * rows)), []), start=1):
        sheet = _sheet(out, chunk, cols, font, font_size, thumb)
        paths.append(_save_atomic(sheet, out, SHEET_NAME.format(number)))
    _remove_stale(out, keep=len(paths))
    return paths


def _sheet(out: Path, cards: list[dict], cols: int, font, font_size: int, thumb: int) -> Image.Image:
    line_h = font_size + 3
    cell_w, cell_h = thumb + 2 * PAD, thumb + 2 * PAD + 2 * line_h
    rows = -(-len(cards) // cols)
    used_cols = min(cols, len(cards))
    sheet = Image.new("RGB", (used_cols * cell_w + PAD, rows * cell_h + PAD), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    with ThreadPoolExecutor(max_workers=worker_count()) as pool:
        pictures = pool.map(lambda card: _picture(out / card["file"], thumb), cards)
        for i, (card, picture) in enumerate(zip(cards, pictures)):
            x0 = PAD + (i % cols) * cell_w
            y0 = PAD + (i // cols) * cell_h
            draw.rectangle([x0, y0, x0 + thumb - 1, y0 + thumb - 1], fill=CELL_BACKGROUND)
            if picture is not None:
                sheet.paste(picture, (x0 + (thumb - picture.width) // 2, y0 + (thumb - picture.height) // 2))
            prompt = " ".join(str(card.get("prompt") or "").split())
            draw.text((x0, y0 + thumb + 3), _fit(prompt, font, thumb), font=font, fill=TEXT)
            draw.text((x0, y0 + thumb + 3 + line_h), _fit(_detail(card), font, thumb), font=font, fill=MUTED)
    return sheet


def _picture(path: Path, size: int) -> Image.Image | None:
    """The image scaled to fit ``size`` × ``size`` on the cell's colour, or None if it cannot be read."""
    im = thumbnail(path, size)
    if im is not None and im.mode == "RGBA":
        flat = Image.new("RGB", im.size, CELL_BACKGROUND)
        flat.paste(im, mask=im.getchannel("A"))
        return flat
    return im


def _detail(card: dict) -> str:
    parts = [f"seed {card['seed']}" if card.get("seed") is not None else "", f"#{card.get('index')}"]
    if card.get("id") not in (None, ""):
        parts.append(f"id {card['id']}")
    return " · ".join(p for p in parts if p)


def _fit(text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis so that it fits in ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:  # longest prefix that fits with the ellipsis
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid].rstrip() + "…") <= width:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "…"


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # FreeType build of Pillow >= 10.1
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _save_atomic(image: Image.Image, out: Path, name: str) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    write_atomic(out / name, buffer.getvalue(), root=out)
    return out / name


def _remove_stale(out: Path, keep: int) -> None:
    for path in out.iterdir():
        match = CONTACT_SHEET_RE.match(path.name)
        if match and int(match.group(1)) > keep and (path.is_file() or path.is_symlink()):
            remove(out, path)
