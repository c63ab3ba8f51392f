"""Flux.2-dev in the Flux.2 family, on a tiny random Flux2Pipeline
(genbatch.pipelines.tiny_builds.flux2): a Mistral3 encoder behind the pipeline's system
message, guidance embedded in the transformer (guidance-distilled), no negative prompt. The
prompt goes by keyword (the call's first positional argument is an image); the encoder's
hidden states are stacked from the layers the pipeline's default ``text_encoder_out_layers``
names, as for the released model, so genbatch passes nothing; caption upsampling stays off."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from family_contract import PROMPTS, SENSITIVE, check_family_contract, moves
from helpers import genbatch, ledger

from genbatch.pipelines.families import detect, family_defaults, ignored_fields
from genbatch.pipelines.families.flux2 import FLUX2
from genbatch.pipelines.tiny_builds.flux2 import DEV_OUT_LAYERS

# the tiny model's genbatch.json: the system message (172 tokens, one a character) and a prompt fit in 256
LENGTH = {"max_sequence_length": 256}
CALL = {"prompt": "a red circle", "num_inference_steps": 2, "height": 32, "width": 32, **LENGTH}


@pytest.fixture(scope="module")
def dev(tiny_family) -> Path:
    return tiny_family("flux2")


def test_the_tiny_build_responds_to_prompt_and_guidance(dev):
    call = {**CALL, "guidance_scale": 4.0}
    prompt = moves(dev, call, {"prompt": "two blue squares"})
    guidance = moves(dev, call, {"guidance_scale": 1.0})
    print(f"\nfigures: flux2 (dev) sensitivity: prompt {prompt}, guidance 4 vs 1 {guidance}")
    assert min(prompt, guidance) >= SENSITIVE


def test_dev_is_plain_diffusers(dev, tmp_path):
    assert detect(dev) is FLUX2 and ignored_fields(FLUX2, dev) == frozenset()
    check_family_contract(dev, "flux2", LENGTH, tmp_path)
    for call in (r["call"] for r in ledger(tmp_path / "batched")):
        assert call["prompt"] and "image" not in call and call["guidance_scale"] == 4.0
        assert call["max_sequence_length"] == 256
        assert not {"negative_prompt", "text_encoder_out_layers", "caption_upsample_temperature"} & set(call)


def test_the_default_text_encoder_out_layers_are_the_tiny_encoders_own(dev):
    # genbatch passes no text_encoder_out_layers: the pipeline's default must index real
    # layers of the encoder, as it does for FLUX.2-dev's 40-layer Mistral Small 3.1
    from diffusers import Flux2Pipeline

    parameters = inspect.signature(Flux2Pipeline.__call__).parameters
    assert tuple(parameters["text_encoder_out_layers"].default) == DEV_OUT_LAYERS
    layers = json.loads((dev / "text_encoder" / "config.json").read_text())["text_config"]["num_hidden_layers"]
    assert max(DEV_OUT_LAYERS) <= layers
    # caption upsampling (the encoder rewriting the prompt) is off unless a call asks for it
    assert parameters["caption_upsample_temperature"].default is None
    assert "caption_upsample_temperature" not in FLUX2.fixed


def test_a_negative_prompt_is_refused_before_anything_runs(dev, tmp_path):
    manifest = tmp_path / "prompts.csv"
    manifest.write_text("prompt,seed,negative_prompt\n" + "".join(f'{p},{s},"blurry"\n' for p, s in PROMPTS))
    result = genbatch("run", manifest, "--model", dev, "--steps", "2", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code != 0
    assert "Flux.2 takes no negative prompt" in result.output
    assert not (tmp_path / "out" / "genbatch.jsonl").exists()


def test_family_defaults_are_flux2_dev_s_own(dev, tmp_path):
    from diffusers import Flux2Pipeline

    pipe = Flux2Pipeline.from_pretrained(dev)
    size = pipe.default_sample_size * pipe.vae_scale_factor  # 128 x the tiny VAE's 2
    assert family_defaults(dev, FLUX2) == {"steps": 50, "guidance_scale": 4.0, "width": size, "height": size}
    defaults = inspect.signature(Flux2Pipeline.__call__).parameters
    assert defaults["num_inference_steps"].default == FLUX2.steps
    assert defaults["guidance_scale"].default == FLUX2.guidance_scale
    # FLUX.2-dev's own VAE downsamples 8x: 1024 px
    released = tmp_path / "flux2-dev"
    (released / "vae").mkdir(parents=True)
    (released / "transformer").mkdir()
    (released / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [128, 256, 512, 512]}))
    (released / "transformer" / "config.json").write_text(json.dumps({"in_channels": 128}))
    assert family_defaults(released, FLUX2)["width"] == 1024
    size_problem = FLUX2.hook("size_problem")
    assert size_problem(released, 1024, 768) is None
    assert "1024x1000 would come out as 1024x992" in size_problem(released, 1024, 1000)
