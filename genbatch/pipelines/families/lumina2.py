"""Lumina 2: classifier-free guidance with a negative prompt, renormalised to the strength of
the prompt's prediction (``cfg_normalization``); the pipeline puts its system prompt before
every prompt (not before the negative prompt). Sizes are multiples of 16 whatever the VAE:
the pipeline hard-codes a VAE scale of 8."""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.families.base import Family

LUMINA2 = Family(
    "lumina2",
    "Lumina 2",
    ("Lumina2Pipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    # Lumina-Image-2.0's model card: 50 steps at guidance 4 (the pipeline's call defaults: 30, 4.0).
    steps=50,
    guidance_scale=4.0,
    size=1024,  # the transformer's sample_size (128) x 8
    max_sequence_length=True,  # Gemma2, 256 by default (the system prompt counts), at most 512
    longest_sequence=512,
    size_problem="families.lumina2:size_problem",
    notes=(
        "the pipeline's system prompt comes before every prompt; guidance is renormalised "
        "(cfg_normalization) and on for every step (cfg_trunc_ratio 1.0, the pipeline's default)"
    ),
    guidance_meaning="classifier-free guidance, renormalised to the prompt's strength; 1 or less turns it off",
)

MULTIPLE = 16  # Lumina2Pipeline: vae_scale_factor = 8, latents in 2x2 patches


def size_problem(path: Path, width: int, height: int) -> str | None:
    """Why ``width`` x ``height`` cannot be made: Lumina2Pipeline refuses a size that is not a
    multiple of 16 (it raises, for every image of the batch)."""
    if width % MULTIPLE == 0 and height % MULTIPLE == 0:
        return None
    return f"Lumina 2 makes sizes in multiples of {MULTIPLE} only; {width}x{height} is not"
