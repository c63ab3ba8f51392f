"""HunyuanImage 2.1 (HunyuanImagePipeline) as a first-class family: a Qwen2.5-VL encoder, a ByT5
encoder for quoted text, and guider components. The base model is guided by its folder's guider
(a row's guidance_scale is ignored: no call argument carries a guider, so a ledger line's call
could not give the image again); the distilled model embeds guidance, which a row's
guidance_scale sets as ``distilled_guidance_scale``. The family contract for both, on tiny
builds that respond to their prompt, negative prompt, quoted text and guidance; a batch that
mixes prompts with and without quoted text (which the pipeline guides apart) equals single
images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import family_contract
import numpy as np
import pytest
from family_contract import SENSITIVE, check_family_contract, moves
from helpers import genbatch, ledger, pixels

from genbatch.pipelines.families import BY_NAME, detect, empty_negative_matters, family_defaults, ignored_fields
from genbatch.pipelines.families.hunyuan_image import size_problem
from genbatch.pipelines.tiny_builds.hunyuan_image import build_hunyuan_image

NEGATIVE = "blurry, ugly"
QUOTED = "a sign that says 'hello'"


@pytest.fixture(scope="module")
def hunyuan(tiny_family) -> Path:
    return tiny_family("hunyuan-image")


@pytest.fixture(scope="module")
def distilled(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "hunyuan-image-distilled"
    build_hunyuan_image(folder, distilled=True)
    return folder


def plain_diffusers(distilled: bool):
    """``family_contract.diffusers_images`` for HunyuanImagePipeline, which takes no
    guidance_scale: plain diffusers' default call (the folder's guider guides), and for the
    distilled model the record's guidance_scale as ``distilled_guidance_scale``."""

    def images(folder: Path, records: list[dict], extra: dict[str, Any], device: str = "cpu") -> dict[int, np.ndarray]:
        import torch
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(folder).to(device)
        pipe.set_progress_bar_config(disable=True)
        found = {}
        for r in records:
            guidance = {"distilled_guidance_scale": r["guidance_scale"]} if distilled else {}
            out = pipe(
                prompt=r["prompt"],
                num_inference_steps=r["steps"],
                height=r["height"],
                width=r["width"],
                generator=torch.Generator("cpu").manual_seed(r["seed"]),
                output_type="np",
                **guidance,
                **extra,
            )
            found[r["seed"]] = (out.images[0] * 255).round().astype(np.int16)
        return found

    return images


def test_the_tiny_build_responds_to_prompt_negative_prompt_and_quoted_text(hunyuan):
    call = {"prompt": "a red circle", "num_inference_steps": 2, "width": 32, "height": 32}
    prompt = moves(hunyuan, call, {"prompt": "two blue squares"})
    negative = moves(hunyuan, call, {"negative_prompt": NEGATIVE})
    quoted = moves(hunyuan, {**call, "prompt": "a sign that says hello"}, {"prompt": QUOTED})
    none_vs_empty = moves(hunyuan, call, {"negative_prompt": ""})
    print(f"\nfigures: hunyuan-image moves: prompt {prompt}, negative {negative}, quoted {quoted}, '' {none_vs_empty}")
    assert min(prompt, negative, quoted) >= SENSITIVE
    # no negative prompt is the empty one (encode_prompt encodes "" for None)
    assert none_vs_empty == 0
    assert not empty_negative_matters(hunyuan, BY_NAME["hunyuan-image"])


def test_the_guider_guides_the_base_model_and_a_row_s_guidance_is_ignored(hunyuan, tmp_path):
    """The folder's guider is what guides (diffusers' documented way to change it is
    ``pipe.guider.new(guidance_scale=...)``, i.e. the folder's guider config); genbatch records
    its guidance_scale as the job's and says a row's own is ignored."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(hunyuan)
    pipe.set_progress_bar_config(disable=True)

    def image() -> np.ndarray:
        out = pipe(prompt="a red circle", num_inference_steps=2, width=32, height=32, output_type="np",
                   generator=torch.Generator("cpu").manual_seed(11))  # fmt: skip
        return (out.images[0] * 255).round()

    guided = image()
    pipe.guider = pipe.guider.new(guidance_scale=1.5)
    assert np.abs(guided - image()).max() >= SENSITIVE
    assert ignored_fields(BY_NAME["hunyuan-image"], hunyuan) == {"guidance_scale"}
    defaults = family_defaults(hunyuan, BY_NAME["hunyuan-image"])
    assert (
        defaults["guidance_scale"]
        == 3.5
        == json.loads((hunyuan / "guider" / "guider_config.json").read_text())["guidance_scale"]
    )
    manifest = tmp_path / "p.txt"
    manifest.write_text("a red circle\n", encoding="utf-8")
    run = genbatch("run", manifest, "--model", hunyuan, "--guidance", "5", "--out", tmp_path / "o", "--dry-run")
    assert run.exit_code == 0, run.output
    assert "guidance_scale is ignored: the distilled model's embedded guidance" in run.stderr


def test_family_contract(hunyuan, tmp_path, monkeypatch):
    monkeypatch.setattr(family_contract, "diffusers_images", plain_diffusers(distilled=False))
    check_family_contract(hunyuan, "hunyuan-image", {}, tmp_path)
    record = ledger(tmp_path / "batched")[0]
    assert not {"guidance_scale", "distilled_guidance_scale", "max_sequence_length"} & set(record["call"])


def test_family_contract_with_a_negative_prompt_column(hunyuan, tmp_path, monkeypatch):
    monkeypatch.setattr(family_contract, "diffusers_images", plain_diffusers(distilled=False))
    cells = (f',"{NEGATIVE}"',) * 3
    check_family_contract(
        hunyuan, "hunyuan-image", {"negative_prompt": NEGATIVE}, tmp_path, columns=",negative_prompt", cells=cells
    )


def test_a_batch_of_prompts_with_and_without_quoted_text_equals_single_images(hunyuan, tmp_path):
    """The pipeline guides a whole call with its OCR guider when any prompt has quoted text (the
    tiny build's OCR guider never reaches adaptive projected guidance, its guider does):
    genbatch calls such prompts apart."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(hunyuan)
    pipe.set_progress_bar_config(disable=True)
    prompts, seeds = [QUOTED, "a red circle"], [11, 12]

    def run(prompts: list[str], seeds: list[int]) -> np.ndarray:
        out = pipe(prompt=prompts, num_inference_steps=2, width=32, height=32, output_type="np",
                   generator=[torch.Generator("cpu").manual_seed(s) for s in seeds])  # fmt: skip
        return (out.images * 255).round()

    mixed = run(prompts, seeds)[1]
    alone = run(prompts[1:], seeds[1:])[0]
    assert np.abs(mixed - alone).max() >= SENSITIVE  # plain diffusers: the batch changes the image

    manifest = tmp_path / "p.csv"
    manifest.write_text(
        "prompt,seed\n" + "".join(f'"{p}",{s}\n' for p, s in zip(prompts, seeds)) + "a blue square,13\n",
        encoding="utf-8",
    )
    found = {}
    for size in ("3", "1"):
        out = tmp_path / f"batch{size}"
        result = genbatch("run", manifest, "--model", hunyuan, "--steps", "2", "--batch-size", size, "--out", out)
        assert result.exit_code == 0, result.output
        found[size] = {r["seed"]: pixels(out / r["file"]) for r in ledger(out)}
    assert max(int(np.abs(found["3"][s] - found["1"][s]).max()) for s in (11, 12, 13)) <= 1
    assert np.abs(found["1"][12] - alone).max() <= 2


def test_the_distilled_model_takes_guidance_as_distilled_guidance_scale(distilled, tmp_path, monkeypatch):
    family = detect(distilled)
    assert family.name == "hunyuan-image"
    assert ignored_fields(family, distilled) == {"negative_prompt"}  # no guider: nothing guides against it
    call = {"prompt": "a red circle", "num_inference_steps": 2, "width": 32, "height": 32}
    guidance = moves(distilled, {**call, "distilled_guidance_scale": 3.25}, {"distilled_guidance_scale": 1.0})
    prompt = moves(distilled, call, {"prompt": "two blue squares"})
    print(f"\nfigures: hunyuan-image distilled moves: prompt {prompt}, distilled guidance {guidance}")
    assert min(prompt, guidance) >= SENSITIVE
    monkeypatch.setattr(family_contract, "diffusers_images", plain_diffusers(distilled=True))
    check_family_contract(distilled, "hunyuan-image", {}, tmp_path, run_args=("--guidance", "2"))
    record = ledger(tmp_path / "batched")[0]
    assert record["call"]["distilled_guidance_scale"] == record["guidance_scale"] == 2.0


def _released_shape(folder: Path, *, distilled: bool) -> Path:
    """A folder shaped like hunyuanvideo-community/HunyuanImage-2.1(-Distilled)-Diffusers
    (configs only): a VAE of 32x downsampling, a transformer of 1x1 patches, the base model's
    guiders (guidance_scale 3.5) or the distilled one's embedded guidance."""
    for part in ("vae", "transformer", "guider"):
        (folder / part).mkdir(parents=True)
    index: dict[str, Any] = {"_class_name": "HunyuanImagePipeline"}
    index.update({c: ["diffusers", "X"] for c in BY_NAME["hunyuan-image"].components})
    index["guider"] = [None, None] if distilled else ["diffusers", "AdaptiveProjectedMixGuidance"]
    (folder / "model_index.json").write_text(json.dumps(index))
    vae = {"block_out_channels": [128, 256, 512, 512, 1024, 1024], "spatial_compression_ratio": 32}
    (folder / "vae" / "config.json").write_text(json.dumps(vae))
    transformer = {"patch_size": [1, 1], "guidance_embeds": distilled, "use_meanflow": distilled}
    (folder / "transformer" / "config.json").write_text(json.dumps(transformer))
    if not distilled:
        (folder / "guider" / "guider_config.json").write_text(json.dumps({"guidance_scale": 3.5}))
    return folder


def test_defaults_are_the_released_models_own(tmp_path):
    base = _released_shape(tmp_path / "base", distilled=False)
    fast = _released_shape(tmp_path / "distilled", distilled=True)
    family = detect(base)
    assert family.name == "hunyuan-image" and detect(fast) is family
    assert family_defaults(base, family) == {"steps": 50, "guidance_scale": 3.5, "width": 2048, "height": 2048}
    assert family_defaults(fast, family) == {"steps": 8, "guidance_scale": 3.25, "width": 2048, "height": 2048}


def test_a_size_that_is_not_a_multiple_of_the_vae_downsampling_is_a_problem(hunyuan, tmp_path):
    released = _released_shape(tmp_path / "base", distilled=False)
    assert size_problem(released, 2048, 2048) is None and size_problem(released, 2560, 1536) is None
    assert "multiples of 32" in size_problem(released, 2000, 2048)
    assert "2000x2048 would come out 1984x2048" in size_problem(released, 2000, 2048)
    assert "smaller" in size_problem(released, 16, 2048)
    assert size_problem(hunyuan, 34, 30) is None  # the tiny VAE downsamples 2x
    assert "33x31 would come out 32x30" in size_problem(hunyuan, 33, 31)
    assert BY_NAME["hunyuan-image"].hook("size_problem") is size_problem


def test_a_negative_prompt_the_distilled_model_ignores_is_said_and_left_out_of_the_call(distilled, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,negative_prompt\na red circle,blurry\n", encoding="utf-8")
    said = "the negative prompt is ignored: this model runs no guidance that uses one"
    assert said in genbatch("validate", manifest, "--model", distilled).stderr
    run = genbatch("run", manifest, "--model", distilled, "--steps", "1", "--out", tmp_path / "o")
    assert run.exit_code == 0, run.output
    assert run.stderr.count(said) == 1
    assert "negative_prompt" not in ledger(tmp_path / "o")[0]["call"]
