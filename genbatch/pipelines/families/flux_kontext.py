"""Flux.1 Kontext: a Flux.1 that edits an image by instruction (FluxKontextPipeline). Its
transformer is Flux.1's; the input image's latents join the sequence beside the noise's.
Guidance-distilled: embedded guidance, no negative prompt; the model card runs 28 steps at
guidance 2.5.

Left to itself, FluxKontextPipeline makes every image about one megapixel: it scales the
asked size to ``max_area`` (1024², keeping its aspect ratio) and resizes the input image to
the nearest of the resolutions Kontext was trained at (``_auto_resize``). genbatch makes the
size a row asks for, as for every image-to-image row (the input's own size unless width and
height are given): each call passes ``max_area=width * height`` and ``_auto_resize=False``
(:func:`call_args`), recorded in the ledger's ``call``, so plain diffusers called with it
makes the same image. A row without an image is text-to-image at its size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.families.base import Family

FLUX_KONTEXT = Family(
    "flux-kontext",
    "Flux.1 Kontext",
    ("FluxKontextPipeline",),
    ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
    steps=28,
    guidance_scale=2.5,
    size=1024,
    negative_prompt=False,
    max_sequence_length=True,
    longest_sequence=512,
    guidance="distilled",
    sample_size=128,
    call_args="families.flux_kontext:call_args",
    guidance_meaning="embedded guidance of a guidance-distilled model; 2.5 by default (the model card's)",
    negative_meaning="refused: the model takes none",
    notes="edits the row's image by its prompt (none: text-to-image) at the size asked, not ~1 megapixel",
)


def call_args(path: Path, job: Any) -> dict[str, Any]:
    """The size a job asks for, kept: ``max_area`` its area (the pipeline scales the size to
    it) and no resizing of the input image to Kontext's preferred resolutions."""
    return {"max_area": int(job.width) * int(job.height), "_auto_resize": False}
