"""The HTML report, from a hand-written ledger: data, escaping, thumbnails, and a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from genbatch.report.html import CHUNK_ROWS, PAGE_SIZE, PAGES_DIR, THUMB_SIZE, THUMBS_DIR, write_html_report

SCRIPT_PROMPT = "<script>window.__pwned=1</script>"
IMG_PROMPT = '"><img src=x onerror="window.__pwned=1">'
BREAKOUT_PROMPT = "</script><script>window.__pwned=2</script>{{data}}\u2028end"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _record(status: str, key: str, index: int | None, prompt: str | None, **extra) -> dict:
    record = {
        "status": status,
        "key": key,
        "file": None,
        "index": index,
        "row": index,
        "line": (index or 0) + 2,
        "manifest": "prompts.csv",
        "k": 0,
        "id": None,
        "prompt": prompt,
        "negative_prompt": "",
        "seed": 40 + (index or 0),
        "steps": 4,
        "guidance_scale": 7.5,
        "width": 64,
        "height": 48,
        "scheduler": "euler",
        "model": "tiny-sd",
        "model_path": "/m/tiny-sd",
        "model_fingerprint": "f00",
        "backend": "torch",
        "device": "cpu",
        "dtype": "float32",
        "batch_size": 1,
        "seconds": 0.5,
        "finished_at": f"2026-11-22T20:00:{10 + (index or 0):02d}.000000+00:00",
        "sha256": None,
        "fields": {"prompt": prompt},
        "error": None,
        "run_id": "run-1",
    }
    record.update(extra)
    return record


def _done(out: Path, key: str, index: int, prompt: str, size=(64, 48), **extra) -> dict:
    file = extra.pop("file", f"{index + 1:06d}-{key}.png")
    Image.new("RGB", size, ((index * 40) % 256, 90, 160)).save(out / file)
    return _record("done", key, index, prompt, file=file, **extra)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output folder: 7 images on disk, 2 failures, 2 skipped rows, 1 missing file, a torn line."""
    out = tmp_path / "out"
    out.mkdir()
    records = [
        _record("failed", "a0000000000000000005", 5, "a retried fox", error="CUDA out of memory"),
        _done(out, "a0000000000000000002", 2, "a green triangle", id="tri"),
        _done(out, "a0000000000000000000", 0, "a red circle", size=(600, 300)),
        _done(out, "a0000000000000000001", 1, "a blue square", negative_prompt="blurry"),
        _done(out, "a0000000000000000003", 3, SCRIPT_PROMPT, id=IMG_PROMPT),
        _done(out, "a0000000000000000004", 4, IMG_PROMPT),
        _done(out, "a0000000000000000006", 6, BREAKOUT_PROMPT, file="7 odd #name%.png"),
        _record("failed", "a0000000000000000007", 7, "a black cat at night", error="NaN in decoded image"),
        _record("failed", "a0000000000000000008", 8, "a hostile error", error="<b>boom</b>" + SCRIPT_PROMPT),
        _record("skipped", "b0000000000000000001", None, None, line=11, error="steps must be a positive integer"),
        _record("skipped", "b0000000000000000002", None, IMG_PROMPT, line=12, error="unknown scheduler 'x'"),
        _record("done", "a0000000000000000009", 9, "a gone image", file="000010-gone.png"),
        _done(out, "a0000000000000000005", 5, "a retried fox"),  # a rerun: done wins over failed
    ]
    lines = [json.dumps(r) for r in records]
    torn = json.dumps(_record("done", "a0000000000000000010", 10, "torn", file="x.png"))[:40]
    (out / "genbatch.jsonl").write_text("\n".join(lines) + "\n" + torn, encoding="utf-8")
    return out


def _blob(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="gb-data">(.*?)</script>', html, re.S)
    assert match, "data blob not found"
    return json.loads(match.group(1))


def _cards(blob: dict) -> list[dict]:
    return [dict(zip(blob["card_cols"], row)) for row in blob["cards"]]


def test_report_lists_latest_records_and_writes_atomically(out: Path):
    path = write_html_report(out)

    assert path == out / "report.html"
    blob = _blob(path.read_text(encoding="utf-8"))
    cards = _cards(blob)
    assert [c["index"] for c in cards] == [0, 1, 2, 3, 4, 5, 6]  # job order, latest record per key
    assert len(cards) == len(list(out.glob("*.png")))
    assert [row[blob["failed_cols"].index("error")] for row in blob["failed"]] == [
        "NaN in decoded image",
        "<b>boom</b>" + SCRIPT_PROMPT,
    ]
    assert [row[blob["skipped_cols"].index("line")] for row in blob["skipped"]] == [11, 12]
    assert [row[blob["missing_cols"].index("file")] for row in blob["missing"]] == ["000010-gone.png"]
    assert "torn" not in [c["prompt"] for c in cards]
    assert sorted(p.name for p in out.iterdir() if ".tmp-" in p.name) == []


def test_user_text_never_reaches_the_page_as_markup(out: Path):
    html = write_html_report(out).read_text(encoding="utf-8")

    for hostile in (SCRIPT_PROMPT, IMG_PROMPT, "<b>boom</b>", "</script><script>window.__pwned=2"):
        assert hostile not in html
    assert "\u2028" not in html
    assert html.count("<script") == 2  # the data blob and the page's own script
    prompts = {c["prompt"] for c in _cards(_blob(html))}
    assert {SCRIPT_PROMPT, IMG_PROMPT, BREAKOUT_PROMPT} <= prompts  # the blob holds them as text


def test_summary_escapes_run_json_and_shows_versions(out: Path):
    run = {
        "run_id": "run-1",
        "started_at": "2026-11-22T20:00:00+00:00",
        "wall_seconds": 20.0,
        "images_per_second": 0.35,
        "counts": {"planned": 10, "done": 7, "already_done": 0, "failed": 2, "skipped": 2},
        "exit_code": 3,
        "interrupted": True,
        "command": ["genbatch", "run", SCRIPT_PROMPT],
        "versions": {"python": "3.11.7", "genbatch": "0.1.0", "torch": "2.13.0"},
    }
    (out / "run.json").write_text(json.dumps(run), encoding="utf-8")

    html = write_html_report(out, thumbs=False).read_text(encoding="utf-8")

    assert "torch 2.13.0" in html and "last run (run.json)" in html and "interrupted" in html
    assert "0.35" in html and "20 s" in html
    assert SCRIPT_PROMPT not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html


def test_summary_from_ledger_alone(out: Path):
    html = write_html_report(out, thumbs=False).read_text(encoding="utf-8")

    assert "from ledger timestamps" in html and "no run.json" in html
    assert '<svg class="throughput"' in html
    assert re.search(r'<div class="label">Images</div><div class="value">7</div>', html)
    assert re.search(r'<div class="label">Missing</div><div class="value">1</div>', html)


def test_thumbnails_are_small_webp_made_only_when_missing_or_stale(out: Path):
    write_html_report(out)
    thumbs = sorted((out / THUMBS_DIR).glob("*.webp"))
    assert len(thumbs) == 7
    for thumb in thumbs:
        with Image.open(thumb) as im:
            assert im.format == "WEBP" and max(im.size) <= THUMB_SIZE
    big = out / THUMBS_DIR / "a0000000000000000000.webp"
    assert Image.open(big).size == (THUMB_SIZE, THUMB_SIZE // 2)
    before = {t.name: t.stat().st_mtime_ns for t in thumbs}

    write_html_report(out)  # nothing changed: thumbnails are kept
    assert {t.name: t.stat().st_mtime_ns for t in thumbs} == before

    image = out / "000002-a0000000000000000001.png"
    later = big.stat().st_mtime_ns + 5_000_000_000
    os.utime(image, ns=(later, later))
    write_html_report(out)  # that image is newer than its thumbnail: only it is remade
    after = {t.name: t.stat().st_mtime_ns for t in thumbs}
    assert [name for name in after if after[name] != before[name]] == ["a0000000000000000001.webp"]


def test_thumbnails_of_images_no_longer_shown_and_temp_files_of_a_killed_report_are_removed(out: Path):
    write_html_report(out)
    old = out / THUMBS_DIR / "a0000000000000000001.webp"
    assert old.exists()
    past = old.stat().st_mtime_ns - 5_000_000_000
    os.utime(old, ns=(past, past))
    # a rerun with other parameters wrote the same file under a new key
    rerun = _done(out, "d0000000000000000001", 1, "a blue square", file="000002-a0000000000000000001.png")
    with open(out / "genbatch.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps(rerun) + "\n")
    torn = out / THUMBS_DIR / "a0000000000000000002.webp.tmp-4242-1"  # a report killed mid-write
    torn.write_bytes(b"RIFF")
    os.utime(torn, ns=(past, past))
    future = time.time_ns() + 60_000_000_000
    fresh = out / THUMBS_DIR / "e0000000000000000000.webp"  # another report is writing this now
    fresh.write_bytes(b"")
    os.utime(fresh, ns=(future, future))

    write_html_report(out)

    names = sorted(t.name for t in (out / THUMBS_DIR).glob("*.webp"))
    assert "a0000000000000000001.webp" not in names
    assert "d0000000000000000001.webp" in names and "e0000000000000000000.webp" in names
    assert len(names) == 8
    assert not torn.exists()


def test_without_thumbnails_cards_show_the_images(out: Path):
    html = write_html_report(out, thumbs=False).read_text(encoding="utf-8")

    assert not (out / THUMBS_DIR).exists()
    cards = _cards(_blob(html))
    assert all(c["thumb"] == c["src"] for c in cards)
    assert cards[6]["src"] == "7%20odd%20%23name%25.png"  # file names are URL-quoted


def test_paths_outside_the_folder_are_not_shown(out: Path):
    (out.parent / "outside.png").write_bytes(b"")
    with open(out / "genbatch.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps(_record("done", "c0000000000000000001", 20, "escape", file="../outside.png")))
        handle.write(
            "\n"
            + json.dumps(_record("done", "c0000000000000000002", 21, "abs", file=str(out.parent / "outside.png")))
            + "\n"
        )

    blob = _blob(write_html_report(out, thumbs=False).read_text(encoding="utf-8"))

    # the ledger reader skips (and reports) a record whose file is not inside the folder
    assert len(blob["cards"]) == 7 and len(blob["missing"]) == 1


def test_nan_in_the_ledger_shows_as_empty(out: Path):
    with open(out / "genbatch.jsonl", "a", encoding="utf-8") as handle:  # json writes NaN, JSON.parse refuses it
        handle.write(
            "\n"
            + json.dumps(
                _record(
                    "failed",
                    "c0000000000000000003",
                    30,
                    "nan",
                    seconds=float("nan"),
                    fields={"x": float("inf")},
                    error="NaN in decoded image",
                )
            )
            + "\n"
        )
        # a seed that is no whole number: the ledger reader skips (and reports) the line
        handle.write(json.dumps(_record("failed", "c0000000000000000004", 31, "inf", seed=float("inf"))) + "\n")

    html = write_html_report(out, thumbs=False).read_text(encoding="utf-8")
    blob = _blob(html)

    assert blob["failed"][-1][blob["failed_cols"].index("prompt")] == "nan"
    assert "NaN" not in html.replace("NaN in decoded image", "") and "Infinity" not in html


def test_empty_folder_still_gets_a_report(tmp_path: Path):
    html = write_html_report(tmp_path).read_text(encoding="utf-8")

    assert _blob(html)["cards"] == [] and "No timestamps in the ledger yet" in html


# --- In a real browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by playwright; skipped only outside CI."""
    in_ci = bool(os.environ.get("CI"))
    problem = None
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        problem = f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        problem = problem or "the playwright package is not installed (pip install playwright)"
    if problem:
        if in_ci:
            pytest.fail(f"browser test must run in CI: {problem}")
        pytest.skip(problem)
    with sync_playwright() as playwright:
        executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser, expect
        browser.close()


def _open(browser, report: Path):
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return page, problems


def _visible_cards(page) -> int:
    return page.locator("#images .card").count()


def test_browser_shows_cards_failures_and_filters(browser, out: Path):
    browser, expect = browser
    page, problems = _open(browser, write_html_report(out))

    assert _visible_cards(page) == len(list(out.glob("*.png"))) == 7
    assert page.locator("#images .pager:visible").count() == 1  # one page: no second pager
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img[src='x']").count() == 0
    card_text = page.locator("#images").inner_text()
    assert SCRIPT_PROMPT in card_text and IMG_PROMPT in card_text and "{{data}}" in card_text
    failed_text = page.locator("#failed").inner_text()
    assert "NaN in decoded image" in failed_text and "<b>boom</b>" + SCRIPT_PROMPT in failed_text
    assert "a retried fox" not in failed_text
    skipped_text = page.locator("#skipped").inner_text()
    assert "steps must be a positive integer" in skipped_text and IMG_PROMPT in skipped_text
    assert "000010-gone.png" in page.locator("#missing").inner_text()
    loaded = page.evaluate(
        "Promise.all([...document.querySelectorAll('#images img')].map(i => i.decode().then(() => i.naturalWidth)))"
    )
    assert 0 < max(loaded) <= THUMB_SIZE  # thumbnails load from disk

    page.fill("#filter", "circle")
    expect(page.locator("#images .card")).to_have_count(1)
    assert "a red circle" in page.locator("#images").inner_text()
    page.fill("#filter", "seed:43 pwned")  # words match prompt, seed and id together
    expect(page.locator("#images .card")).to_have_count(1)
    page.fill("#filter", "")
    expect(page.locator("#images .card")).to_have_count(7)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert problems == []
    page.close()


def test_browser_shows_each_edit_beside_its_inputs(browser, tmp_path: Path):
    """A real run of rows with images (the example edits on the embedded model): each card shows
    the row's input, loaded from its thumbnail, captioned, beside the output; the filter finds a
    row by its input's file name."""
    from helpers import genbatch

    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "manifests" / "images", tmp_path / "images")
    manifest = tmp_path / "edits.csv"
    manifest.write_text((repo / "manifests" / "edits.csv").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, "--steps", "4", "--quiet").exit_code == 0
    rows = len(manifest.read_text(encoding="utf-8").splitlines()) - 1

    browser, expect = browser
    page, problems = _open(browser, out / "report.html")
    cards = page.locator("#images .card.with-inputs")
    assert cards.count() == _visible_cards(page) == rows
    assert page.locator("#images .card .io figcaption").all_inner_texts() == ["input", "output"] * rows
    loaded = page.evaluate(
        "Promise.all([...document.querySelectorAll('#images figure.input img')]"
        ".map(i => i.decode().then(() => [i.naturalWidth, i.getAttribute('src')])))"
    )
    assert len(loaded) == 2 * rows and all(width > 0 for width, _ in loaded)
    assert sum(src.startswith(f"{THUMBS_DIR}/input-") for _, src in loaded) == rows
    page.fill("#filter", "green-square-on-white")
    expect(page.locator("#images .card")).to_have_count(1)
    shown = page.locator("#images").inner_text()
    assert "a large green circle on a white background" in shown and "strength 0.7" in shown  # its row's
    assert problems == []
    page.close()


def test_browser_pages_through_many_images(browser, tmp_path: Path):
    n = 2 * PAGE_SIZE + 37
    Image.new("RGB", (8, 8), (200, 40, 40)).save(tmp_path / "one.png")
    png = (tmp_path / "one.png").read_bytes()
    for i in range(n):
        (tmp_path / f"{i:06d}.png").write_bytes(png)
    records = [_record("done", f"{i:020x}", i, f"image {i}", file=f"{i:06d}.png") for i in range(n)]
    (tmp_path / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    browser, expect = browser
    page, problems = _open(browser, write_html_report(tmp_path, thumbs=False))

    assert _visible_cards(page) == PAGE_SIZE
    assert page.locator("#images .pager:visible").count() == 2
    assert page.locator("#images img[loading='lazy']").count() == PAGE_SIZE
    page.locator("#images .next").first.click()
    assert _visible_cards(page) == PAGE_SIZE
    page.locator("#images .next").first.click()
    assert _visible_cards(page) == 37
    assert page.locator("#images .card .prompt").last.inner_text() == f"image {n - 1}"
    assert page.locator("#images .next").first.is_disabled()
    page.fill("#filter", "seed:47")  # seeds 47 and 470..476 (images 7, 430..436): back to page 1
    expect(page.locator("#images .card")).to_have_count(8)
    assert problems == []
    page.close()


def test_a_thumbnail_folder_linked_out_of_the_folder_is_refused(out: Path, tmp_path: Path):
    from genbatch.safe_write import UnsafePathError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.webp").write_bytes(b"not a thumbnail of this folder")
    (out / THUMBS_DIR).symlink_to(elsewhere)

    with pytest.raises(UnsafePathError, match="outside the output folder"):
        write_html_report(out)

    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.webp"]


# --- Paged data: past the first chunk, records live in OUT/.genbatch-report/ --------------------


def _many(out: Path, n: int, **extra) -> list[dict]:
    """``n`` done images on disk (one tiny PNG's bytes), in a ledger written in reverse job order."""
    out.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (200, 40, 40)).save(out / "one.png")
    png = (out / "one.png").read_bytes()
    records = []
    for i in range(n):
        (out / f"{i:06d}.png").write_bytes(png)
        records.append(_record("done", f"{i:020x}", i, f"image {i}", file=f"{i:06d}.png", **extra))
    records.reverse()  # the report sorts by job index, whatever the ledger's order
    (out / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def _chunk(path: Path) -> tuple[str, str, int, list]:
    text = path.read_text(encoding="ascii")
    assert text.startswith("genbatchChunk(") and text.endswith(");\n")
    report, section, number, rows = json.loads("[" + text[len("genbatchChunk(") : -len(");\n")] + "]")
    return report, section, number, rows


def test_records_past_the_first_chunk_go_to_paged_data_files(tmp_path: Path):
    n = 2 * CHUNK_ROWS + 37
    _many(tmp_path, n)

    blob = _blob(write_html_report(tmp_path, thumbs=False).read_text(encoding="utf-8"))

    assert [c["index"] for c in _cards(blob)] == list(range(CHUNK_ROWS))
    assert blob["totals"]["cards"] == n and blob["chunks"]["cards"] == 3
    files = sorted(p.name for p in (tmp_path / PAGES_DIR).iterdir())
    assert files == ["cards-000002.js", "cards-000003.js"]
    indexes = []
    for name in files:
        report, section, number, rows = _chunk(tmp_path / PAGES_DIR / name)
        assert (report, section) == (blob["report"], "cards") and name == f"cards-{number:06d}.js"
        indexes += [row[blob["card_cols"].index("index")] for row in rows]
    assert indexes == list(range(CHUNK_ROWS, n))  # job order, every record once


def test_paged_data_keeps_user_text_as_data(tmp_path: Path):
    _many(tmp_path, CHUNK_ROWS + 2)
    hostile = _done(tmp_path, "f0000000000000000001", CHUNK_ROWS + 5, BREAKOUT_PROMPT, id=IMG_PROMPT)
    with open(tmp_path / "genbatch.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(hostile) + "\n")

    write_html_report(tmp_path, thumbs=False)

    text = (tmp_path / PAGES_DIR / "cards-000002.js").read_text(encoding="ascii")
    assert not {"<", ">", "&", "'", "\u2028"} & set(text)  # escaped, so no text ends the script
    rows = _chunk(tmp_path / PAGES_DIR / "cards-000002.js")[3]
    assert rows[-1][2] == BREAKOUT_PROMPT  # the prompt column, intact


def test_page_files_of_an_earlier_longer_report_are_removed(tmp_path: Path):
    records = _many(tmp_path, 3 * CHUNK_ROWS)
    write_html_report(tmp_path, thumbs=False)
    pages = tmp_path / PAGES_DIR
    assert sorted(p.name for p in pages.iterdir()) == ["cards-000002.js", "cards-000003.js"]
    past = time.time_ns() - 5_000_000_000
    for page in pages.iterdir():
        os.utime(page, ns=(past, past))
    (pages / ".cards-000009.js.tmp-1234abcd").write_bytes(b"")  # a report killed mid-write
    os.utime(pages / ".cards-000009.js.tmp-1234abcd", ns=(past, past))
    (pages / "notes.txt").write_text("a user's own file stays")
    keep = [r for r in records if r["index"] < CHUNK_ROWS + 10]
    (tmp_path / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")

    blob = _blob(write_html_report(tmp_path, thumbs=False).read_text(encoding="utf-8"))

    assert blob["chunks"]["cards"] == 2
    assert sorted(p.name for p in pages.iterdir()) == ["cards-000002.js", "notes.txt"]
    assert len(_chunk(pages / "cards-000002.js")[3]) == 10


def test_a_page_data_folder_linked_out_of_the_folder_is_refused(tmp_path: Path):
    from genbatch.safe_write import UnsafePathError

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cards-000002.js").write_text("someone else's file")
    _many(out, CHUNK_ROWS + 1)
    (out / PAGES_DIR).symlink_to(elsewhere)

    with pytest.raises(UnsafePathError, match="outside the output folder"):
        write_html_report(out, thumbs=False)

    assert (elsewhere / "cards-000002.js").read_text() == "someone else's file"
    assert not (out / "report.html").exists()


def test_a_report_over_missing_image_files_lists_them_paged(tmp_path: Path):
    n = CHUNK_ROWS + 3
    records = [_record("done", f"{i:020x}", i, f"gone {i}", file=f"{i:06d}.png") for i in range(n)]
    (tmp_path / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    html = write_html_report(tmp_path).read_text(encoding="utf-8")

    blob = _blob(html)
    assert blob["totals"] == {"cards": 0, "missing": n, "failed": 0, "skipped": 0}
    assert len(_chunk(tmp_path / PAGES_DIR / "missing-000002.js")[3]) == 3
    assert re.search(r'<div class="label">Missing</div><div class="value">1,003</div>', html)
    assert list((tmp_path / THUMBS_DIR).iterdir()) == []


def test_browser_finds_and_sorts_records_on_later_pages(browser, tmp_path: Path):
    n = 2 * CHUNK_ROWS + 37
    _many(tmp_path, n, fields={"style": "plain"})
    slow = _done(tmp_path, "e0000000000000000001", n, "a lighthouse at dusk", seconds=99.0, fields={"style": "noir"})
    with open(tmp_path / "genbatch.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(slow) + "\n")

    browser, expect = browser
    page, problems = _open(browser, write_html_report(tmp_path, thumbs=False))

    assert _visible_cards(page) == PAGE_SIZE
    info = page.locator("#images .pager .info").first
    assert (
        f"of {n + 1:,}" in info.inner_text()
        and f"page 1 of {(n + 1 + PAGE_SIZE - 1) // PAGE_SIZE}" in info.inner_text()
    )
    for _ in range(CHUNK_ROWS // PAGE_SIZE):  # into the second chunk: loaded from its file
        page.locator("#images .next").first.click()
    expect(page.locator("#images .card .prompt").first).to_have_text(f"image {CHUNK_ROWS}")

    page.fill("#filter", "lighthouse")  # only in the last chunk
    expect(page.locator("#images .card")).to_have_count(1)
    assert "a lighthouse at dusk" in page.locator("#images").inner_text()
    expect(page.locator("#filter-info")).to_have_text("1 images, 0 failed, 0 skipped match")
    page.fill("#filter", f"#{n - 1}")  # a record of the third chunk, by its job index
    expect(page.locator("#images .card .prompt")).to_have_text([f"image {n - 1}"])
    page.fill("#filter", "")
    page.select_option("#facets select[data-column='style']", "noir")  # menus list every chunk's values
    expect(page.locator("#images .card")).to_have_count(1)
    page.select_option("#facets select[data-column='style']", "")
    page.select_option("#sort", "slow")  # the slowest of all the chunks comes first
    expect(page.locator("#images .card .prompt").first).to_have_text("a lighthouse at dusk")
    expect(page.locator("#images .card")).to_have_count(PAGE_SIZE)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert problems == []
    page.close()
