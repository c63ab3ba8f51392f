"""A tiny Lumina 2 (Lumina2Pipeline): a Gemma2 encoder and a joint text-image transformer."""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.tiny_models import _gemma2_encoder, _seeded, save_tiny
from genbatch.pipelines.tiny_tokenizers import gemma_tokenizer


def _vae_of_four_levels() -> object:
    """Lumina2Pipeline hard-codes a VAE scale of 8, whatever its VAE: four levels, so that a
    latent is an eighth of the image as the pipeline assumes."""
    from diffusers import AutoencoderKL

    return _seeded(
        lambda: AutoencoderKL(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=(4, 4, 4, 4),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        )
    )


def build_lumina2(folder: Path) -> None:
    """Lumina 2 as diffusers' fast tests build it: a one-layer Gemma2 encoder over characters
    (the pipeline's system prompt takes some 180 of its 256 tokens), a transformer of hidden
    size 8, and a four-level VAE (see :func:`_vae_of_four_levels`)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    tokenizer = gemma_tokenizer()
    transformer = _seeded(
        lambda: Lumina2Transformer2DModel(
            sample_size=4,
            patch_size=2,
            in_channels=4,
            hidden_size=8,
            num_layers=2,
            num_refiner_layers=1,
            num_attention_heads=1,
            num_kv_heads=1,
            multiple_of=16,
            ffn_dim_multiplier=None,
            norm_eps=1e-5,
            scaling_factor=1.0,
            axes_dim_rope=[4, 2, 2],
            axes_lens=[300, 64, 64],
            cap_feat_dim=8,
        )
    )
    pipe = Lumina2Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae_of_four_levels(),
        text_encoder=_gemma2_encoder(tokenizer),
        tokenizer=tokenizer,
    )
    save_tiny(pipe, folder, "lumina2", width=32, height=32, guidance_scale=4.0)
