"""Z-Image: classifier-free guidance with a negative prompt (Turbo: guidance 0, 8 steps)."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

Z_IMAGE = Family(
    "z-image",
    "Z-Image",
    ("ZImagePipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=50,
    guidance_scale=5.0,
    size=1024,
    max_sequence_length=True,
    guidance_meaning="classifier-free guidance; 1 or less turns it off (Turbo runs at 0)",
    negative_meaning="what to steer away from (with guidance above 1); none is the empty prompt",
)
