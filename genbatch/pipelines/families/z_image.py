"""Z-Image: classifier-free guidance with a negative prompt (Turbo: guidance 0, 9 steps).

ZImagePipeline guides whenever ``guidance_scale`` is above 0, as ``pos + g * (pos - neg)``:
0 turns guidance off (one pass a step, what Z-Image-Turbo runs at) and 1 is already guided,
unlike the ``neg + g * (pos - neg)`` of most pipelines. With no negative prompt it encodes
``""``: none and the empty prompt give the same image. ``cfg_normalization`` (off) and
``cfg_truncation`` (1.0: guided at every step) stay at the pipeline's defaults, which are
also what the released models' own examples run at. Its default size is 1024 whatever its
configs say (the pipeline's ``height or 1024``); sizes must be multiples of its VAE's
downsampling x 2x2 patches (16), or the pipeline raises.
"""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.families.chroma import packed_multiple

Z_IMAGE = Family(
    "z-image",
    "Z-Image",
    ("ZImagePipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    # Z-Image (the base model)'s own example: 50 steps, guidance 4; Z-Image-Turbo runs at 9
    # steps and guidance 0 (its genbatch.json, or the row, says so). The pipeline's call
    # defaults are 50 and 5.0.
    steps=50,
    guidance_scale=4.0,
    guidance_off_at=0.0,  # it guides as pos + g * (pos - neg): any g above 0 guides
    size=1024,
    max_sequence_length=True,  # Qwen3 prompt tokens, 512 by default
    size_problem="families.z_image:size_problem",
    notes="guidance above 0 is classifier-free guidance (Turbo runs at 0, 9 steps); sizes in multiples of 16",
    guidance_meaning="classifier-free guidance, pos + g·(pos − neg): 0 turns it off, 1 does not (Turbo runs at 0)",
    negative_meaning="what to steer away from (with guidance above 0); none is the empty prompt",
)


def size_problem(path: Path, width: int, height: int) -> str | None:
    """Why ``width`` x ``height`` cannot be made: ZImagePipeline raises for a size that is not a
    multiple of its VAE's downsampling x 2x2 patches (16 for the released models)."""
    multiple = packed_multiple(path)
    if width % multiple == 0 and height % multiple == 0:
        return None
    return f"Z-Image makes sizes in multiples of {multiple} only; {width}x{height} is not"
