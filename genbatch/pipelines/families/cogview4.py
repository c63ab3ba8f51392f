"""CogView4: classifier-free guidance with a negative prompt; GLM text encoder."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

COGVIEW4 = Family(
    "cogview4",
    "CogView4",
    ("CogView4Pipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=50,
    guidance_scale=5.0,
    size=1024,
    max_sequence_length=True,
    guidance_meaning="classifier-free guidance; 1 or less turns it off",
    negative_meaning="what to steer away from (with guidance above 1); none is the empty prompt",
)
