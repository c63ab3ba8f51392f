"""Chroma: a Flux.1-schnell derivative that is not guidance-distilled: real classifier-free
guidance (two transformer passes a step) with a negative prompt; a T5 encoder whose padding
is masked."""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.model_files import read_json

CHROMA = Family(
    "chroma",
    "Chroma",
    ("ChromaPipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    # Chroma1-HD's own example (its model card, diffusers' Chroma page): 40 steps, guidance 3;
    # the pipeline's call defaults are 35 and 5.0.
    steps=40,
    guidance_scale=3.0,
    size=1024,
    max_sequence_length=True,  # T5, 512 by default
    longest_sequence=512,
    sample_size=128,  # the pipeline's default_sample_size (x the VAE's 8: 1024)
    size_problem="families.chroma:size_problem",
    notes="not guidance-distilled: real classifier-free guidance with a negative prompt (two passes a step)",
    guidance_meaning="classifier-free guidance (two passes a step); 1 or less turns it off",
)


def packed_multiple(path: Path) -> int:
    """The multiple a Flux-style pipeline's sizes come in: the VAE's downsampling times the 2x2
    patches latents are packed in (16 for the released models' 8x VAE)."""
    blocks = read_json(Path(path) / "vae" / "config.json").get("block_out_channels") or [0, 0, 0, 0]
    return 2 ** (len(blocks) - 1) * 2


def size_problem(path: Path, width: int, height: int) -> str | None:
    """Why ``width`` x ``height`` cannot be made exactly: the pipeline rounds a size that is not
    a multiple of :func:`packed_multiple` down (with a warning only)."""
    multiple = packed_multiple(path)
    if width % multiple == 0 and height % multiple == 0:
        return None
    why = f"this model makes sizes in multiples of {multiple} (its VAE's downsampling x 2x2 patches)"
    made = (width // multiple * multiple, height // multiple * multiple)
    if min(made) == 0:
        return f"{why}: {width}x{height} is smaller than that"
    return f"{why}: {width}x{height} would come out as {made[0]}x{made[1]}"
