"""SANA-Sprint (tiny build, genbatch.pipelines.tiny_builds.sana_sprint): the family contract at
its two-step default, plain diffusers' images at one, three and four steps (which plain
diffusers only runs with ``intermediate_timesteps=None``), embedded guidance, no negative prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from family_contract import SENSITIVE, check_family_contract, moves
from helpers import genbatch, ledger, pixels

from genbatch.pipelines.families import BY_NAME, detect, read_defaults
from genbatch.pipelines.families.sana_sprint import SANA_SPRINT, step_arguments

SIZE = 32
EXTRA = {"max_sequence_length": 32, "use_resolution_binning": False}  # the tiny build's length; sizes as asked
CALL = {
    "prompt": "a red circle",
    "num_inference_steps": 2,
    "height": SIZE,
    "width": SIZE,
    "guidance_scale": 4.5,
    **EXTRA,
}


@pytest.fixture(scope="module")
def folder(tiny_family) -> Path:
    return tiny_family("sana-sprint")


def test_the_tiny_build_moves_with_prompt_and_guidance(folder: Path) -> None:
    """Its text and guidance reach the image (the builder scales the caption path and the guidance embedder)."""
    prompt = moves(folder, CALL, {"prompt": "two blue squares"})
    guidance = moves(folder, CALL, {"guidance_scale": 1.0})
    print(f"\nfigures: sana-sprint sensitivity: prompt {prompt}, guidance 4.5 vs 1 {guidance}")
    assert min(prompt, guidance) >= SENSITIVE


def test_contract(folder: Path, tmp_path: Path) -> None:
    assert detect(folder) is SANA_SPRINT is BY_NAME["sana-sprint"]
    defaults = read_defaults(folder)
    assert (defaults["width"], defaults["height"], defaults["steps"]) == (SIZE, SIZE, 2)
    check_family_contract(folder, "sana-sprint", EXTRA, tmp_path, steps=2)


def test_one_three_and_four_steps_give_plain_diffusers_images(folder: Path, tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    # why genbatch passes intermediate_timesteps=None: the two-step default refuses other counts
    with pytest.raises(ValueError, match="num_inference_steps != 2"):
        pipe(**{**CALL, "num_inference_steps": 3}, generator=torch.Generator("cpu").manual_seed(0))

    manifest = tmp_path / "steps.csv"
    manifest.write_text("prompt,seed,steps\na red circle,11,1\ntwo blue squares,12,3\na blue cross,13,4\n")
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--model", folder, "--batch-size", "3", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    records = ledger(out)
    assert sorted(r["steps"] for r in records) == [1, 3, 4]
    worst = 0
    images = {}
    for r in records:
        call = r["call"]  # a ledger line's call replays: it records what these counts need
        assert call["num_inference_steps"] == r["steps"] and call["intermediate_timesteps"] is None
        plain = pipe(**call, generator=torch.Generator("cpu").manual_seed(r["seed"])).images[0]
        images[r["steps"]] = pixels(out / r["file"])
        worst = max(worst, int(np.abs(np.asarray(plain, dtype=np.int16) - images[r["steps"]]).max()))
    print(f"\nfigures: sana-sprint 1, 3 and 4 steps vs plain diffusers {worst}")
    assert worst <= 2


def test_the_step_count_decides_the_timesteps() -> None:
    assert step_arguments(2) == {}  # the pipeline's own two steps: pi/2, then 1.3
    assert step_arguments(1) == step_arguments(3) == step_arguments(4) == {"intermediate_timesteps": None}


def test_step_counts_it_is_not_distilled_for_are_refused_before_anything_loads(folder: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,seed,steps\na red circle,11,8\n")
    checked = genbatch("validate", manifest, "--model", folder)
    assert checked.exit_code == 2
    assert f"{manifest}:2:steps: SANA-Sprint is distilled for 1 to 4 steps (2 by default), not 8" in checked.stdout
    run = genbatch("run", tmp_path / "p.csv", "--model", folder, "--steps", "0", "--out", tmp_path / "o")
    assert run.exit_code == 2 and not (tmp_path / "o" / "genbatch.jsonl").exists()


def test_a_negative_prompt_is_refused_before_anything_loads(folder: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,seed,negative_prompt\na red circle,11,ugly\n")
    result = genbatch("run", manifest, "--model", folder, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code != 0 and "SANA-Sprint takes no negative prompt" in result.output
    assert not (tmp_path / "out" / "genbatch.jsonl").exists()
