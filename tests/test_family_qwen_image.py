"""Qwen-Image as a first-class family, on a tiny random QwenImagePipeline
(genbatch.pipelines.tiny_builds.qwen_image): with no negative prompt the call is plain
diffusers' default call (no true CFG: Qwen-Image turns it on for any negative prompt that
is not None); with a negative prompt, ``true_cfg_scale`` is the guidance that counts, a
manifest column passed through and part of the job key; ``guidance_scale`` is left out of
the call unless the transformer embeds guidance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from family_contract import SENSITIVE, check_family_contract, moves
from helpers import genbatch, ledger

from genbatch.pipelines.families import detect, family_defaults, ignored_fields
from genbatch.pipelines.families.qwen_image import QWEN_IMAGE, ignores, size_problem


@pytest.fixture(scope="module")
def qwen(tiny_family) -> Path:
    return tiny_family("qwen-image")


def test_without_a_negative_prompt_genbatch_is_plain_diffusers_default_call(qwen, tmp_path):
    figures = check_family_contract(qwen, "qwen-image", {}, tmp_path)
    calls = [r["call"] for r in ledger(tmp_path / "batched")]
    # no negative prompt (None, not ""), no true_cfg_scale, no guidance_scale the model ignores
    assert all("negative_prompt" not in c and "true_cfg_scale" not in c and "guidance_scale" not in c for c in calls)
    assert figures["batch"] <= 1 and figures["plain"] <= 2


def test_a_negative_prompt_and_true_cfg_scale_are_plain_diffusers_true_cfg(qwen, tmp_path):
    extra = {"negative_prompt": "ugly", "true_cfg_scale": 3.0}
    check_family_contract(
        qwen, "qwen-image", extra, tmp_path, columns=",negative_prompt,true_cfg_scale", cells=(",ugly,3.0",) * 3
    )
    for call in (r["call"] for r in ledger(tmp_path / "batched")):
        assert call["negative_prompt"] == "ugly" and call["true_cfg_scale"] == 3.0 and "guidance_scale" not in call


def test_the_tiny_build_responds_to_prompt_negative_prompt_and_true_cfg(qwen):
    call = {"prompt": "a red circle", "num_inference_steps": 2, "height": 64, "width": 64}
    prompt = moves(qwen, call, {"prompt": "two blue squares"})
    negative = moves(qwen, call, {"negative_prompt": "ugly"})  # true CFG on, at the pipeline's 4.0
    true_cfg = moves(qwen, {**call, "negative_prompt": "ugly", "true_cfg_scale": 4.0}, {"true_cfg_scale": 2.0})
    print(f"\nfigures: qwen-image sensitivity: prompt {prompt}, negative prompt {negative}, true_cfg 2 vs 4 {true_cfg}")
    assert min(prompt, negative, true_cfg) >= SENSITIVE


def test_true_cfg_scale_is_in_the_job_key(qwen, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text(
        "prompt,seed,negative_prompt,true_cfg_scale\na red circle,1,ugly,2\na red circle,1,ugly,4\n", encoding="utf-8"
    )
    result = genbatch("run", manifest, "--model", qwen, "--out", tmp_path / "o", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)["jobs"]
    assert [j["true_cfg_scale"] for j in jobs] == [2.0, 4.0]
    assert jobs[0]["key"] != jobs[1]["key"]


def test_guidance_scale_counts_only_for_a_guidance_distilled_transformer(qwen, tmp_path):
    assert ignored_fields(QWEN_IMAGE, qwen) == frozenset({"guidance_scale"})
    distilled = tmp_path / "distilled"
    (distilled / "transformer").mkdir(parents=True)
    (distilled / "transformer" / "config.json").write_text(json.dumps({"guidance_embeds": True}))
    assert ignores(distilled) == frozenset()


def test_family_default_size_is_the_pipelines_default(qwen, tmp_path):
    # the pipeline's own default: default_sample_size (128) x its VAE factor, 2 ** len(temperal_downsample)
    from diffusers import QwenImagePipeline

    assert detect(qwen) is QWEN_IMAGE
    pipe = QwenImagePipeline.from_pretrained(qwen)
    size = pipe.default_sample_size * pipe.vae_scale_factor
    assert size == 1024  # the tiny VAE downsamples as Qwen-Image's does
    defaults = family_defaults(qwen, QWEN_IMAGE)
    assert (defaults["width"], defaults["height"]) == (size, size)
    assert (defaults["steps"], defaults["guidance_scale"]) == (50, 1.0)


def test_sizes_the_pipeline_rounds_down_are_a_size_problem(qwen):
    from diffusers import QwenImagePipeline

    pipe = QwenImagePipeline.from_pretrained(qwen)
    pipe.set_progress_bar_config(disable=True)
    assert size_problem(qwen, 64, 32) is None
    assert size_problem(qwen, 64, 40) == (
        "Qwen-Image makes sizes in multiples of 16 (its VAE's downsampling x 2x2 patches): "
        "64x40 would come out as 64x32"
    )
    assert "is smaller than that" in size_problem(qwen, 8, 64)
    # as the pipeline does
    image = pipe(prompt="a red circle", width=64, height=40, num_inference_steps=1, output_type="np").images[0]
    assert image.shape[:2] == (32, 64)
