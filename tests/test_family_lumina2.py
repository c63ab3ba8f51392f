"""Lumina 2 (Lumina2Pipeline) as a first-class family: a Gemma2 encoder behind the pipeline's
system prompt, classifier-free guidance renormalised (cfg_normalization) with a negative
prompt. The family contract with and without a negative prompt column, on a tiny build that
responds to its prompt, negative prompt and guidance; its defaults and sizes."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from family_contract import SENSITIVE, check_family_contract, moves

from genbatch.pipelines.families import BY_NAME, detect, empty_negative_matters, family_defaults
from genbatch.pipelines.families.lumina2 import size_problem

NEGATIVE = "blurry, ugly"


@pytest.fixture(scope="module")
def lumina2(tiny_family) -> Path:
    return tiny_family("lumina2")


def test_the_tiny_build_responds_to_prompt_negative_prompt_and_guidance(lumina2):
    # the tiny model runs at the pipeline's max_sequence_length (256): its system prompt and a
    # prompt fit in it, one token a character
    assert "max_sequence_length" not in json.loads((lumina2 / "genbatch.json").read_text())
    call = {"prompt": "a red circle", "num_inference_steps": 2, "width": 32, "height": 32, "guidance_scale": 4.0}
    prompt = moves(lumina2, call, {"prompt": "two blue squares"})
    negative = moves(lumina2, call, {"negative_prompt": NEGATIVE})
    guidance = moves(lumina2, call, {"guidance_scale": 6.0})
    none_vs_empty = moves(lumina2, call, {"negative_prompt": ""})
    print(f"\nfigures: lumina2: prompt {prompt}, negative {negative}, guidance {guidance}, none vs '' {none_vs_empty}")
    assert min(prompt, negative, guidance) >= SENSITIVE
    # no negative prompt is the empty one (the pipeline encodes "" for None)
    assert none_vs_empty == 0
    assert not BY_NAME["lumina2"].none_negative_differs and not empty_negative_matters(lumina2, BY_NAME["lumina2"])


def test_family_contract(lumina2, tmp_path):
    check_family_contract(lumina2, "lumina2", {}, tmp_path)


def test_family_contract_with_a_negative_prompt_column(lumina2, tmp_path):
    cells = (f',"{NEGATIVE}"',) * 3
    check_family_contract(
        lumina2, "lumina2", {"negative_prompt": NEGATIVE}, tmp_path, columns=",negative_prompt", cells=cells
    )


def test_defaults_are_lumina_image_2_s_own(lumina2, tmp_path):
    from diffusers import DiffusionPipeline, Lumina2Pipeline

    # a folder shaped like Alpha-VLLM/Lumina-Image-2.0 (configs only)
    released = tmp_path / "lumina-image-2"
    (released / "vae").mkdir(parents=True)
    (released / "transformer").mkdir()
    index = {"_class_name": "Lumina2Pipeline"}
    index.update({c: ["diffusers", "X"] for c in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")})
    (released / "model_index.json").write_text(json.dumps(index))
    (released / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [128, 256, 512, 512]}))
    (released / "transformer" / "config.json").write_text(json.dumps({"sample_size": 128}))
    family = detect(released)
    assert family.name == "lumina2"
    # 50 steps at guidance 4 (the model card), 1024 px: the transformer's sample size x 8
    assert family_defaults(released, family) == {"steps": 50, "guidance_scale": 4.0, "width": 1024, "height": 1024}
    pipe = DiffusionPipeline.from_pretrained(lumina2)
    assert family_defaults(lumina2, family)["width"] == pipe.default_image_size == 32
    # what genbatch leaves at the pipeline's own: CFG renormalised on every step
    defaults = inspect.signature(Lumina2Pipeline.__call__).parameters
    assert defaults["cfg_normalization"].default is True and defaults["cfg_trunc_ratio"].default == 1.0
    assert not {"cfg_normalization", "cfg_trunc_ratio", "system_prompt"} & set(family.fixed)


def test_a_size_that_is_not_a_multiple_of_16_is_a_problem(lumina2):
    assert size_problem(lumina2, 1024, 768) is None
    assert "multiples of 16" in size_problem(lumina2, 1000, 768)
    assert size_problem(lumina2, 32, 40) is not None
    assert BY_NAME["lumina2"].hook("size_problem") is size_problem
    # and the pipeline does refuse it
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(lumina2)
    with pytest.raises(ValueError, match="divisible by 16"):
        pipe(prompt="a red circle", num_inference_steps=1, width=32, height=40)
