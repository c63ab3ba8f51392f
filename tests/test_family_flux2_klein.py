"""Flux.2-klein in the Flux.2 family, on a tiny random Flux2KleinPipeline
(genbatch.pipelines.tiny_builds.flux2): the prompt goes by keyword (the call's first
positional argument is an image); its encoder's hidden states are stacked from the layers the
pipeline's default ``text_encoder_out_layers`` names, as for the released models, so genbatch
passes nothing; the base model guides against an empty prompt, a step-distilled one
(``is_distilled``) ignores guidance and its call leaves it out."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pytest
from family_contract import SENSITIVE, check_family_contract, moves
from helpers import ledger

from genbatch.pipelines.families import detect, family_defaults, ignored_fields
from genbatch.pipelines.families.chroma import size_problem
from genbatch.pipelines.families.flux2 import FLUX2
from genbatch.pipelines.tiny_builds.flux2 import KLEIN_OUT_LAYERS

LENGTH = {"max_sequence_length": 64}  # the tiny model's genbatch.json: its prompts fit in 64 tokens
CALL = {"prompt": "a red circle", "num_inference_steps": 2, "height": 32, "width": 32, **LENGTH}


@pytest.fixture(scope="module")
def klein(tiny_family) -> Path:
    return tiny_family("flux2-klein")


@pytest.fixture(scope="module")
def distilled(klein, tmp_path_factory) -> Path:
    """The same weights as a step-distilled klein: what FLUX.2-klein-4B's model_index.json says."""
    folder = tmp_path_factory.mktemp("klein") / "flux2-klein-distilled"
    shutil.copytree(klein, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "is_distilled": True}))
    own = json.loads((folder / "genbatch.json").read_text())
    (folder / "genbatch.json").write_text(json.dumps({**own, "guidance_scale": 1.0}))
    return folder


def test_klein_is_plain_diffusers(klein, tmp_path):
    check_family_contract(klein, "flux2", LENGTH, tmp_path)
    for call in (r["call"] for r in ledger(tmp_path / "batched")):
        assert call["prompt"] and "image" not in call and call["guidance_scale"] == 4.0
        assert "text_encoder_out_layers" not in call and "negative_prompt" not in call


def test_distilled_klein_is_plain_diffusers_and_ignores_guidance(distilled, tmp_path):
    assert ignored_fields(FLUX2, distilled) == frozenset({"guidance_scale"})
    check_family_contract(distilled, "flux2", LENGTH, tmp_path, run_args=("--guidance", "3"))
    assert all("guidance_scale" not in r["call"] for r in ledger(tmp_path / "batched"))
    assert moves(distilled, {**CALL, "guidance_scale": 4.0}, {"guidance_scale": 1.0}) == 0


def test_the_tiny_build_responds_to_prompt_and_guidance(klein):
    assert ignored_fields(FLUX2, klein) == frozenset()
    call = {**CALL, "guidance_scale": 4.0}
    prompt = moves(klein, call, {"prompt": "two blue squares"})
    guidance = moves(klein, call, {"guidance_scale": 1.0})
    print(f"\nfigures: flux2-klein sensitivity: prompt {prompt}, guidance 4 vs 1 {guidance}")
    assert min(prompt, guidance) >= SENSITIVE


def test_the_default_text_encoder_out_layers_are_the_tiny_encoders_own(klein):
    # genbatch passes no text_encoder_out_layers: the pipeline's default must index real
    # layers of the encoder, as it does for the released models' 36-layer Qwen3
    from diffusers import Flux2KleinPipeline

    default = inspect.signature(Flux2KleinPipeline.__call__).parameters["text_encoder_out_layers"].default
    assert tuple(default) == KLEIN_OUT_LAYERS
    layers = json.loads((klein / "text_encoder" / "config.json").read_text())["num_hidden_layers"]
    assert max(default) <= layers


def test_a_distilled_klein_defaults_to_its_four_steps(distilled):
    assert family_defaults(distilled, FLUX2)["steps"] == 4
    assert "guidance_scale" in ignored_fields(FLUX2, distilled)


def test_family_defaults_and_sizes(klein):
    from diffusers import Flux2KleinPipeline

    assert detect(klein) is FLUX2
    pipe = Flux2KleinPipeline.from_pretrained(klein)
    size = pipe.default_sample_size * pipe.vae_scale_factor  # 128 x the tiny VAE's 2
    assert family_defaults(klein, FLUX2) == {"steps": 50, "guidance_scale": 4.0, "width": size, "height": size}
    # the pipeline rounds other sizes down to multiples of 2 x 2 (with a warning only)
    assert size_problem(klein, 32, 64) is None
    assert "would come out as 32x28" in size_problem(klein, 32, 30)
