"""Rows with images: img2img and inpainting per row on Stable Diffusion (the embedded `shapes`
model and a tiny random build), with the same promises as text rows: batch-invariant pixels,
plain diffusers' pixels, job keys that follow the input files' contents, checks before any model
loads."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import FAST, genbatch, ledger
from image_rows_contract import check_image_rows, mask, picture

FIGURES: dict[str, dict[str, int]] = {}


@pytest.fixture
def inputs(tmp_path):
    for n in range(4):
        picture(tmp_path / f"in{n}.png", n)
        mask(tmp_path / f"mask{n}.png", n)
    return tmp_path


def test_img2img_rows_on_the_shapes_model(inputs):
    from diffusers import AutoPipelineForImage2Image

    from genbatch.pipelines.builtin import shapes_path

    rows = [f"a red circle,in{n},{0.5 + 0.2 * (n % 2)},{n + 1}" for n in range(3)]
    rows = [r.replace(f"in{n},", f"in{n}.png,") for n, r in enumerate(rows)]
    figures = check_image_rows(
        lambda: AutoPipelineForImage2Image.from_pretrained(shapes_path()),
        "shapes",
        inputs,
        "prompt,image,strength,seed",
        rows,
        run_args=("--steps", "4"),
        swaps={"image": "in3.png", "strength": 0.95},
    )
    FIGURES["img2img (shapes)"] = figures


def test_img2img_and_inpainting_rows_on_tiny_stable_diffusion(inputs, tiny_family):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    folder = tiny_family("sd")
    FIGURES["img2img (SD)"] = check_image_rows(
        lambda: AutoPipelineForImage2Image.from_pretrained(folder),
        folder,
        inputs,
        "prompt,image,strength,seed",
        [f"a red circle,in{n}.png,0.7,{n + 1}" for n in range(3)],
        run_args=("--steps", "3"),
        swaps={"image": "in3.png", "strength": 1.0},
        name="i2i",
    )
    FIGURES["inpainting (SD)"] = check_image_rows(
        lambda: AutoPipelineForInpainting.from_pretrained(folder),
        folder,
        inputs,
        "prompt,image,mask,seed",
        [f"a red circle,in{n}.png,mask{n}.png,{n + 1}" for n in range(3)],
        run_args=("--steps", "3"),
        swaps={"image": "in3.png", "mask_image": "mask1.png"},
        name="inpaint",
    )


def test_validate_and_run_name_each_bad_input_before_any_model_loads(tmp_path):
    picture(tmp_path / "ok.png", 0)
    mask(tmp_path / "small.png", 0, size=(32, 32))
    (tmp_path / "trunc.png").write_bytes((tmp_path / "ok.png").read_bytes()[:200])
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "prompt,image,mask\n"
        "fine,ok.png,\n"
        "gone,missing.png,\n"
        "cut,trunc.png,\n"
        "text,text.png,\n"
        "mask too small,ok.png,small.png\n"
        "escape,../ok.png,\n"
        "mask alone,,small.png\n"
        "a folder,sub,\n"
        "the shapes model cannot inpaint,ok.png,ok.png\n"
    )
    result = genbatch("validate", manifest)
    assert result.exit_code == 2
    out = result.output
    assert f"m.csv:3:image: no such file: {tmp_path / 'missing.png'}" in out
    assert "m.csv:4:image:" in out and "cannot be decoded (truncated or damaged?)" in out
    assert "m.csv:5:image:" in out and "is not an image Pillow can read" in out
    assert "m.csv:6:mask: the mask is 32x32 but its image is 64x64" in out
    assert "m.csv:7:image: ../ok.png leaves the manifest's folder" in out
    assert "m.csv:8:mask: a mask needs an image to inpaint" in out
    assert "m.csv:9:image:" in out and "is a folder" in out
    assert "m.csv:10:mask: shapes cannot inpaint: its UNet takes 30 input channels" in out
    run = genbatch("run", manifest, "--out", tmp_path / "out", *FAST)
    assert run.exit_code == 2 and "loading" not in run.output
    assert not (tmp_path / "out").exists()


def test_the_job_key_follows_the_input_file_not_its_name(inputs):
    manifest = inputs / "m.csv"
    manifest.write_text("prompt,image,seed\na red circle,in0.png,5\n")
    out = inputs / "out"
    args = ("--model", "shapes", "--steps", "2", "--quiet", "--out", out)
    assert genbatch("run", manifest, *args).exit_code == 0
    first = ledger(out)[0]
    assert first["image"]["path"] == "in0.png" and len(first["image"]["sha256"]) == 64
    shutil.copy(inputs / "in0.png", inputs / "renamed.png")  # the same bytes under another name: done
    manifest.write_text("prompt,image,seed\na red circle,renamed.png,5\n")
    again = genbatch("run", manifest, *args, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["counts"]["already_done"] == 1
    picture(inputs / "renamed.png", 2)  # other bytes: a new job
    changed = genbatch("run", manifest, *args, "--json")
    assert json.loads(changed.stdout)["counts"]["done"] == 1
    assert len({r["key"] for r in ledger(out)}) == 2
