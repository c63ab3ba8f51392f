"""HunyuanImage 2.1: two text encoders (Qwen2.5-VL and ByT5) and a guider component."""

from __future__ import annotations

from genbatch.pipelines.families.base import Family

HUNYUAN_IMAGE = Family(
    "hunyuan-image",
    "HunyuanImage 2.1",
    ("HunyuanImagePipeline",),
    ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
    steps=50,
    guidance_scale=3.5,
    size=2048,
    guidance_meaning="the guider's classifier-free guidance scale",
    negative_meaning="what to steer away from; none is the empty prompt",
)
