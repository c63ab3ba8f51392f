"""Kolors: an SDXL-like UNet with a ChatGLM3 text encoder (its tokenizer needs sentencepiece).

Kolors encodes the prompt with ChatGLM3 (its second-to-last hidden states into the UNet's
text projection, the last token's final state as the pooled embedding) and runs SDXL's
denoising with real classifier-free guidance. Without ``sentencepiece`` diffusers puts a
placeholder in KolorsPipeline's place; genbatch then names the missing package.
"""

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
    max_sequence_length=True,  # ChatGLM3's tokens: 256 by default
    longest_sequence=256,  # KolorsPipeline.check_inputs refuses more
    timesteps=True,
    # force_zeros_for_empty_prompt is false in KolorsPipeline and in Kwai-Kolors/Kolors-diffusers:
    # no negative prompt is encoded as "" (a model folder that sets it true zeroes it instead).
    zeroed_empty_negative=False,
    notes="ChatGLM3 text encoder (English and Chinese prompts; needs sentencepiece); SDXL-like UNet",
)
