"""Flux.2 (dev and klein): guidance-distilled, no negative prompt; its first positional
argument is an image, so the prompt goes by keyword (as every family's call does)."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

FLUX2 = Family(
    "flux2",
    "Flux.2",
    ("Flux2Pipeline", "Flux2KleinPipeline"),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=50,
    guidance_scale=4.0,
    size=1024,
    negative_prompt=False,
    max_sequence_length=True,
    guidance="distilled",
    sample_size=128,
    guidance_meaning="embedded guidance of the guidance-distilled model",
    negative_meaning="refused: the model takes none",
    notes="guidance-distilled; no negative prompt",
)
