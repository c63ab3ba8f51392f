"""Lumina 2: classifier-free guidance with a negative prompt and a system prompt."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

LUMINA2 = Family(
    "lumina2",
    "Lumina 2",
    ("Lumina2Pipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=30,
    guidance_scale=4.0,
    size=1024,
    max_sequence_length=True,
    guidance_meaning="classifier-free guidance; 1 or less turns it off",
    negative_meaning="what to steer away from (with guidance above 1); none is the empty prompt",
)
