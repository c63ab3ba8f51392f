"""A tiny HiDream-I1 (HiDreamImagePipeline): two CLIP encoders, T5 and Llama, a mixture-of-experts DiT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_models import _clip_config, _seeded, _t5_encoder, save_tiny
from genbatch.pipelines.tiny_tokenizers import _CHARS, _SPACE, t5_tokenizer, write_clip_tokenizer

# HiDream makes every image at the area of (128 x VAE factor)^2: with a VAE of one level
# (factor 1) that is 128x128, the size the tiny build runs at.
SIZE = 128


def llama_tokenizer(max_length: int = 256) -> Any:
    """A Llama tokenizer over single characters (BPE with no merges), written offline; right
    padding as Llama 3.1's (the pipeline pads with its end-of-text token)."""
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<|begin_of_text|>", "<|end_of_text|>"]
    vocab = {token: i for i, token in enumerate(specials + [_SPACE] + _CHARS)}
    tokenizer = LlamaTokenizer(
        vocab=vocab, merges=[], unk_token="<unk>", bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
    )
    tokenizer.model_max_length = max_length
    tokenizer.padding_side = "right"
    return tokenizer


def _clip(folder: Path) -> tuple[Any, Any]:
    """A CLIP tokenizer and encoder with projection, of 248 positions as HiDream's Long-CLIP
    (the pipeline pads CLIP prompts to max_sequence_length, up to 218)."""
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    write_clip_tokenizer(folder, max_length=248)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    config = _clip_config(tokenizer)
    config.max_position_embeddings = 248
    return tokenizer, _seeded(lambda: CLIPTextModelWithProjection(config))


def _llama_encoder(tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        attn_implementation="eager",  # the pipeline asks for the attention weights
    )
    return _seeded(lambda: LlamaForCausalLM(config))


def _vae_one_level() -> Any:
    """An AutoencoderKL of one level (no downsampling), with the Flux VAE's shift and scale."""
    from diffusers import AutoencoderKL

    return _seeded(
        lambda: AutoencoderKL(
            block_out_channels=[4],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D"],
            latent_channels=4,
            norm_num_groups=2,
            sample_size=SIZE,
            mid_block_add_attention=False,  # attention over every pixel of a 128x128 image is slow
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.1159,
            scaling_factor=0.3611,
        )
    )


def build_hidream(folder: Path) -> None:
    """HiDream-I1 as diffusers' fast tests build it, smaller: one double and one single
    block of four experts (two active), two CLIP encoders with projection (pooled 8 + 8),
    a T5 and a two-layer Llama of width 16, a VAE of one level without attention, patches
    of 8x8 latents. HiDream makes every image at the area of its default size (128 latents
    square): 128x128 here, where the real model (VAE factor 8) makes 1024x1024; a size comes out
    as asked where the pipeline's rescaling gives it back in whole patches (multiples of 8
    here, of 16 there).

    Text reaches the image through the caption projections (T5 and Llama states) and the
    pooled CLIP embedding; these weights (``caption_projection``, ``p_embedder``) are
    scaled x10 so that a different prompt, negative prompt or guidance moves the image by
    several levels."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel

    tokenizer, text_encoder = _clip(folder / "tokenizer")
    tokenizer_2, text_encoder_2 = _clip(folder / "tokenizer_2")
    tokenizer_3 = t5_tokenizer()
    tokenizer_4 = llama_tokenizer()
    transformer = _seeded(
        lambda: HiDreamImageTransformer2DModel(
            patch_size=8,  # 256 tokens at 128x128 (the real 2x2 patches would make 4096: slow on a CPU)
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            caption_channels=[16, 16],  # T5, Llama
            text_emb_dim=16,  # both CLIP projections side by side
            num_routed_experts=4,
            num_activated_experts=2,
            axes_dims_rope=(4, 2, 2),
            max_resolution=(SIZE, SIZE),  # in latents: non-square sizes of the same area fit
            llama_layers=(0, 1),
        )
    ).eval()
    with torch.no_grad():
        for module in (transformer.caption_projection, transformer.p_embedder):
            for parameter in module.parameters():
                parameter.mul_(10.0)
    pipe = HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae_one_level(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(tokenizer_3),
        tokenizer_3=tokenizer_3,
        text_encoder_4=_llama_encoder(tokenizer_4),
        tokenizer_4=tokenizer_4,
        transformer=transformer,
    )
    save_tiny(pipe, folder, "hidream", width=SIZE, height=SIZE, guidance_scale=5.0, max_sequence_length=32)
