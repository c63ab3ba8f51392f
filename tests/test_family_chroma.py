"""Chroma (ChromaPipeline) as a first-class family: a T5 encoder, real classifier-free guidance
with a negative prompt. The family contract with and without a negative prompt column, on a
tiny build that responds to its prompt, negative prompt and guidance; its defaults and sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from family_contract import SENSITIVE, check_family_contract, moves

from genbatch.pipelines.families import BY_NAME, detect, empty_negative_matters, family_defaults
from genbatch.pipelines.families.chroma import size_problem

EXTRA = {"max_sequence_length": 64}  # the tiny model's genbatch.json (its T5 tokens are characters)
NEGATIVE = "blurry, ugly"


@pytest.fixture(scope="module")
def chroma(tiny_family) -> Path:
    return tiny_family("chroma")


def test_the_tiny_build_responds_to_prompt_negative_prompt_and_guidance(chroma):
    call = {"prompt": "a red circle", "num_inference_steps": 2, "width": 32, "height": 32, "guidance_scale": 3.0}
    call.update(EXTRA)
    prompt = moves(chroma, call, {"prompt": "two blue squares"})
    negative = moves(chroma, call, {"negative_prompt": NEGATIVE})
    guidance = moves(chroma, call, {"guidance_scale": 5.0})
    none_vs_empty = moves(chroma, call, {"negative_prompt": ""})
    print(f"\nfigures: chroma: prompt {prompt}, negative {negative}, guidance {guidance}, none vs '' {none_vs_empty}")
    assert min(prompt, negative, guidance) >= SENSITIVE
    # no negative prompt is the empty one (the pipeline encodes "" for None)
    assert none_vs_empty == 0
    assert not BY_NAME["chroma"].none_negative_differs and not empty_negative_matters(chroma, BY_NAME["chroma"])


def test_family_contract(chroma, tmp_path):
    check_family_contract(chroma, "chroma", EXTRA, tmp_path)


def test_family_contract_with_a_negative_prompt_column(chroma, tmp_path):
    cells = (f',"{NEGATIVE}"',) * 3
    check_family_contract(
        chroma, "chroma", {**EXTRA, "negative_prompt": NEGATIVE}, tmp_path, columns=",negative_prompt", cells=cells
    )


def _released_shape(folder: Path) -> Path:
    """A folder shaped like lodestones/Chroma1-HD (configs only): a 4-level VAE, a transformer
    config without sample_size."""
    (folder / "vae").mkdir(parents=True)
    (folder / "transformer").mkdir()
    index = {"_class_name": "ChromaPipeline"}
    index.update({c: ["diffusers", "X"] for c in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")})
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [128, 256, 512, 512]}))
    (folder / "transformer" / "config.json").write_text(json.dumps({"in_channels": 64}))
    return folder


def test_defaults_are_chroma1_hd_s_own(chroma, tmp_path):
    from diffusers import DiffusionPipeline

    released = _released_shape(tmp_path / "chroma1-hd")
    family = detect(released)
    assert family.name == "chroma"
    # 40 steps at guidance 3 (Chroma1-HD's example), 1024 px: default_sample_size 128 x the VAE's 8
    assert family_defaults(released, family) == {"steps": 40, "guidance_scale": 3.0, "width": 1024, "height": 1024}
    pipe = DiffusionPipeline.from_pretrained(chroma)
    assert pipe.default_sample_size == family.sample_size
    assert family_defaults(chroma, family)["width"] == family.sample_size * pipe.vae_scale_factor


def test_a_size_that_is_not_a_multiple_of_the_packed_latents_is_a_problem(chroma, tmp_path):
    released = _released_shape(tmp_path / "chroma1-hd")
    assert size_problem(released, 1024, 768) is None
    assert "1000x768 would come out as 992x768" in size_problem(released, 1000, 768)
    assert "multiples of 16" in size_problem(released, 1024, 1000)
    assert "smaller" in size_problem(released, 8, 1024)
    assert size_problem(chroma, 36, 32) is None  # the tiny VAE downsamples 2x: multiples of 4
    assert BY_NAME["chroma"].hook("size_problem") is size_problem
