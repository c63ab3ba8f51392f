"""Qwen-Image-Edit: Qwen-Image that edits an input image by instruction (QwenImageEditPipeline).
Its call is Qwen-Image's (true CFG with a negative prompt at ``true_cfg_scale``; guidance_scale
only for a guidance-distilled transformer), with an image it cannot do without: the image
reaches the output as vision tokens among the prompt's (its Qwen2.5-VL text encoder reads it
through the ``processor``) and as VAE latents beside the noise's. A row without an image is
refused before any model loads.

The pipeline encodes the input image at about 1024x1024 whatever size is asked (its VAE's
input, and the processor's) and makes the size it is called with: genbatch calls it with the
row's size (the input's unless width and height are given), rounded as Qwen-Image's are
(:func:`genbatch.pipelines.families.qwen_image.size_problem`). It resizes one image to that
1024x1024 for its processor, but leaves a list of images as it is (the processor then reads
them at their own size) and sizes a list by its first image: :func:`images` resizes a batch's
images as it resizes one, and :func:`batch_parts` puts images that it encodes at other sizes in
calls of their own, so each image of a batch is the one plain diffusers makes of it alone.

Its processor, a transformers Qwen2VLProcessor, cannot be made without torchvision in
transformers 5 (its video processor needs it, even for images):
:func:`genbatch.pipelines.families.detect` refuses the model where torchvision is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from genbatch.pipelines.families.qwen_image import QWEN_IMAGE

QWEN_IMAGE_EDIT = dataclasses.replace(  # Qwen-Image's guidance, sizes and text, and an image to edit
    QWEN_IMAGE,
    name="qwen-image-edit",
    title="Qwen-Image-Edit",
    pipelines=("QwenImageEditPipeline",),
    components=("transformer", "vae", "text_encoder", "tokenizer", "processor", "scheduler"),
    needs_image=True,
    batch_parts="families.qwen_image_edit:batch_parts",
    images="families.qwen_image_edit:images",
    notes="edits the row's image by its prompt (a row needs an image); true CFG only with a negative prompt",
)


def edit_size(width: int, height: int) -> tuple[int, int]:
    """The size QwenImageEditPipeline encodes an input image of ``width`` x ``height`` at: about
    1024x1024 of its aspect ratio, in multiples of 32 (diffusers' ``calculate_dimensions``)."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

    made_width, made_height, _ = calculate_dimensions(1024 * 1024, width / height)
    return int(made_width), int(made_height)


def _given_size(job: Any) -> tuple[int, int]:
    """The size of a job's image as the pipeline gets it: the job's where --resize fits it to
    the job's size, else the file's own (genbatch.manifest.inputs.fitted)."""
    image = job.values["image"]
    own = (int(image.width), int(image.height))
    return (int(job.width), int(job.height)) if job.values.get("resize") in ("fit", "fill") else own


def batch_parts(pipe: Any, jobs: Sequence[Any]) -> list[list[Any]]:
    """A batch cut where its images would be encoded at other sizes (the pipeline sizes a list
    of images by its first), in order."""
    parts: dict[tuple[int, int], list[Any]] = {}
    for job in jobs:
        parts.setdefault(edit_size(*_given_size(job)), []).append(job)
    return list(parts.values())


def images(pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
    """The call with its images resized as QwenImageEditPipeline resizes one image (its own
    ``image_processor.resize`` to :func:`edit_size`), which it does not do to a list."""
    given = call.get("image")
    if type(pipe).__name__ != "QwenImageEditPipeline" or not isinstance(given, list) or not given:
        return call
    width, height = edit_size(*given[0].size)
    return {**call, "image": [pipe.image_processor.resize(image, height, width) for image in given]}
