"""genbatch grid: labelled X/Y comparison grids read from the ledger, through the CLI."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, genbatch, ledger, pixels
from PIL import Image

LONG = "a very long prompt about a lighthouse on a cliff at dusk with gulls and waves and a small red boat far out"


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """Two prompts (one long) x guidance 1, 3, 5: six images, one run."""
    root = tmp_path_factory.mktemp("grid")
    manifest = root / "prompts.csv"
    manifest.write_text(f"prompt,style,seed\na red circle,oil,11\n{LONG},ink,12\n", encoding="utf-8")
    out = root / "out"
    result = genbatch("run", manifest, "--out", out, *FAST, "--vary", "guidance=1,3,5")
    assert result.exit_code == 0, result.output
    return out


def grid_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_a_2_by_3_grid_has_its_labels_and_each_image_in_its_cell(varied):
    result = genbatch("grid", varied, "--rows", "prompt", "--cols", "guidance")
    assert result.exit_code == 0, result.output
    png = varied / ".genbatch-grids" / "prompt-by-guidance.png"
    assert result.stdout.split() == [str(png)]
    layout = json.loads(png.with_suffix(".json").read_text())
    assert layout["rows_axis"] == "prompt" and layout["cols_axis"] == "guidance"
    assert layout["rows"] == ["a red circle", LONG]
    assert layout["cols"] == ["1", "3", "5"]
    records = {(r["prompt"], r["guidance_scale"]): r for r in ledger(varied)}
    grid = grid_pixels(png)
    for r, prompt in enumerate(layout["rows"]):
        for c, guidance in enumerate((1.0, 3.0, 5.0)):
            cell = layout["cells"][r][c]
            assert cell["file"] == records[(prompt, guidance)]["file"]
            crop = grid[cell["y"] : cell["y"] + cell["height"], cell["x"] : cell["x"] + cell["width"]]
            assert np.array_equal(crop, pixels(varied / cell["file"]))
    # Labels are drawn: each column's header strip and each row's label strip holds text, and
    # different labels look different.
    header = [
        grid[: layout["top"], layout["cells"][0][c]["x"] : layout["cells"][0][c]["x"] + layout["cell_width"]]
        for c in range(3)
    ]
    assert all((strip < 128).any() for strip in header)
    assert not np.array_equal(header[0], header[1]) and not np.array_equal(header[1], header[2])
    labels = [
        grid[cells[0]["y"] : cells[0]["y"] + layout["cell_height"], : layout["label_width"]]
        for cells in layout["cells"]
    ]
    assert all((strip < 128).any() for strip in labels)
    # The long prompt is wrapped over several lines: ink on more rows of its strip than the short one's.
    inked = [int((strip < 128).any(axis=(1, 2)).sum()) for strip in labels]
    assert inked[1] > 2 * inked[0]
    # The report lists the grid.
    page = (varied / "report.html").read_text()
    assert 'id="grids"' in page and ".genbatch-grids/prompt-by-guidance.png" in page


def test_grids_stay_out_of_the_image_folder_data_set(varied):
    datasets = pytest.importorskip("datasets")
    assert genbatch("grid", varied, "--rows", "prompt", "--cols", "guidance").exit_code == 0
    loaded = datasets.load_dataset("imagefolder", data_dir=str(varied), split="train")
    assert len(loaded) == 6
    assert sorted(loaded["guidance_scale"]) == [1.0, 1.0, 3.0, 3.0, 5.0, 5.0]


def test_a_third_axis_makes_one_grid_per_value_and_columns_of_the_manifest_are_axes(varied):
    result = genbatch("grid", varied, "--rows", "style", "--cols", "seed", "--pages", "cfg")
    assert result.exit_code == 0, result.output
    pages = [Path(p) for p in result.stdout.split()]
    assert [p.name for p in pages] == [f"style-by-seed-per-guidance-{n:03d}.png" for n in (1, 2, 3)]
    layouts = [json.loads(p.with_suffix(".json").read_text()) for p in pages]
    assert [layout["title"] for layout in layouts] == ["guidance: 1", "guidance: 3", "guidance: 5"]
    assert all(layout["rows"] == ["oil", "ink"] and layout["cols"] == ["11", "12"] for layout in layouts)
    # one image per prompt: the diagonal is filled, the rest is empty
    assert [[cell is not None for cell in row] for row in layouts[0]["cells"]] == [[True, False], [False, True]]


def test_a_crowded_cell_or_an_unknown_axis_is_one_line(varied):
    crowded = genbatch("grid", varied, "--rows", "prompt", "--cols", "seed")
    assert crowded.exit_code == 2
    assert "would hold 3 images, which differ in guidance; add --pages guidance" in crowded.output
    unknown = genbatch("grid", varied, "--rows", "prompt", "--cols", "colour")
    assert unknown.exit_code == 2
    assert "no axis 'colour'" in unknown.output and "a manifest column (prompt, seed, style)" in unknown.output
    same = genbatch("grid", varied, "--rows", "cfg", "--cols", "guidance")
    assert same.exit_code == 2 and "must be different axes" in same.output


def test_vary_mistakes_are_one_line(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt\na\n", encoding="utf-8")
    for option, message in (
        ("steps=20,x", "--vary 'steps=20,x': 'x' is not a valid steps"),
        ("colour=1,2", "unknown field 'colour'; fields that can vary: prompt, negative_prompt, seed, steps"),
        ("sampler=Euler,DDIM", "the scheduler is a run option (--scheduler)"),
        ("steps=2,2", "the value '2' is given twice"),
        ("steps", "expected FIELD=VALUE,VALUE"),
    ):
        result = genbatch("run", manifest, "--out", tmp_path / "out", *FAST, "--vary", option, "--dry-run")
        assert result.exit_code == 2, option
        assert message in result.output, result.output
    both = genbatch(
        "run", manifest, "--out", tmp_path / "out", *FAST, "--vary", "steps=2,3", "--set", "steps=4", "--dry-run"
    )
    assert both.exit_code == 2 and "use one of the two" in both.output
    plan = genbatch(
        "run",
        manifest,
        "--out",
        tmp_path / "out",
        *FAST,
        "--vary",
        'prompt="a, b",c',
        "--vary",
        "steps=2,3",
        "--dry-run",
        "--json",
    )
    jobs = json.loads(plan.stdout)["jobs"]
    assert [(j["prompt"], j["steps"]) for j in jobs] == [("a, b", 2), ("a, b", 3), ("c", 2), ("c", 3)]
    assert len({j["seed"] for j in jobs}) == 1


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two prompts, made by a DDIM run and then by an Euler run into the same folder."""
    root = tmp_path_factory.mktemp("samplers")
    manifest = root / "m.csv"
    manifest.write_text("prompt,seed\na red circle,1\na blue square,2\n", encoding="utf-8")
    out = root / "out"
    for scheduler in ("DDIMScheduler", "EulerDiscreteScheduler"):
        result = genbatch(
            "run", manifest, "--out", out, *FAST, "--scheduler", scheduler, "--name-template", "{index:06d}-{key}.{ext}"
        )
        assert result.exit_code == 0, result.output
    return out


def test_samplers_compared_by_one_run_each_into_one_folder(two_runs):
    out = two_runs
    result = genbatch("grid", out, "--rows", "prompt", "--cols", "sampler")
    assert result.exit_code == 0, result.output
    layout = json.loads((out / ".genbatch-grids" / "prompt-by-scheduler.json").read_text())
    assert layout["cols"] == ["DDIMScheduler", "EulerDiscreteScheduler"]
    assert all(cell is not None for row in layout["cells"] for cell in row)


def test_labels_follow_the_order_the_runs_were_made_not_their_job_keys(two_runs, tmp_path):
    # The same two runs the other way round: the same images, with the Euler run's records
    # first in the ledger (it is append-only, so that is what running Euler first writes).
    # Within each run the records are reversed too, as if its images had finished in the
    # opposite order.
    euler_first = tmp_path / "euler-first"
    shutil.copytree(two_runs, euler_first)
    records = ledger(two_runs)
    runs = list(dict.fromkeys(r["run_id"] for r in records))
    swapped = [r for run in reversed(runs) for r in reversed([r for r in records if r["run_id"] == run])]
    (euler_first / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in swapped), encoding="utf-8")
    # Each prompt's two jobs share a manifest row, and their keys (hashes) sort one way: in
    # one of the two folders they sort against the order the runs were made.
    ddim, euler = (
        {r["index"]: r["key"] for r in records if r["scheduler"] == name}
        for name in ("DDIMScheduler", "EulerDiscreteScheduler")
    )
    assert ddim.keys() == euler.keys() and all(ddim[i] != euler[i] for i in ddim)
    for out, made in (
        (two_runs, ["DDIMScheduler", "EulerDiscreteScheduler"]),
        (euler_first, ["EulerDiscreteScheduler", "DDIMScheduler"]),
    ):
        result = genbatch("grid", out, "--rows", "prompt", "--cols", "sampler")
        assert result.exit_code == 0, result.output
        layout = json.loads((out / ".genbatch-grids" / "prompt-by-scheduler.json").read_text())
        assert layout["cols"] == made
        assert layout["rows"] == ["a red circle", "a blue square"]  # manifest order within a run
        result = genbatch("grid", out, "--rows", "seed", "--cols", "prompt", "--pages", "sampler")
        assert result.exit_code == 0, result.output
        titles = [json.loads(Path(p).with_suffix(".json").read_text())["title"] for p in result.stdout.split()]
        assert titles == [f"scheduler: {name}" for name in made]


def test_a_label_thousands_of_characters_long_is_laid_out_in_a_moment(tmp_path):
    # Unbroken labels of 3,000 and 20,000 characters in a manifest column (a scraped caption
    # or a hash can be as long): only what fits is drawn, cut with "…".
    manifest = tmp_path / "m.csv"
    labels = ["x" * 3_000, "W" * 20_000]
    manifest.write_text(f"prompt,label,seed\na red circle,{labels[0]},1\na blue square,{labels[1]},2\n")
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    for axes, name in (
        (["--rows", "label", "--cols", "seed"], "label-by-seed.png"),  # row labels
        (["--rows", "seed", "--cols", "label"], "seed-by-label.png"),  # column labels
        (["--rows", "seed", "--cols", "prompt", "--pages", "label"], "seed-by-prompt-per-label-002.png"),  # titles
    ):
        started = time.perf_counter()
        result = genbatch("grid", out, *axes)
        seconds = time.perf_counter() - started
        assert result.exit_code == 0, result.output
        assert seconds < 2, f"{axes}: {seconds:.1f} s"
        png = out / ".genbatch-grids" / name
        layout = json.loads(png.with_suffix(".json").read_text())
        # the layout keeps the labels whole
        assert any(labels[1] in text for text in [*layout["rows"], *layout["cols"], layout["title"] or ""])
        with Image.open(png) as image:
            # as wide as for any short label: the label strip, then one column per value
            assert image.width == layout["left"] + len(layout["cols"]) * (layout["col_width"] + 6)
            assert image.height == layout["top"] + len(layout["rows"]) * (layout["cell_height"] + 6)
    # A long label fills its row's strip line after line, down to the row's end.
    grid = grid_pixels(out / ".genbatch-grids" / "label-by-seed.png")
    layout = json.loads((out / ".genbatch-grids" / "label-by-seed.json").read_text())
    for cells in layout["cells"]:
        y = next(cell["y"] for cell in cells if cell)
        strip = grid[y : y + layout["cell_height"], : layout["label_width"]]
        inked = np.flatnonzero((strip < 128).any(axis=(1, 2)))
        assert inked.size and inked[-1] > layout["cell_height"] // 2
