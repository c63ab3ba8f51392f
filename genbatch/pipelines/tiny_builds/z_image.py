"""A tiny Z-Image pipeline (ZImagePipeline), built offline (configs after diffusers' own fast
tests): a two-layer Qwen3 text encoder over the byte-level Qwen tokenizer
(:mod:`genbatch.pipelines.tiny_builds.qwen_tokenizer`; the pipeline reads the second-to-last
hidden states), a two-layer ZImage transformer and a two-level AutoencoderKL.

No weights are scaled: this build's text already moves its images (a different prompt by
tens of levels, guidance and a negative prompt likewise; the test asserts it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_builds.qwen_tokenizer import qwen_tokenizer
from genbatch.pipelines.tiny_models import _seeded, save_tiny


def qwen3_config(tokenizer: Any, *, layers: int = 2, hidden: int = 16) -> Any:
    """A tiny Qwen3 text model's config over ``tokenizer`` (Z-Image's and Flux.2-klein's encoders)."""
    from transformers import Qwen3Config

    return Qwen3Config(
        hidden_size=hidden,
        intermediate_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def build_z_image(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tokenizer = qwen_tokenizer(folder / "tokenizer")
    latent_channels = 4

    def transformer() -> Any:
        model = ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=latent_channels,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            norm_eps=1e-5,
            qk_norm=True,
            cap_feat_dim=16,
            rope_theta=256.0,
            t_scale=1000.0,
            axes_dims=[8, 4, 4],
            axes_lens=[256, 32, 32],
        )
        # Its pad tokens start as torch.empty (diffusers' tests fix them the same way).
        with torch.no_grad():
            model.x_pad_token.copy_(torch.ones_like(model.x_pad_token))
            model.cap_pad_token.copy_(torch.ones_like(model.cap_pad_token))
        return model

    vae = _seeded(
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            block_out_channels=[8, 16],
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=4,
            sample_size=32,
            scaling_factor=0.3611,
            shift_factor=0.1159,
        )
    )
    pipe = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False),
        vae=vae,
        text_encoder=_seeded(lambda: Qwen3Model(qwen3_config(tokenizer))),
        tokenizer=tokenizer,
        transformer=_seeded(transformer),
    )
    save_tiny(pipe, folder, "z-image", width=32, height=32, guidance_scale=4.0, max_sequence_length=64)
