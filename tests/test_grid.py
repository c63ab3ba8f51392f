"""genbatch grid: labelled X/Y comparison grids read from the ledger, through the CLI."""

from __future__ import annotations

import json
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


def test_samplers_compared_by_one_run_each_into_one_folder(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,seed\na red circle,1\na blue square,2\n", encoding="utf-8")
    out = tmp_path / "out"
    for scheduler in ("DDIMScheduler", "EulerDiscreteScheduler"):
        result = genbatch(
            "run", manifest, "--out", out, *FAST, "--scheduler", scheduler, "--name-template", "{index:06d}-{key}.{ext}"
        )
        assert result.exit_code == 0, result.output
    result = genbatch("grid", out, "--rows", "prompt", "--cols", "sampler")
    assert result.exit_code == 0, result.output
    layout = json.loads((out / ".genbatch-grids" / "prompt-by-scheduler.json").read_text())
    assert layout["cols"] == ["DDIMScheduler", "EulerDiscreteScheduler"]
    assert all(cell is not None for row in layout["cells"] for cell in row)
