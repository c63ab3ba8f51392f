"""The models genbatch ships or builds, usable by name:

- ``shapes``: a small text-to-image model trained on simple coloured shapes, shipped inside
  the package (``genbatch/pipelines/models/shapes``). The default when present.
- ``tiny-random``: a tiny randomly initialised Stable Diffusion-architecture pipeline built
  from fixed configs and a fixed seed on first use, cached under ``$GENBATCH_HOME``. Its
  images are noise; it exists for smoke tests and for trying the machinery.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genbatch.home import genbatch_home
from genbatch.pipelines.tiny_tokenizers import write_clip_tokenizer
from genbatch.safe_write import install_folder, staged_folder

PACKAGE_MODELS = Path(__file__).parent / "models"
TINY_RANDOM = "tiny-random"
SHAPES = "shapes"
DESCRIPTIONS = {
    SHAPES: "small text-to-image model trained on coloured shapes, 64x64 (shipped)",
    TINY_RANDOM: "tiny randomly initialised SD-architecture pipeline; its images are noise (for tests)",
}


def builtin_names() -> list[str]:
    return [SHAPES, TINY_RANDOM] if shapes_path() else [TINY_RANDOM]


def default_model_name() -> str:
    """The trained ``shapes`` model when the package ships it, else the noise model."""
    return SHAPES if shapes_path() else TINY_RANDOM


def shapes_path() -> Path | None:
    """The shipped ``shapes`` model's folder, None where the package has none."""
    path = PACKAGE_MODELS / SHAPES
    return path if (path / "model_index.json").is_file() else None


def tiny_random_path() -> Path:
    """Where ``tiny-random`` is built on first use."""
    return genbatch_home() / "models" / TINY_RANDOM


def ensure_tiny_random() -> Path:
    """Build the tiny noise model once into the cache, then reuse it.

    Built in a temporary folder and renamed into place, under a file lock, so concurrent
    first runs neither collide nor leave a half-written model behind.
    """
    from filelock import FileLock

    target = tiny_random_path()
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "model_index.json").is_file():
            return target
        with staged_folder(target) as staging:
            build_tiny_random(staging)
            install_folder(staging, target)
    return target


def build_tiny_random(folder: Path) -> None:
    """Save a deterministic tiny SD pipeline (64x64 images) to ``folder``.

    Configs follow diffusers' own fast tests; ``torch.manual_seed(0)`` before each component
    makes the weights, and so every test image, the same on every machine.
    """
    from genbatch.progress import silence_library_progress

    silence_library_progress()
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tokenizer_dir = folder / "tokenizer"
    write_clip_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    unet, vae, text_encoder = tiny_unet(), _tiny_vae(), _tiny_text_encoder(tokenizer)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    own = {
        "name": TINY_RANDOM,
        "description": DESCRIPTIONS[TINY_RANDOM],
        "steps": 4,
        "guidance_scale": 5.0,
        "width": 64,
        "height": 64,
    }
    (folder / "genbatch.json").write_text(json.dumps(own, indent=2), encoding="utf-8")


def tiny_unet(**changes: Any) -> Any:
    """tiny-random's UNet (seed 0); ``changes`` to its config, e.g. an LCM's ``time_cond_proj_dim``
    or the tiny SDXL's added conditioning."""
    import torch
    from diffusers import UNet2DConditionModel

    config: dict[str, Any] = {
        "block_out_channels": (4, 8),
        "layers_per_block": 1,
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 8,
        "attention_head_dim": 2,
        "norm_num_groups": 2,
    }
    torch.manual_seed(0)
    return UNet2DConditionModel(**{**config, **changes})


def _tiny_vae() -> Any:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )


def _tiny_text_encoder(tokenizer: Any) -> Any:
    import torch
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(tiny_clip_config(tokenizer))


def tiny_clip_config(tokenizer: Any, **changes: Any) -> Any:
    """tiny-random's CLIP text encoder config for ``tokenizer``; ``changes`` to it (the tiny
    families' encoders: another width, a projection, GELU)."""
    from transformers import CLIPTextConfig

    config: dict[str, Any] = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "hidden_size": 8,
        "intermediate_size": 16,
        "layer_norm_eps": 1e-05,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 77,
    }
    return CLIPTextConfig(**{**config, **changes})
