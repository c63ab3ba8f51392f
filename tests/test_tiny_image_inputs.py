"""The tiny builds respond to every image input, in plain diffusers.

Random pipelines this small can average an input image away (a VAE's global attention, an
encoder's latents drowned in its sampling noise, a thousand image tokens averaged in one
attention), and a test that compares genbatch's image with plain diffusers' then passes
whether genbatch passed the image or not. Each test here changes one input of a plain
diffusers call (the image, the mask, the control image, strength, the ControlNet's scale,
the prompt of an edit) and asserts it moves the output by at least :data:`SENSITIVE` levels
(max |d|, 0-255), so a build that goes flat fails here first. Pipelines are chosen as
genbatch chooses them: ``AutoPipelineForImage2Image`` / ``AutoPipelineForInpainting`` /
``AutoPipelineForText2Image.from_pipe`` on the loaded text-to-image pipeline (with
``controlnet=`` a tiny ControlNet), Flux Kontext and Qwen-Image-Edit loaded as themselves.
Input images come from :mod:`image_inputs`.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from family_contract import plain_pipeline
from image_inputs import edge_image, mask_image, save_inputs, shapes_image
from PIL import Image

SENSITIVE = 8  # levels (0-255) an input must move the image by
STEPS = 2
SEED = 11
SIZES = {"sd": 64, "sdxl": 64, "sd3": 32, "flux": 32}  # each build's own size
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def image(pipe: Any, **call: Any) -> np.ndarray:
    """Plain diffusers' image of ``call`` (2 steps, seed 11 on a CPU generator) in 0-255 levels."""
    call = {"prompt": "a red circle", "num_inference_steps": STEPS, **call}
    out = pipe(**call, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
    return (out.images[0] * 255).round().astype(np.int16)


def moved(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


def quiet(pipe: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_input_images_are_deterministic_and_their_variants_differ(tmp_path):
    for make in (shapes_image, mask_image, edge_image):
        assert np.array_equal(np.asarray(make(64, 0)), np.asarray(make(64, 0)))
        assert np.abs(np.asarray(make(64, 0), dtype=np.int16) - np.asarray(make(64, 1), dtype=np.int16)).max() > 200
        assert make((48, 32), 1).size == (48, 32)
    assert shapes_image(64, 0).mode == "RGB" and mask_image(64, 0).mode == "L" and edge_image(64, 0).mode == "RGB"
    assert set(np.unique(np.asarray(mask_image(64, 2)))) == {0, 255}
    # not a flat colour: a tiny VAE normalises those away
    assert np.asarray(shapes_image(64, 0)).std(axis=(0, 1)).min() > 30
    paths = save_inputs(tmp_path / "inputs", 32, 1)
    with Image.open(paths["image"]) as saved:
        assert np.array_equal(np.asarray(saved), np.asarray(shapes_image(32, 1)))


@pytest.mark.parametrize(
    "family, pipeline",
    [
        ("sd", "StableDiffusionImg2ImgPipeline"),
        ("sdxl", "StableDiffusionXLImg2ImgPipeline"),
        ("sd3", "StableDiffusion3Img2ImgPipeline"),
        ("flux", "FluxImg2ImgPipeline"),
    ],
)
def test_img2img_responds_to_the_image_and_to_strength(tiny_family, family, pipeline):
    from diffusers import AutoPipelineForImage2Image

    pipe = quiet(AutoPipelineForImage2Image.from_pipe(plain_pipeline(tiny_family(family))))
    assert type(pipe).__name__ == pipeline
    size = SIZES[family]
    # with 2 steps, strength 0.5 runs one step and 1.0 two (0.5 to 0.99 all run the same one)
    half = image(pipe, image=shapes_image(size, 0), strength=0.5)
    other = moved(half, image(pipe, image=shapes_image(size, 1), strength=0.5))
    strength = moved(half, image(pipe, image=shapes_image(size, 0), strength=1.0))
    print(f"\nfigures: {family} img2img: another image {other}, strength 0.5 vs 1.0 {strength}")
    assert min(other, strength) >= SENSITIVE


@pytest.mark.parametrize(
    "family, pipeline",
    [
        ("sd", "StableDiffusionInpaintPipeline"),
        ("sdxl", "StableDiffusionXLInpaintPipeline"),
        ("sd3", "StableDiffusion3InpaintPipeline"),
        ("flux", "FluxInpaintPipeline"),
    ],
)
def test_inpainting_responds_to_the_mask_and_to_the_image(tiny_family, family, pipeline):
    from diffusers import AutoPipelineForInpainting

    pipe = quiet(AutoPipelineForInpainting.from_pipe(plain_pipeline(tiny_family(family))))
    assert type(pipe).__name__ == pipeline
    size = SIZES[family]
    call = {"height": size, "width": size}  # each pipeline's own default strength
    first = image(pipe, image=shapes_image(size, 0), mask_image=mask_image(size, 0), **call)
    mask = moved(first, image(pipe, image=shapes_image(size, 0), mask_image=mask_image(size, 1), **call))
    other = moved(first, image(pipe, image=shapes_image(size, 1), mask_image=mask_image(size, 0), **call))
    print(f"\nfigures: {family} inpainting: another mask {mask}, another image {other}")
    assert min(mask, other) >= SENSITIVE


@functools.cache
def _controlnet(folder: Path, flux: bool) -> Any:
    from diffusers import ControlNetModel, FluxControlNetModel

    return (FluxControlNetModel if flux else ControlNetModel).from_pretrained(folder)


@pytest.mark.parametrize(
    "family, pipeline",
    [
        ("sd", "StableDiffusionControlNetPipeline"),
        ("sdxl", "StableDiffusionXLControlNetPipeline"),
        ("flux", "FluxControlNetPipeline"),
    ],
)
def test_controlnet_responds_to_the_control_image_and_to_its_scale(tiny_family, family, pipeline):
    from diffusers import AutoPipelineForText2Image

    controlnet = _controlnet(tiny_family(f"{family}-controlnet"), family == "flux")
    base = plain_pipeline(tiny_family(family))
    pipe = quiet(AutoPipelineForText2Image.from_pipe(base, controlnet=controlnet))
    assert type(pipe).__name__ == pipeline
    size = SIZES[family]
    control = "control_image" if family == "flux" else "image"  # what each pipeline calls it
    call = {"height": size, "width": size}
    first = image(pipe, **{control: edge_image(size, 0)}, **call)
    other = moved(first, image(pipe, **{control: edge_image(size, 1)}, **call))
    scale = moved(first, image(pipe, **{control: edge_image(size, 0)}, controlnet_conditioning_scale=0.0, **call))
    print(f"\nfigures: {family} ControlNet: another control image {other}, conditioning scale 0 vs 1 {scale}")
    assert min(other, scale) >= SENSITIVE


@pytest.mark.parametrize(
    "name",
    [
        "sd-controlnet",
        "sdxl-controlnet",
        "flux-controlnet",
        "sd-ip-adapter",
        "sdxl-ip-adapter",
        "flux-kontext",
        "qwen-image-edit",
    ],
)
def test_the_image_input_builds_are_small(tiny_family, name):
    folder = tiny_family(name)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 4_000_000, f"{name}: {size} bytes"


def test_flux_kontext_responds_to_the_image_and_to_the_prompt(tiny_family):
    pipe = plain_pipeline(tiny_family("flux-kontext"))
    assert type(pipe).__name__ == "FluxKontextPipeline"
    # Kontext resizes to ~1 megapixel unless told: max_area and _auto_resize keep the build's size
    call = {"height": 32, "width": 32, "max_area": 32 * 32, "_auto_resize": False}
    first = image(pipe, image=shapes_image(32, 0), **call)
    assert first.shape == (32, 32, 3)
    other = moved(first, image(pipe, image=shapes_image(32, 1), **call))
    prompt = moved(first, image(pipe, image=shapes_image(32, 0), prompt="two blue squares", **call))
    print(f"\nfigures: flux-kontext: another image {other}, another prompt {prompt}")
    assert min(other, prompt) >= SENSITIVE


@functools.cache
def _qwen_image_edit(folder: Path) -> Any:
    """The tiny Qwen-Image-Edit as plain diffusers loads it; without torchvision (which its
    Qwen2VLProcessor needs), with the same processor made from its files."""
    from diffusers import DiffusionPipeline

    from genbatch.pipelines.tiny_builds.qwen_image_edit import processor_without_video

    if HAS_TORCHVISION:
        return quiet(DiffusionPipeline.from_pretrained(folder))
    return quiet(DiffusionPipeline.from_pretrained(folder, processor=processor_without_video(folder)))


def test_qwen_image_edit_responds_to_the_image_and_to_the_prompt(tiny_family):
    pipe = _qwen_image_edit(tiny_family("qwen-image-edit"))
    assert type(pipe).__name__ == "QwenImageEditPipeline"
    call = {"height": 64, "width": 64}
    first = image(pipe, image=shapes_image(64, 0), **call)
    assert first.shape == (64, 64, 3)
    other = moved(first, image(pipe, image=shapes_image(64, 1), **call))
    prompt = moved(first, image(pipe, image=shapes_image(64, 0), prompt="two blue squares", **call))
    print(f"\nfigures: qwen-image-edit: another image {other}, another prompt {prompt}")
    assert min(other, prompt) >= SENSITIVE


def test_qwen_image_edit_is_laid_out_as_the_released_model(tiny_family):
    import json

    folder = tiny_family("qwen-image-edit")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPipeline"
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]
    processor = json.loads((folder / "processor" / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"] == "Qwen2VLImageProcessor"
    assert (folder / "processor" / "tokenizer_config.json").is_file()


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed here")
def test_without_torchvision_qwen_image_edit_fails_to_load_as_the_released_model_does(tiny_family):
    from diffusers import DiffusionPipeline

    with pytest.raises(ImportError, match="Torchvision"):
        DiffusionPipeline.from_pretrained(tiny_family("qwen-image-edit"))
