"""HiDream-I1 (HiDreamImagePipeline) as a first-class family: two CLIP encoders, T5 and Llama,
each given the row's prompt (prompt_2..4 left to the pipeline, which uses the same one), real
classifier-free guidance. HiDream rescales every size to its default area: a size it would not
make as asked is refused with the size it would make. The family contract at the tiny build's
own size, on a build that responds to its prompt, negative prompt and guidance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from family_contract import SENSITIVE, check_family_contract, moves
from helpers import genbatch

from genbatch.pipelines.families import BY_NAME, detect, empty_negative_matters, family_defaults
from genbatch.pipelines.families.hidream import made_size, size_problem

EXTRA = {"max_sequence_length": 32}  # the tiny model's genbatch.json
NEGATIVE = "blurry, ugly"
SIZE = 128  # the tiny build's area: default_sample_size 128 x its VAE's factor 1


@pytest.fixture(scope="module")
def hidream(tiny_family) -> Path:
    return tiny_family("hidream")


def test_the_tiny_build_responds_to_prompt_negative_prompt_and_guidance(hidream):
    call = {"prompt": "a red circle", "num_inference_steps": 2, "width": SIZE, "height": SIZE, "guidance_scale": 5.0}
    call.update(EXTRA)
    prompt = moves(hidream, call, {"prompt": "two blue squares"})
    negative = moves(hidream, call, {"negative_prompt": NEGATIVE})
    guidance = moves(hidream, call, {"guidance_scale": 2.0})
    none_vs_empty = moves(hidream, call, {"negative_prompt": ""})
    print(f"\nfigures: hidream moves: prompt {prompt}, negative {negative}, guidance {guidance}, '' {none_vs_empty}")
    assert min(prompt, negative, guidance) >= SENSITIVE
    # no negative prompt is the empty one (encode_prompt uses "" for None)
    assert none_vs_empty == 0
    assert not empty_negative_matters(hidream, BY_NAME["hidream"])


def test_family_contract(hidream, tmp_path):
    check_family_contract(hidream, "hidream", EXTRA, tmp_path)
    record = json.loads((tmp_path / "batched" / "genbatch.jsonl").read_text().splitlines()[0])
    # one prompt for the four encoders, as plain diffusers' default call gives it
    assert not {"prompt_2", "prompt_3", "prompt_4"} & set(record["call"])
    assert (record["call"]["width"], record["call"]["height"]) == (SIZE, SIZE)


def test_family_contract_with_a_negative_prompt_column(hidream, tmp_path):
    cells = (f',"{NEGATIVE}"',) * 3
    check_family_contract(
        hidream, "hidream", {**EXTRA, "negative_prompt": NEGATIVE}, tmp_path, columns=",negative_prompt", cells=cells
    )


def _released_shape(folder: Path) -> Path:
    """A folder shaped like HiDream-ai/HiDream-I1-Full (configs only): a 4-level VAE, a
    transformer of 2x2 patches and max_resolution 128x128, no sample_size."""
    (folder / "vae").mkdir(parents=True)
    (folder / "transformer").mkdir()
    index = {"_class_name": "HiDreamImagePipeline"}
    index.update({c: ["diffusers", "X"] for c in BY_NAME["hidream"].components})
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [128, 256, 512, 512]}))
    transformer = {"patch_size": 2, "max_resolution": [128, 128], "in_channels": 16}
    (folder / "transformer" / "config.json").write_text(json.dumps(transformer))
    return folder


def test_defaults_are_hidream_i1_full_s(tmp_path):
    released = _released_shape(tmp_path / "hidream-i1-full")
    family = detect(released)
    assert family.name == "hidream"
    assert family_defaults(released, family) == {"steps": 50, "guidance_scale": 5.0, "width": 1024, "height": 1024}


def test_sizes_hidream_would_rescale_are_refused_with_the_size_it_would_make(tmp_path):
    released = _released_shape(tmp_path / "hidream-i1-full")
    # the sizes HiDream recommends come out as asked
    for width, height in ((1024, 1024), (768, 1360), (1360, 768), (880, 1168), (1168, 880), (1248, 832), (832, 1248)):
        assert size_problem(released, width, height) is None, (width, height)
    assert "512x512 would come out 1024x1024; ask for 1024x1024" in size_problem(released, 512, 512)
    assert "1920x1080 would come out 1360x768; ask for 1360x768 or 1024x1024" in size_problem(released, 1920, 1080)
    assert "area of 1024x1024" in size_problem(released, 1000, 1000)
    assert "multiple of 16" in size_problem(released, 1000, 1000)
    assert BY_NAME["hidream"].hook("size_problem") is size_problem


def test_the_size_arithmetic_is_the_pipeline_s(hidream):
    """made_size gives what the pipeline makes (tiny: VAE factor 1, area 128x128, patches of 8)."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(hidream)
    pipe.set_progress_bar_config(disable=True)
    assert "64x264 would come out 62x258" in size_problem(hidream, 64, 264)
    asked = (60, 240)
    assert made_size(*asked, pipe.vae_scale_factor) == (64, 256)
    image = pipe(
        prompt="a cross",
        width=asked[0],
        height=asked[1],
        num_inference_steps=1,
        guidance_scale=1.0,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(1),
        **EXTRA,
    ).images[0]
    assert image.shape[:2] == (256, 64)  # height, width
    assert size_problem(hidream, 64, 256) is None and size_problem(hidream, SIZE, SIZE) is None
    assert "cannot be made" in size_problem(hidream, 94, 174)  # kept by the pipeline, not whole patches


def test_a_run_at_a_size_hidream_would_rescale_is_refused_before_any_image(hidream, tmp_path):
    manifest = tmp_path / "p.txt"
    manifest.write_text("a red circle\n", encoding="utf-8")
    run = genbatch("run", manifest, "--model", hidream, "--width", "64", "--height", "64", "--out", tmp_path / "o")
    assert run.exit_code == 2, run.output
    assert "64x64 would come out 128x128" in run.output
    assert not (tmp_path / "o" / "genbatch.jsonl").exists()
