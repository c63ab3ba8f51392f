"""Qwen-Image: not guidance-distilled; true classifier-free guidance with a negative prompt.

QwenImagePipeline turns true CFG on for any negative prompt that is not None (``""``
included), at ``true_cfg_scale`` (its default 4.0): a job without a negative prompt keeps
None, so its call is plain diffusers' default call (one pass per step). ``guidance_scale``
is an input of guidance-distilled transformers only (``guidance_embeds``; no released
Qwen-Image is one): the call leaves it out otherwise. Defaults are the model card's and the
pipeline's: 50 steps, 1024x1024 (``default_sample_size`` 128 x the VAE's 8). A size that is
not a multiple of the VAE's 8 x 2x2 patches (16) is rounded down, with a warning only.
"""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.model_files import read_json

QWEN_IMAGE = Family(
    "qwen-image",
    "Qwen-Image",
    ("QwenImagePipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    steps=50,
    guidance_scale=1.0,
    size=1024,
    max_sequence_length=True,
    longest_sequence=1024,
    guidance="true-cfg",
    takes=("true_cfg_scale",),
    none_negative_differs=True,  # any negative prompt that is not None turns true CFG on
    sample_size=128,
    ignores="families.qwen_image:ignores",
    size_problem="families.qwen_image:size_problem",
    guidance_meaning="ignored unless the model is guidance-distilled; true_cfg_scale (default 4) guides",
    negative_meaning="turns true CFG on at true_cfg_scale (default 4); none: one pass per step, no CFG",
    notes="true CFG only with a negative prompt (true_cfg_scale); guidance_scale only for distilled models",
)


def ignores(path: Path) -> frozenset[str]:
    """``guidance_scale`` unless the transformer embeds guidance (a distilled model)."""
    config = read_json(Path(path) / "transformer" / "config.json")
    return frozenset() if config.get("guidance_embeds") else frozenset({"guidance_scale"})


def vae_factor(path: Path) -> int:
    """The downsampling of Qwen-Image's VAE (AutoencoderKLQwenImage): 2 per entry of its
    ``temperal_downsample`` (8 for the released model), as QwenImagePipeline computes it."""
    config = read_json(Path(path) / "vae" / "config.json")
    return int(2 ** len(config.get("temperal_downsample") or [False, True, True]))


def size_problem(path: Path, width: int, height: int) -> str | None:
    """Why ``width`` x ``height`` cannot be made exactly: QwenImagePipeline rounds a size that is
    not a multiple of its VAE's downsampling x 2x2 patches down (with a warning only)."""
    multiple = vae_factor(path) * 2
    if width % multiple == 0 and height % multiple == 0:
        return None
    why = f"Qwen-Image makes sizes in multiples of {multiple} (its VAE's downsampling x 2x2 patches)"
    made = (width // multiple * multiple, height // multiple * multiple)
    if min(made) == 0:
        return f"{why}: {width}x{height} is smaller than that"
    return f"{why}: {width}x{height} would come out as {made[0]}x{made[1]}"
