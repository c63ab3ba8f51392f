"""A model's own timesteps: ``"timesteps": {"<steps>": [...]}`` in its genbatch.json.

A scheduler's config spaces every step count one way; a model that samples better with its
steps elsewhere (the shipped ``shapes`` model bunches them at high noise) lists them per step
count. They are used with the model's own scheduler at that step count, recorded with every
image, and part of each job's key.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import genbatch, ledger, pixels
from PIL import Image

OWN = [999, 500]


def model_with(tiny_model: Path, folder: Path, scheduler: str, genbatch_json: dict) -> Path:
    """A copy of the tiny model with another scheduler class and genbatch.json."""
    shutil.copytree(tiny_model, folder)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "_class_name": scheduler}))
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", scheduler]}))
    (folder / "genbatch.json").write_text(json.dumps(genbatch_json))
    return folder


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "p.csv"
    path.write_text("prompt,seed\na red circle,1\n", encoding="utf-8")
    return path


@pytest.fixture
def euler_model(tiny_model: Path, tmp_path: Path) -> Path:
    return model_with(tiny_model, tmp_path / "euler", "EulerDiscreteScheduler", {"steps": 2, "timesteps": {"2": OWN}})


def run(manifest: Path, out: Path, model: Path, *options: str) -> list[dict]:
    result = genbatch("run", manifest, "--out", out, "--model", model, "--quiet", *options)
    assert result.exit_code == 0, result.output
    return ledger(out)


def test_own_timesteps_are_used_recorded_and_part_of_the_key(tmp_path, manifest, euler_model):
    out = tmp_path / "out"
    (record,) = run(manifest, out, euler_model)
    assert record["steps"] == 2 and record["timesteps"] == OWN
    with Image.open(out / record["file"]) as image:
        assert json.loads(image.text["genbatch"])["timesteps"] == OWN
    assert pd.read_csv(out / "report.csv")["timesteps"].tolist() == ["999 500"]
    # a rerun finds the image done
    assert genbatch("run", manifest, "--out", out, "--model", euler_model, "--quiet").exit_code == 0
    assert len(ledger(out)) == 1

    # the same two steps spaced by the scheduler: another job, other pixels
    spaced = euler_model.parent / "spaced"
    shutil.copytree(euler_model, spaced)
    (spaced / "genbatch.json").write_text(json.dumps({"steps": 2}))
    (plain,) = run(manifest, tmp_path / "plain", spaced)
    assert "timesteps" not in plain and plain["key"] != record["key"]
    assert plain["seed"] == record["seed"]
    assert (pixels(out / record["file"]) != pixels(tmp_path / "plain" / plain["file"])).any()


def test_other_step_counts_and_other_schedulers_use_their_own_spacing(tmp_path, manifest, euler_model):
    (three_steps,) = run(manifest, tmp_path / "a", euler_model, "--steps", "3")
    assert three_steps["steps"] == 3 and "timesteps" not in three_steps
    (ddim,) = run(manifest, tmp_path / "b", euler_model, "--scheduler", "DDIMScheduler")
    assert ddim["scheduler"] == "DDIMScheduler" and "timesteps" not in ddim
    # naming the model's own scheduler keeps its own timesteps
    (euler,) = run(manifest, tmp_path / "c", euler_model, "--scheduler", "EulerDiscreteScheduler")
    assert euler["timesteps"] == OWN


@pytest.mark.parametrize(
    "timesteps, complaint",
    [
        ({"2": [999]}, '"timesteps" / "2" is [999]'),
        ({"2": [500, 999]}, '"timesteps" / "2" is [500, 999]'),
        ({"2": [999, 1000]}, '"timesteps" / "2" is [999, 1000]'),
        ({"two": [999, 500]}, "the key must be a step count"),
        ([999, 500], '"timesteps" is [999, 500]'),
    ],
)
def test_bad_timesteps_name_the_file_the_entry_and_what_is_accepted(
    tmp_path, manifest, tiny_model, timesteps, complaint
):
    model = model_with(tiny_model, tmp_path / "m", "EulerDiscreteScheduler", {"steps": 2, "timesteps": timesteps})
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, "--model", model, "--quiet")
    assert result.exit_code == 2
    assert f"{model / 'genbatch.json'}" in result.output and complaint in result.output
    assert "whole numbers, decreasing, each 0 to 999" in result.output
    assert not out.exists()


def test_a_scheduler_that_cannot_take_timesteps_is_refused_before_any_image(tmp_path, manifest, tiny_model):
    model = model_with(tiny_model, tmp_path / "m", "DDIMScheduler", {"steps": 2, "timesteps": {"2": OWN}})
    result = genbatch("run", manifest, "--out", tmp_path / "out", "--model", model, "--quiet")
    assert result.exit_code == 2
    assert "DDIMScheduler does not" in result.output and "genbatch.json" in result.output
    # another scheduler, or another step count, does not need them
    assert (
        genbatch(
            "run",
            manifest,
            "--out",
            tmp_path / "b",
            "--model",
            model,
            "--quiet",
            "--scheduler",
            "EulerDiscreteScheduler",
        ).exit_code
        == 0
    )


def test_a_dry_run_shows_the_timesteps_a_run_would_take(tmp_path, manifest, euler_model):
    out = tmp_path / "out"
    text = genbatch("run", manifest, "--out", out, "--model", euler_model, "--dry-run").stdout
    assert "steps=2 timesteps=999,500 guidance=" in text
    plan = json.loads(genbatch("run", manifest, "--out", out, "--model", euler_model, "--dry-run", "--json").stdout)
    (job,) = plan["jobs"]
    assert job["timesteps"] == OWN and job["steps"] == 2 and job["prompt"] == "a red circle"
    assert not out.exists()
