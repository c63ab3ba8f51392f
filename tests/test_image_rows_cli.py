"""Rows with images from the command line: --strength, --resize, --controlnet and --control-scale
for rows without their own, --input-dir and --mask-dir as a source of rows, and what a run of
them leaves to read: the report's inputs beside each output, report.csv's input columns, the
PNG's metadata, genbatch grid --inputs, and the example manifest (manifests/edits.csv)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, genbatch, ledger, pixels
from PIL import Image, ImageDraw

from genbatch.manifest.image_folder import read_image_folder

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("--model", "shapes", "--steps", "2", "--quiet")


def picture(path: Path, variant: int, size: tuple[int, int] = (64, 64)) -> Path:
    """A small input: a shape of the variant's colour on a background (flat colours are no use:
    an input must differ from another where the model looks)."""
    width, height = size
    colours = [(200, 40, 40), (40, 60, 200), (30, 170, 60), (230, 200, 40)]
    image = Image.new("RGB", size, (90 + 40 * (variant % 3), 110, 100))
    draw = ImageDraw.Draw(image)
    if variant % 2:
        draw.ellipse([width // 8, height // 6, width * 5 // 8, height * 4 // 6], fill=colours[variant % 4])
    else:
        draw.rectangle([width // 3, height // 5, width * 7 // 8, height * 3 // 4], fill=colours[variant % 4])
    image.save(path)
    return path


def mask(path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).rectangle([size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4], fill=255)
    image.save(path)
    return path


def differ(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# --- options for rows without their own ------------------------------------------------------


def test_resize_none_with_another_width_is_refused_naming_the_row_and_the_options(tmp_path):
    picture(tmp_path / "in0.png", 0)
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,image\na red circle,in0.png\n")
    out = tmp_path / "out"
    for resize in ((), ("--resize", "none")):
        result = genbatch("run", manifest, "--out", out, *SHAPES, "--width", "96", *resize)
        assert result.exit_code == 2
        assert "m.csv:2:image: in0.png is 64x64 and the job asks for 96x64: pass --resize fit" in result.output
        assert "Traceback" not in result.output and "loading" not in result.output
        assert not out.exists()


def test_a_strength_that_leaves_no_denoising_step_is_refused_before_the_model_loads(tmp_path):
    picture(tmp_path / "in0.png", 0)
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,image,strength\na red circle,in0.png,\na blue circle,in0.png,0\n")
    result = genbatch("run", manifest, "--out", tmp_path / "out", *SHAPES, "--strength", "0.4", "--dry-run")
    assert result.exit_code == 2 and "loading" not in result.output
    assert (
        "m.csv:2:--steps: strength 0.4 of 2 steps is no denoising step (diffusers runs int(steps x strength) = 0 "
        "of them): give 3 steps or more, or a strength of at least 0.5"
    ) in result.output
    assert "m.csv:3:strength: strength 0 redraws nothing" in result.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--strength", "1.5", "--strength: strength 1.5 is out of range; expected a number from 0 to 1"),
        ("--resize", "stretch", "--resize: resize 'stretch' is not accepted; expected none or fit or fill"),
        ("--control-scale", "11", "--control-scale: controlnet_conditioning_scale 11 is out of range"),
    ],
)
def test_a_bad_option_value_is_named_with_what_is_accepted(tmp_path, option, value, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\na red circle\n")
    result = genbatch("run", manifest, "--out", tmp_path / "out", *SHAPES, option, value)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_strength_fills_rows_without_one_and_resize_makes_the_size_asked(tmp_path):
    for n in range(2):
        picture(tmp_path / f"in{n}.png", n)
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,image,strength,seed\na red circle,in0.png,0.9,1\na blue circle,in1.png,,2\n")
    out = tmp_path / "out"
    result = genbatch(
        "run", manifest, "--out", out, *SHAPES, "--strength", "0.6", "--width", "96", "--height", "64",
        "--vary", "resize=fit,fill",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = ledger(out)
    assert sorted((r["seed"], r["strength"], r["resize"]) for r in records) == [
        (1, 0.9, "fill"), (1, 0.9, "fit"), (2, 0.6, "fill"), (2, 0.6, "fit"),
    ]  # fmt: skip
    assert all(r["call"]["strength"] == r["strength"] for r in records)
    made = {(r["seed"], r["resize"]): pixels(out / r["file"]) for r in records}
    assert {m.shape for m in made.values()} == {(64, 96, 3)}
    assert all(differ(made[(seed, "fit")], made[(seed, "fill")]) > 8 for seed in (1, 2))


def test_an_input_swapped_for_a_symlink_mid_run_fails_its_row_alone_and_a_rerun_makes_it(tmp_path, monkeypatch):
    """After the planning read every input's sha256, the last row's file is replaced by a link to
    another picture outside the manifest's folder: the generator reads it again, finds other
    bytes, and that row fails (naming the file); the other rows are made, nothing is written
    beside the link's target, and with the file put back a rerun makes that row alone."""
    import genbatch.engine.writer as writer_module

    folder, elsewhere = tmp_path / "rows", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    for n in range(3):
        picture(folder / f"in{n}.png", n)
    picture(elsewhere / "other.png", 3)
    manifest = folder / "m.csv"
    manifest.write_text("prompt,image,seed\n" + "".join(f"a shape,in{n}.png,{n + 1}\n" for n in range(3)))
    out = tmp_path / "out"
    real, written = writer_module.write_image, []

    def swap_after_the_first(*args):
        if not written:
            (folder / "in2.png").rename(tmp_path / "in2-kept.png")
            (folder / "in2.png").symlink_to(elsewhere / "other.png")
        written.append(args)
        return real(*args)

    monkeypatch.setattr(writer_module, "write_image", swap_after_the_first)
    result = genbatch("run", manifest, "--out", out, *SHAPES, "--strength", "0.6", "--steps", "4", "-b", "1")
    assert result.exit_code == 1, result.output
    statuses = {r["seed"]: (r["status"], r.get("error") or "") for r in ledger(out)}
    assert statuses[1][0] == statuses[2][0] == "done"
    assert statuses[3][0] == "failed" and "in2.png changed since the run was planned" in statuses[3][1]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["other.png"]

    monkeypatch.setattr(writer_module, "write_image", real)
    (folder / "in2.png").unlink()
    (tmp_path / "in2-kept.png").rename(folder / "in2.png")
    again = genbatch("run", manifest, "--out", out, *SHAPES, "--strength", "0.6", "--steps", "4", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["done"] == 1
    assert sorted(r["seed"] for r in ledger(out) if r["status"] == "done") == [1, 2, 3]


# --- --input-dir and --mask-dir ------------------------------------------------------------------


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n, (name, kind) in enumerate([("b.png", "PNG"), ("a.JPG", "JPEG"), ("c.webp", "WEBP")]):
        with Image.open(picture(tmp_path / f"source{n}.png", n)) as image:
            image.save(folder / name, kind)
    (folder / ".hidden.png").write_bytes((folder / "b.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub.png").mkdir()  # a subfolder, even with an image's name, is not read
    picture(folder / "sub.png" / "deep.png", 3)
    return folder


def test_input_dir_makes_a_row_per_image_in_name_order_and_pairs_masks_by_stem(photos, tmp_path):
    found = read_image_folder(str(photos), "a red circle")
    assert [r.values["image"].path for r in found.rows] == ["a.JPG", "b.png", "c.webp"]
    assert [r.values["id"] for r in found.rows] == ["a.JPG", "b.png", "c.webp"]
    assert {r.values["prompt"] for r in found.rows} == {"a red circle"}
    assert found.rows[1].values["image"].location == str(photos / "b.png")

    masks = tmp_path / "masks"
    masks.mkdir()
    mask(masks / "a.png")
    mask(masks / "b.png")
    with Image.open(mask(tmp_path / "m.png")) as image:
        image.save(masks / "c.bmp")
    paired = read_image_folder(str(photos), "a red circle", mask_dir=str(masks))
    assert not paired.problems
    assert [Path(r.values["mask_image"].path).name for r in paired.rows] == ["a.png", "b.png", "c.bmp"]
    for row in paired.rows:
        assert row.values["mask_image"].location == str(masks / Path(row.values["mask_image"].path).name)


def test_a_missing_mask_is_named_with_its_image_and_what_was_looked_for(photos, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    mask(masks / "a.png")
    mask(masks / "c.png")
    result = genbatch("validate", "--input-dir", photos, "--mask-dir", masks, "--prompt", "a red circle")
    assert result.exit_code == 2
    assert (
        f"{photos / 'b.png'}:mask: no mask in --mask-dir {masks}: expected {masks / 'b'}.png "
        "or another PNG, JPEG, WebP, BMP or TIFF file with the name stem b"
    ) in result.output
    assert "a.JPG" not in result.output and "c.webp" not in result.output
    run = genbatch("run", "--input-dir", photos, "--mask-dir", masks, "--prompt", "x", "--out", tmp_path / "o", *SHAPES)
    assert run.exit_code == 2 and "b.png:mask: no mask" in run.output and not (tmp_path / "o").exists()


def test_a_bad_file_in_the_input_dir_is_named_by_its_path(photos, tmp_path):
    (photos / "d.png").write_bytes((photos / "b.png").read_bytes()[:100])
    picture(tmp_path / "elsewhere.png", 1)
    (photos / "e.png").symlink_to(tmp_path / "elsewhere.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in ("a", "b", "c", "d", "e"):
        mask(masks / f"{name}.png", (32, 32) if name == "b" else (64, 64))
    result = genbatch("validate", "--input-dir", photos, "--mask-dir", masks, "--prompt", "a red circle")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert f"{photos / 'b.png'}:mask: the mask is 32x32 but its image is 64x64; a mask must be its image's size" in (
        lines
    )
    assert f"{photos / 'd.png'}:image: {photos / 'd.png'} cannot be decoded (truncated or damaged?)" in result.output
    assert (
        f"{photos / 'e.png'}:image: e.png is a symlink to {tmp_path / 'elsewhere.png'}, outside --input-dir {photos}"
    ) in result.output
    assert not any("a.JPG" in line or "c.webp" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--input-dir", "{photos}"), "--input-dir needs --prompt TEXT"),
        (("{manifest}", "--input-dir", "{photos}", "--prompt", "x"), "give a MANIFEST or --input-dir, not both"),
        (("{manifest}", "--prompt", "x"), "--prompt goes with --input-dir"),
        (("{manifest}", "--mask-dir", "{photos}"), "--mask-dir goes with --input-dir"),
        ((), "give a MANIFEST (a file of prompts, or - for stdin), or --input-dir DIR and --prompt TEXT"),
        (("--input-dir", "{photos}/nothing", "--prompt", "x"), "/nothing: no such folder"),
        (("--input-dir", "{empty}", "--prompt", "x"), ": no image files in it (PNG, JPEG, WebP, BMP or TIFF"),
        (("--input-dir", "{photos}", "--prompt", " "), "--prompt: the prompt is empty"),
        (("--input-dir", "{photos}", "--prompt", "x", "--column", "seed=s"), "--column or --prompt-column is an"),
    ],
)
def test_input_dir_usage_errors(photos, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\nx\n")
    given = [a.format(photos=photos, manifest=manifest, empty=tmp_path / "empty") for a in args]
    for command in ("validate", "run"):
        result = genbatch(command, *given, *(("--out", tmp_path / "o", *SHAPES) if command == "run" else ()))
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_input_dir_runs_each_image_with_paths_relative_to_the_folder(photos, tmp_path):
    out = tmp_path / "out"
    result = genbatch(
        "run", "--input-dir", photos, "--prompt", "a red circle", "--strength", "0.7", "--out", out, *SHAPES
    )
    assert result.exit_code == 0, result.output
    records = sorted(ledger(out), key=lambda r: r["index"])
    assert [r["image"]["path"] for r in records] == ["a.JPG", "b.png", "c.webp"]
    assert [r["id"] for r in records] == ["a.JPG", "b.png", "c.webp"]
    assert {r["manifest"] for r in records} == {str(photos)}
    assert {r["strength"] for r in records} == {0.7}
    outputs = [pixels(out / r["file"]) for r in records]
    assert differ(outputs[0], outputs[1]) > 8 and differ(outputs[1], outputs[2]) > 8
    # A new image in the folder leaves the others' seeds (from their ids) and so their images done.
    picture(photos / "0-first.png", 3)
    again = genbatch("run", "--input-dir", photos, "--prompt", "a red circle", "--strength", "0.7", "--out", out,
                     *SHAPES, "--json")  # fmt: skip
    counts = json.loads(again.stdout)["counts"]
    assert (counts["already_done"], counts["done"]) == (3, 1)


# --- what a run of rows with images leaves to read ----------------------------------------------


@pytest.fixture(scope="module")
def edits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two inputs x strength 0.5 and 1 on the shapes model: four images, one run."""
    folder = tmp_path_factory.mktemp("edits")
    for n in range(2):
        picture(folder / f"in{n}.png", n)
    manifest = folder / "m.csv"
    manifest.write_text("prompt,image,seed\na red circle,in0.png,1\na blue square,in1.png,2\n")
    out = folder / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENBATCH_HOME", str(tmp_path_factory.mktemp("home")))
        result = genbatch("run", manifest, "--out", out, *SHAPES, "--vary", "strength=0.5,1")
    assert result.exit_code == 0, result.output
    return out


def report_cards(out: Path) -> list[dict]:
    """The report's cards as the page's script reads them: the JSON blob in report.html."""
    return cards_of((out / "report.html").read_text(encoding="utf-8"))


def cards_of(page: str) -> list[dict]:
    blob = re.search(r'<script type="application/json" id="gb-data">(.*?)</script>', page, re.S)
    assert blob is not None
    data = json.loads(blob.group(1))
    return [dict(zip(data["card_cols"], row)) for row in data["cards"]]


def test_the_report_shows_each_output_beside_its_input(edits):
    cards = report_cards(edits)
    records = {r["file"]: r for r in ledger(edits)}
    assert len(cards) == 4
    for card in cards:
        given = records[card["src"]]["image"]
        assert card["inputs"] == [["input", given["path"], f".genbatch-thumbs/input-{given['sha256'][:20]}.webp",
                                   given["sha256"]]]  # fmt: skip
        with Image.open(edits / card["inputs"][0][2]) as thumb:  # a thumbnail of the input file itself
            shown = np.asarray(thumb.convert("RGB"))
        assert shown.shape == (64, 64, 3)
        assert np.abs(shown.astype(int) - pixels(edits.parent / given["path"])).mean() < 6
    # one thumbnail per input file, whatever the number of images made from it; a report made
    # again keeps them (its cleanup removes only thumbnails of records no longer shown)
    assert len(list((edits / ".genbatch-thumbs").glob("input-*.webp"))) == 2
    assert genbatch("report", edits).exit_code == 0
    assert len(list((edits / ".genbatch-thumbs").glob("input-*.webp"))) == 2


def test_the_report_makes_a_missing_input_thumbnail_from_its_file_or_shows_its_path(edits, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(edits, out)
    for thumb in (out / ".genbatch-thumbs").glob("input-*.webp"):
        thumb.unlink()
    assert genbatch("report", out).exit_code == 0  # the ledger names the manifest: its files are still there
    assert all(card["inputs"][0][2] for card in report_cards(out))
    assert len(list((out / ".genbatch-thumbs").glob("input-*.webp"))) == 2
    for thumb in (out / ".genbatch-thumbs").glob("input-*.webp"):
        thumb.unlink()
    moved = edits.parent / "in0.png"
    moved.rename(tmp_path / "in0.png")
    try:
        assert genbatch("report", out).exit_code == 0
    finally:
        (tmp_path / "in0.png").rename(moved)
    shown = {card["inputs"][0][1]: card["inputs"][0][2] for card in report_cards(out)}
    kept = next(r["image"]["sha256"] for r in ledger(out) if r["image"]["path"] == "in1.png")
    assert shown == {"in0.png": None, "in1.png": f".genbatch-thumbs/input-{kept[:20]}.webp"}  # gone: its path


def test_merge_brings_the_input_thumbnails_along(edits, tmp_path):
    source = tmp_path / "shard"
    shutil.copytree(edits, source)
    away = tmp_path / "away"
    away.mkdir()
    for n in range(2):  # the input files are not where the ledger says: only the thumbnails show them
        (edits.parent / f"in{n}.png").rename(away / f"in{n}.png")
    try:
        merged = genbatch("merge", source, "--into", tmp_path / "merged")
    finally:
        for n in range(2):
            (away / f"in{n}.png").rename(edits.parent / f"in{n}.png")
    assert merged.exit_code == 0, merged.output
    shown = {tuple(card["inputs"][0][1:3]) for card in report_cards(tmp_path / "merged")}
    assert len(shown) == 2 and all(thumb and (tmp_path / "merged" / thumb).is_file() for _, thumb in shown)


def test_report_csv_and_parquet_name_each_input_and_its_sha256(edits):
    records = {r["file"]: r for r in ledger(edits)}
    with open(edits / "report.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in rows:
        given = records[row["file"]]["image"]
        assert (row["image"], row["image_sha256"]) == (given["path"], given["sha256"])
        assert row["mask_image"] == "" and row["mask_image_sha256"] == "" and row["strength"] in ("0.5", "1.0")
    import pandas as pd

    table = pd.read_parquet(edits / "report.parquet")
    assert {"image", "image_sha256", "mask_image_sha256", "control_image_sha256"} <= set(table.columns)
    assert sorted(table["image_sha256"]) == sorted(r["image"]["sha256"] for r in records.values())


def test_each_png_carries_its_input_path_and_sha256(edits):
    for record in ledger(edits):
        with Image.open(edits / record["file"]) as image:
            meta = json.loads(image.text["genbatch"])
            parameters = image.text["parameters"]
        assert meta["image"] == record["image"] and meta["call"]["image"] == record["image"]
        assert meta["image"]["path"] in ("in0.png", "in1.png") and len(meta["image"]["sha256"]) == 64
        assert f"Denoising strength: {record['strength']:g}" in parameters


def test_grid_inputs_puts_each_rows_input_first(edits):
    result = genbatch("grid", edits, "--rows", "image", "--cols", "strength", "--inputs")
    assert result.exit_code == 0, result.output
    png = edits / ".genbatch-grids" / "image-by-strength.png"
    layout = json.loads(png.with_suffix(".json").read_text())
    assert layout["rows"] == ["in0.png", "in1.png"] and layout["cols"] == ["input", "0.5", "1"]
    assert layout["input_cols"] == 1
    with Image.open(png) as image:
        grid = np.asarray(image.convert("RGB"), dtype=np.int16)
    records = {(r["image"]["path"], r["strength"]): r for r in ledger(edits)}
    for r, path in enumerate(layout["rows"]):
        cell = layout["cells"][r][0]
        assert (cell["input"], cell["path"], cell["shown"]) == ("image", path, True)
        crop = grid[cell["y"] : cell["y"] + cell["height"], cell["x"] : cell["x"] + cell["width"]]
        assert np.array_equal(crop, pixels(edits.parent / path))  # the input file, at its size
        for c, strength in enumerate((0.5, 1.0), start=1):
            assert layout["cells"][r][c]["file"] == records[(path, strength)]["file"]
    mixed = genbatch("grid", edits, "--rows", "strength", "--cols", "seed", "--inputs")
    assert mixed.exit_code == 2
    assert "--inputs: the row strength '0.5' holds images made from different inputs (in0.png, in1.png)" in (
        mixed.output
    )


def test_a_run_into_a_bucket_puts_each_input_thumbnail_and_its_report_shows_it(s3, tmp_path):
    picture(tmp_path / "in0.png", 0)
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,image,seed\na red circle,in0.png,1\na blue square,in0.png,2\n")
    bucket = s3.new_bucket()
    result = genbatch("run", manifest, "--out", f"s3://{bucket}/run", *SHAPES)
    assert result.exit_code == 0, result.output
    sha = json.loads(s3.read(bucket, "run/genbatch.jsonl").decode().splitlines()[0])["image"]["sha256"]
    thumb = f".genbatch-thumbs/input-{sha[:20]}.webp"
    assert thumb in s3.keys(bucket, "run")
    with Image.open(io.BytesIO(s3.read(bucket, f"run/{thumb}"))) as image:
        assert image.size == (64, 64)
    assert [c["inputs"] for c in cards_of(s3.read(bucket, "run/report.html").decode())] == [
        [["input", "in0.png", thumb, sha]]
    ] * 2
    (tmp_path / "in0.png").unlink()  # the report of a bucket needs no input file
    assert genbatch("report", f"s3://{bucket}/run").exit_code == 0
    assert {c["inputs"][0][2] for c in cards_of(s3.read(bucket, "run/report.html").decode())} == {thumb}


def test_the_example_manifest_edits_its_images_into_a_folder_inside_another_run(tmp_path):
    """`make demo` runs manifests/edits.csv into demo-out/edits: each output follows its own input
    (the rows that keep their background come out closest to it), and the outer run's verify
    does not count the inner run's images as its own."""
    outer = tmp_path / "demo-out"
    (tmp_path / "p.txt").write_text("a red circle\n")
    assert genbatch("run", tmp_path / "p.txt", "--out", outer, *FAST).exit_code == 0
    out = outer / "edits"
    result = genbatch("run", ROOT / "manifests" / "edits.csv", "--out", out, "--steps", "4", "--quiet")
    assert result.exit_code == 0, result.output
    records = sorted(ledger(out), key=lambda r: r["index"])
    assert [r["id"] for r in records] == ["recolour", "reshape", "new-background", "light-touch"]
    assert all(r["status"] == "done" and r["image"]["path"].startswith("images/") for r in records)
    made = [pixels(out / r["file"]) for r in records]
    given = [pixels(ROOT / "manifests" / r["image"]["path"]) for r in records]
    assert all(differ(made[i], made[j]) > 100 for i in range(4) for j in range(i))
    for i in (0, 1, 3):  # new-background (2) paints its background black, as its prompt asks
        distances = [np.abs(made[i] - other).mean() for other in given]
        assert int(np.argmin(distances)) == i, (records[i]["id"], distances)
    assert len(list((out / ".genbatch-thumbs").glob("input-*.webp"))) == 4
    checked = genbatch("verify", outer)
    assert checked.exit_code == 0 and "0 unrecorded" in checked.output, checked.output
    # docs/rows-with-images.md's replay in plain diffusers gives the image of the ledger's first line
    page = (ROOT / "docs" / "rows-with-images.md").read_text(encoding="utf-8")
    replay = page.split("## Replaying an image in plain diffusers")[1].split("```python\n")[1].split("```")[0]
    replay = replay.replace('"edits/genbatch.jsonl"', repr(str(out / "genbatch.jsonl")))
    replay = replay.replace('Path("manifests")', repr(ROOT / "manifests").replace("PosixPath", "Path"))
    found: dict = {}
    exec(replay, found)  # noqa: S102 - the documentation's own code
    first = ledger(out)[0]
    replayed = np.asarray(found["image"].convert("RGB"), dtype=np.int16)
    assert differ(replayed, pixels(out / first["file"])) <= 2


def test_verify_of_a_prefix_leaves_out_a_run_inside_it(s3, tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\n")
    bucket = s3.new_bucket()
    for out in (f"s3://{bucket}/demo", f"s3://{bucket}/demo/edits"):
        assert genbatch("run", tmp_path / "p.txt", "--out", out, *FAST).exit_code == 0
    checked = genbatch("verify", f"s3://{bucket}/demo")
    assert checked.exit_code == 0 and "0 unrecorded" in checked.output, checked.output
