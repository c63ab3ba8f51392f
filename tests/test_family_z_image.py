"""Z-Image as a first-class family, on a tiny random ZImagePipeline
(genbatch.pipelines.tiny_builds.z_image): classifier-free guidance with a negative prompt,
guided at any guidance above 0; no negative prompt is the empty one; sizes in multiples of
the VAE's downsampling x 2x2 patches, or the pipeline raises."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from family_contract import SENSITIVE, check_family_contract, moves
from helpers import ledger

from genbatch.pipelines.families import detect, family_defaults, job_negative
from genbatch.pipelines.families.z_image import Z_IMAGE, size_problem

LENGTH = {"max_sequence_length": 64}  # the tiny model's genbatch.json: its prompts fit in 64 tokens


@pytest.fixture(scope="module")
def z_image(tiny_family) -> Path:
    return tiny_family("z-image")


def test_z_image_is_plain_diffusers(z_image, tmp_path):
    check_family_contract(z_image, "z-image", LENGTH, tmp_path)
    for call in (r["call"] for r in ledger(tmp_path / "batched")):
        assert call["guidance_scale"] == 4.0 and call["max_sequence_length"] == 64


def test_z_image_with_a_negative_prompt_is_plain_diffusers(z_image, tmp_path):
    extra = {**LENGTH, "negative_prompt": "ugly"}
    check_family_contract(z_image, "z-image", extra, tmp_path, columns=",negative_prompt", cells=(",ugly",) * 3)
    assert {r["call"]["negative_prompt"] for r in ledger(tmp_path / "batched")} == {"ugly"}


def test_the_tiny_build_responds_to_prompt_negative_prompt_and_guidance(z_image):
    call = {"prompt": "a red circle", "num_inference_steps": 2, "height": 32, "width": 32, "guidance_scale": 4.0}
    call.update(LENGTH)
    prompt = moves(z_image, call, {"prompt": "two blue squares"})
    negative = moves(z_image, call, {"negative_prompt": "ugly"})
    guidance = moves(z_image, call, {"guidance_scale": 1.0})
    print(f"\nfigures: z-image sensitivity: prompt {prompt}, negative prompt {negative}, guidance 4 vs 1 {guidance}")
    assert min(prompt, negative, guidance) >= SENSITIVE
    # no negative prompt is the empty one (so a job keeps "", as genbatch always has)
    assert moves(z_image, call, {"negative_prompt": ""}) == 0
    assert job_negative(z_image, None) == ""


def test_sizes_the_pipeline_refuses_are_a_size_problem(z_image):
    from diffusers import ZImagePipeline

    assert size_problem(z_image, 32, 64) is None  # the tiny VAE: 2x downsampling x 2x2 patches = 4
    assert size_problem(z_image, 32, 30) == "Z-Image makes sizes in multiples of 4 only; 32x30 is not"
    pipe = ZImagePipeline.from_pretrained(z_image)
    with pytest.raises(ValueError, match="divisible by 4"):
        pipe(prompt="a red circle", height=30, width=32, num_inference_steps=1, **LENGTH)


def test_family_defaults_are_the_pipelines_and_the_model_cards(z_image):
    from diffusers import ZImagePipeline

    assert detect(z_image) is Z_IMAGE
    # the pipeline makes 1024x1024 when no size is given, whatever its configs say
    assert "height = height or 1024" in inspect.getsource(ZImagePipeline.__call__)
    assert family_defaults(z_image, Z_IMAGE) == {"steps": 50, "guidance_scale": 4.0, "width": 1024, "height": 1024}
