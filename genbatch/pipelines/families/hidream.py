"""HiDream-I1: four text encoders; it rescales any size to its default area."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

HIDREAM = Family(
    "hidream",
    "HiDream-I1",
    ("HiDreamImagePipeline",),
    (
        "transformer",
        "vae",
        "text_encoder",
        "tokenizer",
        "text_encoder_2",
        "tokenizer_2",
        "text_encoder_3",
        "tokenizer_3",
        "text_encoder_4",
        "tokenizer_4",
        "scheduler",
    ),
    steps=50,
    guidance_scale=5.0,
    size=1024,
    max_sequence_length=True,
    sample_size=128,
    guidance_meaning="classifier-free guidance; 1 or less turns it off (Fast and Dev: 0)",
    negative_meaning="what to steer away from (with guidance above 1); none is the empty prompt",
)
