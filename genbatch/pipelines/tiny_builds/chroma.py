"""A tiny Chroma (ChromaPipeline): a T5 encoder and Flux.1's packed latents, real classifier-free guidance."""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.tiny_models import _seeded, _t5_encoder, _vae, save_tiny
from genbatch.pipelines.tiny_tokenizers import t5_tokenizer


def build_chroma(folder: Path) -> None:
    """Chroma as diffusers' fast tests build it, smaller: one dual and one single block, a
    character-level T5 (one token a character: prompts need max_sequence_length 64), a
    two-level VAE of one latent channel packed 2x2 into tokens of 4.

    Text reaches Chroma's image only through the dual block's attention (its modulation
    comes from the timestep alone, and the text is layer-normed before it): the value
    projection of the text tokens (``add_v_proj``) is scaled x10, so that a different prompt,
    negative prompt or guidance moves the image by tens of levels (5-10 without)."""
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = t5_tokenizer()
    transformer = _seeded(
        lambda: ChromaTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=16,
            axes_dims_rope=[2, 2, 4],
            approximator_hidden_dim=16,
            approximator_layers=1,
            approximator_num_channels=16,
        )
    )
    with torch.no_grad():
        for block in transformer.transformer_blocks:
            block.attn.add_v_proj.weight.mul_(10.0)
    pipe = ChromaPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(
            latent_channels=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        ),
        text_encoder=_t5_encoder(tokenizer),
        tokenizer=tokenizer,
    )
    save_tiny(pipe, folder, "chroma", width=32, height=32, guidance_scale=3.0, max_sequence_length=64)
