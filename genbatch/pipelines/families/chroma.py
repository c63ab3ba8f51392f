"""Chroma: a Flux.1-schnell derivative that is not guidance-distilled: real CFG, negative prompt."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

CHROMA = Family(
    "chroma",
    "Chroma",
    ("ChromaPipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=35,
    guidance_scale=5.0,
    size=1024,
    max_sequence_length=True,
    sample_size=128,
    guidance_meaning="classifier-free guidance; 1 or less turns it off",
    negative_meaning="what to steer away from (with guidance above 1); none is the empty prompt",
)
