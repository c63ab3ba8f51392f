"""Tiny Qwen-Image pipelines, built offline (configs after diffusers' own fast tests).

A Qwen2.5-VL text encoder of two layers over the byte-level Qwen tokenizer
(:mod:`genbatch.pipelines.tiny_builds.qwen_tokenizer`), a two-layer QwenImage transformer and
an AutoencoderKLQwenImage with Qwen-Image's three downsamplings (``temperal_downsample``
of three entries: a VAE factor of 8, so the pipeline's default size is 128 x 8 = 1024 as
for the released model).

Unscaled, a different prompt or true CFG moves this build's pixels by a level or two, too
little for a test to tell genbatch's call from another: the text reaches the image only
through joint attention, and a prompt's few tokens are diluted among the ~100 of the
system template the pipeline keeps. So the modulation weights (``img_mod``, ``txt_mod``)
are scaled x10 and the attention's query/key RMSNorm weights (``norm_q``, ``norm_k``,
``norm_added_q``, ``norm_added_k``) x3, which makes attention logits 9x sharper: a prompt
then moves pixels by ~20 levels, true CFG with a negative prompt by ~40.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_builds.qwen_tokenizer import qwen_tokenizer
from genbatch.pipelines.tiny_models import _seeded, save_tiny

MODULATION_SCALE = 10.0  # the modulation weights (img_mod, txt_mod)
ATTENTION_SHARPEN = 3.0  # the query/key norms: attention logits x9


def _scaled(model: Any, names: tuple[str, ...], factor: float) -> Any:
    """``model`` with the weights of every submodule whose name contains one of ``names`` times ``factor``."""
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if any(part in name for part in names):
                parameter.mul_(factor)
    return model


def _sharpened(transformer: Any) -> Any:
    """A QwenImage transformer whose text moves its images (see the module's docstring)."""
    _scaled(transformer, ("img_mod", "txt_mod"), MODULATION_SCALE)
    return _scaled(transformer, ("norm_q", "norm_k", "norm_added_q", "norm_added_k"), ATTENTION_SHARPEN)


def _qwen2_5_vl_encoder(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": None,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=len(tokenizer),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        vision_token_id=ids("<|vision_pad|>"),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
    )
    return _seeded(lambda: Qwen2_5_VLForConditionalGeneration(config).eval())


def build_qwen_image(folder: Path) -> None:
    """Qwen-Image (QwenImagePipeline), not guidance-distilled: true CFG with a negative prompt."""
    from diffusers import QwenImagePipeline

    tokenizer = qwen_tokenizer(folder / "tokenizer")
    pipe = QwenImagePipeline(
        scheduler=qwen_scheduler(),
        vae=qwen_vae(),
        text_encoder=_qwen2_5_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=_sharpened(qwen_transformer()),
    )
    save_tiny(pipe, folder, "qwen-image", width=64, height=64)


Z_DIM = 4  # the tiny Qwen-Image VAE's latent channels


def qwen_transformer() -> Any:
    """The tiny Qwen-Image transformer (seed 0): latents of 4 channels packed 2x2 into tokens of
    16; the encoder's width (16) is the text's."""
    from diffusers import QwenImageTransformer2DModel

    return _seeded(
        lambda: QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=Z_DIM * 4,
            out_channels=Z_DIM,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=16,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        )
    )


def qwen_vae(
    base_dim: int = 8, dim_mult: tuple[int, ...] = (1, 2, 2, 2), downsamplings: tuple[bool, ...] = (False, True, True)
) -> Any:
    """A tiny Qwen-Image VAE (seed 0) of 4 latent channels, neither shifted nor scaled."""
    from diffusers import AutoencoderKLQwenImage

    return _seeded(
        lambda: AutoencoderKLQwenImage(
            base_dim=base_dim,
            z_dim=Z_DIM,
            dim_mult=list(dim_mult),
            num_res_blocks=1,
            temperal_downsample=list(downsamplings),
            latents_mean=[0.0] * Z_DIM,
            latents_std=[1.0] * Z_DIM,
        )
    )


def qwen_scheduler() -> Any:
    """Qwen-Image's released scheduler config."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        shift=1.0,
        shift_terminal=0.02,
        use_dynamic_shifting=True,
        time_shift_type="exponential",
    )
