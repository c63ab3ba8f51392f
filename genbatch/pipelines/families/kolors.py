"""Kolors: an SDXL-like UNet with a ChatGLM3 text encoder (needs sentencepiece)."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

KOLORS = Family(
    "kolors",
    "Kolors",
    ("KolorsPipeline",),
    ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=50,
    guidance_scale=5.0,
    size=1024,
    max_sequence_length=True,
    guidance_meaning="classifier-free guidance; 1 or less turns it off",
    negative_meaning="what to steer away from (with guidance above 1); none is the empty prompt",
)
