"""HiDream-I1: four text encoders (two CLIP, T5, Llama 3.1); it rescales any size to its default area.

``HiDreamImagePipeline.__call__`` takes a size only as an aspect ratio: it scales width and
height so that their product is the area of its default size, ``(default_sample_size x VAE
factor)^2`` (1024x1024 for the released models), and rounds each side down to a multiple of
the VAE factor x 2. No argument turns that off, so a size comes out as asked only where that
arithmetic gives it back (1024x1024, 768x1360, 880x1168, 832x1248 and their transposes, the
sizes HiDream recommends); :func:`size_problem` refuses the others, saying what they would be.
"""

from __future__ import annotations

import math
from pathlib import Path

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.model_files import read_json

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
    sample_size=128,  # the pipeline's default_sample_size; the transformer's config has none
    size_problem="families.hidream:size_problem",
    notes=(
        "every image has about the area of 1024x1024: a size the pipeline would rescale is refused; "
        "Full: 50 steps, guidance 5; Dev and Fast are guidance-distilled: guidance 0, 28 and 16 steps"
    ),
    guidance_meaning="classifier-free guidance; 1 or less turns it off (Dev and Fast: 0)",
)

DEFAULT_SAMPLE_SIZE = 128  # HiDreamImagePipeline.default_sample_size (set in its __init__)


def _vae_factor(path: Path) -> int:
    blocks = read_json(Path(path) / "vae" / "config.json").get("block_out_channels") or [0, 0, 0, 0]
    return int(2 ** (len(blocks) - 1))


def made_size(width: int, height: int, vae_factor: int) -> tuple[int, int]:
    """The size ``HiDreamImagePipeline.__call__`` makes when asked for ``width`` x ``height``
    (its own arithmetic, step for step)."""
    division = vae_factor * 2
    s_max = (DEFAULT_SAMPLE_SIZE * vae_factor) ** 2
    scale = math.sqrt(s_max / (width * height))
    return int(width * scale // division * division), int(height * scale // division * division)


def _runs(width: int, height: int, factor: int, transformer: dict) -> bool:
    """Whether the transformer takes latents of this size: whole patches, and (not square)
    no more patches than its ``max_resolution`` pads to."""
    patch = int(transformer.get("patch_size") or 2)
    rows, cols = height // factor, width // factor
    if rows % patch or cols % patch:
        return False
    max_resolution = transformer.get("max_resolution") or (128, 128)
    return rows == cols or (rows // patch) * (cols // patch) <= max_resolution[0] * max_resolution[1] // patch**2


def size_problem(path: Path, width: int, height: int) -> str | None:
    """Why HiDream cannot make ``width`` x ``height`` exactly, or None: the size it would make
    instead, and one of that shape it keeps."""
    factor = _vae_factor(path)
    transformer = read_json(Path(path) / "transformer" / "config.json")
    made = made_size(width, height, factor)
    if made == (width, height) and _runs(width, height, factor, transformer):
        return None
    side = DEFAULT_SAMPLE_SIZE * factor
    why = (
        f"HiDream-I1 makes every image at the area of {side}x{side}, each side rounded down to a "
        f"multiple of {factor * 2}"
    )
    kept = [
        (w, h)
        for w, h in (made, (made[0] + factor * 2, made[1]), (made[0], made[1] + factor * 2))
        if min(w, h) > 0 and made_size(w, h, factor) == (w, h) and _runs(w, h, factor, transformer)
    ]
    instead = f"{kept[0][0]}x{kept[0][1]} or {side}x{side}" if kept and kept[0] != (side, side) else f"{side}x{side}"
    if made == (width, height):  # kept by the pipeline, but not whole patches for this transformer
        return f"{why} and in whole patches: {width}x{height} cannot be made; ask for {instead}"
    return f"{why}: {width}x{height} would come out {made[0]}x{made[1]}; ask for {instead}"
