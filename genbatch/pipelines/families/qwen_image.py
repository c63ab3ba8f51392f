"""Qwen-Image: not guidance-distilled; true classifier-free guidance with a negative prompt."""

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
    guidance="true-cfg",
    takes=("true_cfg_scale",),
    none_negative_differs=True,  # any negative prompt that is not None turns true CFG on
    sample_size=128,
    ignores="families.qwen_image:ignores",
    guidance_meaning="ignored (the model is not guidance-distilled); true_cfg_scale (default 4) guides",
    negative_meaning="turns true CFG on at true_cfg_scale; none: one pass per step, no CFG",
    notes="true CFG only with a negative prompt (true_cfg_scale); guidance_scale only for distilled models",
)


def ignores(path: Path) -> frozenset[str]:
    """``guidance_scale`` unless the transformer embeds guidance (a distilled model)."""
    config = read_json(Path(path) / "transformer" / "config.json")
    return frozenset() if config.get("guidance_embeds") else frozenset({"guidance_scale"})
