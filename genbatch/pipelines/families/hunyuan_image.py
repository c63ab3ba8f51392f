"""HunyuanImage 2.1: two text encoders (Qwen2.5-VL and ByT5 for quoted text) and guider components.

``HunyuanImagePipeline.__call__`` takes no ``guidance_scale``. The base model
(HunyuanImage-2.1-Diffusers) is guided by its ``guider`` component, and by its ``ocr_guider``
for a prompt with quoted text (the glyphs its ByT5 encoder reads): adaptive projected guidance
mixed with classifier-free guidance, configured in the model folder (``guider/guider_config.json``:
guidance_scale 3.5, APG after step 5). diffusers changes it with ``pipe.guider =
pipe.guider.new(guidance_scale=...)``, which no call argument can carry: a ledger line's
``call`` could then not give the image again. So a row's guidance_scale is ignored here (the
folder's guider guides; genbatch records its guidance_scale as the job's), and the negative
prompt is what the guider steers away from (none is the empty prompt).

The guidance-distilled model (HunyuanImage-2.1-Distilled-Diffusers: ``guidance_embeds`` in its
transformer config, no guider) embeds guidance instead: a row's guidance_scale is passed as
``distilled_guidance_scale`` (3.25 by default, 8 steps), one pass per step, and it ignores a
negative prompt.

The pipeline encodes the whole prompt with Qwen (padded to 1000 tokens: it takes no
max_sequence_length) and picks the guider per call: one call must not mix prompts with and
without quoted text (:func:`batch_parts`). Sizes are made in multiples of the VAE's downsampling
(32) and rounded down otherwise (:func:`size_problem`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genbatch.pipelines.families.base import Family
from genbatch.pipelines.model_files import read_json

HUNYUAN_IMAGE = Family(
    "hunyuan-image",
    "HunyuanImage 2.1",
    ("HunyuanImagePipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
    steps=50,
    guidance_scale=3.5,  # the base model's guider's; model_defaults reads a folder's own
    size=2048,
    guidance="distilled",
    sample_size=64,  # the pipeline's default_sample_size: x the VAE's 32 = 2048
    ignores="families.hunyuan_image:ignores",
    model_defaults="families.hunyuan_image:model_defaults",
    call_args="families.hunyuan_image:call_args",
    batch_parts="families.hunyuan_image:batch_parts",
    size_problem="families.hunyuan_image:size_problem",
    guidance_meaning=(
        "the distilled model's embedded guidance (distilled_guidance_scale, 3.25); the base model's guider "
        "component guides it (guidance_scale in the folder's guider/guider_config.json, 3.5)"
    ),
    negative_meaning="what the base model's guider steers away from; none is the empty prompt; distilled: ignored",
    notes="2048 px; base: 50 steps, its guider's APG+CFG; distilled: 8 steps, distilled_guidance_scale 3.25",
)


def _guidance_embeds(path: Path) -> bool:
    return bool(read_json(Path(path) / "transformer" / "config.json").get("guidance_embeds"))


def _has_guider(path: Path) -> bool:
    return bool((read_json(Path(path) / "model_index.json").get("guider") or [None, None])[-1])


def ignores(path: Path) -> frozenset[str]:
    """``guidance_scale`` unless the transformer embeds guidance (the distilled model); the
    negative prompt where the folder has no guider (the distilled model: nothing guides)."""
    ignored = set() if _guidance_embeds(path) else {"guidance_scale"}
    if not _has_guider(path):
        ignored.add("negative_prompt")
    return frozenset(ignored)


def model_defaults(path: Path) -> dict[str, Any]:
    """The distilled model runs at 8 steps and distilled_guidance_scale 3.25 (its model card);
    the base model at its guider's guidance_scale (what genbatch records as the job's)."""
    if _guidance_embeds(path):
        return {"steps": 8, "guidance_scale": 3.25}
    guider = read_json(Path(path) / "guider" / "guider_config.json")
    return {"guidance_scale": float(guider["guidance_scale"])} if "guidance_scale" in guider else {}


def call_args(path: Path, job: Any) -> dict[str, Any]:
    """The distilled model's guidance: the job's guidance_scale as ``distilled_guidance_scale``."""
    return {"distilled_guidance_scale": job.guidance_scale} if _guidance_embeds(path) else {}


def batch_parts(pipe: Any, jobs: Sequence[Any]) -> list[list[Any]]:
    """The pipeline guides a whole call with ``ocr_guider`` when any of its prompts has quoted
    text: prompts with and without quoted text go in calls apart (each in order)."""
    if getattr(pipe, "ocr_guider", None) is None:
        return [list(jobs)]
    from diffusers.pipelines.hunyuan_image.pipeline_hunyuanimage import extract_glyph_text

    quoted = [job for job in jobs if extract_glyph_text(job.prompt) is not None]
    plain = [job for job in jobs if extract_glyph_text(job.prompt) is None]
    return [part for part in (quoted, plain) if part]


def size_problem(path: Path, width: int, height: int) -> str | None:
    """Why HunyuanImage cannot make ``width`` x ``height`` exactly, or None: its latents are
    the size over the VAE's downsampling (32), in whole patches, rounded down otherwise."""
    ratio = int(read_json(Path(path) / "vae" / "config.json").get("spatial_compression_ratio") or 32)
    patch = read_json(Path(path) / "transformer" / "config.json").get("patch_size") or [1, 1]
    multiple = ratio * int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    if width % multiple == 0 and height % multiple == 0:
        return None
    made = (width // multiple * multiple, height // multiple * multiple)
    why = f"HunyuanImage makes sizes in multiples of {multiple} (its VAE's downsampling)"
    if min(made) == 0:
        return f"{why}: {width}x{height} is smaller than that"
    return f"{why}: {width}x{height} would come out {made[0]}x{made[1]}"
