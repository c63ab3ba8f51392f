"""Contact sheets: grids of done images in job order, captioned, deterministic."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from genbatch.report.contact_sheet import BACKGROUND, PAD, write_contact_sheets

THUMB = 32


def _color(index: int) -> tuple[int, int, int]:
    return (index * 3 % 256, 255 - index * 3 % 256, 100)


def _record(status: str, index: int, **extra) -> dict:
    record = {
        "status": status,
        "key": f"{index:020x}",
        "file": None,
        "index": index,
        "k": 0,
        "id": None,
        "prompt": f"prompt number {index} with a fairly long tail of words",
        "seed": 1000 + index,
        "error": None,
        "run_id": "run-1",
    }
    record.update(extra)
    return record


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """70 images on disk (ledger in shuffled order), one failed job, one missing file, a torn line."""
    records = []
    for index in range(70):
        file = f"{index:06d}.png"
        Image.new("RGB", (40, 40), _color(index)).save(tmp_path / file)
        records.append(_record("done", index, file=file))
    random.Random(0).shuffle(records)
    records.append(_record("failed", 70, error="NaN in decoded image"))
    records.append(_record("done", 71, file="gone.png"))
    lines = "".join(json.dumps(r) + "\n" for r in records) + '{"status": "done", "ke'
    (tmp_path / "genbatch.jsonl").write_text(lines, encoding="utf-8")
    return tmp_path


def test_sheets_hold_done_images_in_job_order(out: Path):
    paths = write_contact_sheets(out, cols=8, rows=8, thumb=THUMB)

    assert [p.name for p in paths] == ["contact-sheet-001.png", "contact-sheet-002.png"]
    first, second = (Image.open(p).convert("RGB") for p in paths)
    cell_w = THUMB + 2 * PAD
    assert first.width == 8 * cell_w + PAD and second.width == 6 * cell_w + PAD  # 64 + 6 images
    cell_h = (first.height - PAD) // 8
    assert second.height == cell_h + PAD
    for sheet, start, count in ((first, 0, 64), (second, 64, 6)):
        for position in range(count):
            x = PAD + (position % 8) * cell_w + THUMB // 2
            y = PAD + (position // 8) * cell_h + THUMB // 2
            assert sheet.getpixel((x, y)) == _color(start + position)


def test_captions_are_drawn_under_each_picture(out: Path):
    sheet = Image.open(write_contact_sheets(out, cols=8, rows=8, thumb=THUMB)[0]).convert("RGB")
    cell_h = (sheet.height - PAD) // 8

    caption = sheet.crop((PAD, PAD + THUMB + 1, PAD + THUMB, PAD + cell_h - PAD))
    dark = sum(caption.convert("L").histogram()[:160])
    assert dark > 20
    assert caption.getpixel((caption.width - 1, 0)) == BACKGROUND  # text kept inside its cell


def test_sheets_are_deterministic_and_stale_ones_removed(out: Path):
    (out / "contact-sheet-005.png").write_bytes(b"old")
    (out / "contact-sheet-notes.png").write_bytes(b"not ours")

    first = [p.read_bytes() for p in write_contact_sheets(out, thumb=THUMB)]
    second = [p.read_bytes() for p in write_contact_sheets(out, thumb=THUMB)]

    assert first == second
    assert sorted(p.name for p in out.glob("contact-sheet-*")) == [
        "contact-sheet-001.png",
        "contact-sheet-002.png",
        "contact-sheet-notes.png",
    ]
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name] == []


def test_no_images_no_sheets(tmp_path: Path):
    assert write_contact_sheets(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_bad_grid_is_refused(tmp_path: Path):
    with pytest.raises(ValueError):
        write_contact_sheets(tmp_path, cols=0)
