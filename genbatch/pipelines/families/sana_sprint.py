"""SANA-Sprint: a one-to-four-step distilled Sana; embedded guidance, no negative prompt."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

SANA_SPRINT = Family(
    "sana-sprint",
    "SANA-Sprint",
    ("SanaSprintPipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=2,
    guidance_scale=4.5,
    size=1024,
    negative_prompt=False,
    max_sequence_length=True,
    guidance="distilled",
    fixed={"use_resolution_binning": False},
    guidance_meaning="embedded guidance of the distilled model",
    negative_meaning="refused: the model takes none",
    notes="1 to 4 steps; resolution binning off: sizes exactly as asked",
)
