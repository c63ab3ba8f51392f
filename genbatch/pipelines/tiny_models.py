"""Tiny randomly initialised pipelines of every first-class family, built offline.

Each is a real diffusers pipeline (its own classes, its own latents, its own text encoders)
with a few thousand weights, built from explicit configs after ``torch.manual_seed(0)`` the
way diffusers' fast tests build theirs, and saved with ``save_pretrained``. Their images are
noise; they exist so that every family's machinery runs in seconds on a CPU. Their
tokenizers are written offline too, since nothing may be downloaded
(:mod:`genbatch.pipelines.tiny_tokenizers`).

    from genbatch.pipelines.tiny_builds import build_tiny
    build_tiny("flux", Path("tiny-flux"))      # then: genbatch run prompts.csv --model tiny-flux
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genbatch.pipelines.builtin import tiny_clip_config, tiny_unet
from genbatch.pipelines.tiny_tokenizers import clip_tokenizer, gemma_tokenizer, t5_tokenizer


def _seeded(make: Callable[[], Any]) -> Any:
    import torch

    torch.manual_seed(0)
    return make()


def _clip_config(tokenizer: Any, hidden: int = 8, projection: int = 8) -> Any:
    return tiny_clip_config(tokenizer, hidden_size=hidden, projection_dim=projection, hidden_act="gelu")


def _t5_encoder(tokenizer: Any, d_model: int = 16) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _seeded(lambda: T5EncoderModel(config))


def _vae(latent_channels: int = 4, **extra: Any) -> Any:
    """A two-level AutoencoderKL: images twice the latents' size."""
    from diffusers import AutoencoderKL

    return _seeded(
        lambda: AutoencoderKL(
            block_out_channels=[4, 8],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            latent_channels=latent_channels,
            norm_num_groups=2,
            sample_size=32,
            **extra,
        )
    )


def sdxl_unet() -> Any:
    """The tiny SDXL's UNet (what a tiny SDXL ControlNet is made from)."""
    # Time ids (6 values, 8 dims each) plus the second encoder's pooled projection (8).
    return tiny_unet(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=56,
        cross_attention_dim=16,
    )


def build_sdxl(folder: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer(folder / "tokenizer")
    tokenizer_2 = clip_tokenizer(folder / "tokenizer_2")
    pipe = StableDiffusionXLPipeline(
        vae=_vae(),
        unet=sdxl_unet(),
        text_encoder=_seeded(lambda: CLIPTextModel(_clip_config(tokenizer))),
        text_encoder_2=_seeded(lambda: CLIPTextModelWithProjection(_clip_config(tokenizer_2))),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            steps_offset=1,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
        ),
    )
    save_tiny(pipe, folder, "sdxl", width=64, height=64, guidance_scale=5.0)


def build_sd3(folder: Path, *, latent_channels: int = 16) -> None:
    """SD3 with SD3's 16 latent channels (its inpainting pipeline takes no other)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = clip_tokenizer(folder / "tokenizer")
    tokenizer_2 = clip_tokenizer(folder / "tokenizer_2")
    tokenizer_3 = t5_tokenizer()
    # Both CLIP encoders' hidden states side by side (8 + 8) are padded to T5's width (16).
    transformer = _seeded(
        lambda: SD3Transformer2DModel(
            sample_size=16,
            patch_size=1,
            in_channels=latent_channels,
            out_channels=latent_channels,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            caption_projection_dim=16,
            joint_attention_dim=16,
            pooled_projection_dim=16,
        )
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(
            latent_channels=latent_channels,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        ),
        text_encoder=_seeded(lambda: CLIPTextModelWithProjection(_clip_config(tokenizer))),
        tokenizer=tokenizer,
        text_encoder_2=_seeded(lambda: CLIPTextModelWithProjection(_clip_config(tokenizer_2))),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(tokenizer_3),
        tokenizer_3=tokenizer_3,
    )
    save_tiny(pipe, folder, "sd3", width=32, height=32, guidance_scale=5.0, max_sequence_length=32)


def flux_transformer(*, guidance_embeds: bool = True) -> Any:
    """The tiny Flux.1's transformer (what a tiny Flux ControlNet is made from)."""
    from diffusers import FluxTransformer2DModel

    # Latents of one channel packed 2x2 into tokens of 4; pooled CLIP output (8); T5 width (16).
    return _seeded(
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=16,
            pooled_projection_dim=8,
            axes_dims_rope=[2, 2, 4],
            guidance_embeds=guidance_embeds,
        )
    )


def flux_components(folder: Path, *, guidance_embeds: bool = True) -> dict[str, Any]:
    """The tiny Flux.1's components (Flux.1 Kontext has the same), tokenizers written into ``folder``."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModel

    tokenizer = clip_tokenizer(folder / "tokenizer")
    tokenizer_2 = t5_tokenizer()
    return {
        "transformer": flux_transformer(guidance_embeds=guidance_embeds),
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "vae": _vae(
            latent_channels=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        ),
        "text_encoder": _seeded(lambda: CLIPTextModel(_clip_config(tokenizer))),
        "tokenizer": tokenizer,
        "text_encoder_2": _t5_encoder(tokenizer_2),
        "tokenizer_2": tokenizer_2,
    }


def build_flux(folder: Path, *, guidance_embeds: bool = True) -> None:
    """Flux.1 dev-like (guidance-distilled) by default; ``guidance_embeds=False`` is schnell-like."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline(**flux_components(folder, guidance_embeds=guidance_embeds))
    save_tiny(
        pipe,
        folder,
        "flux" if guidance_embeds else "flux-schnell",
        width=32,
        height=32,
        guidance_scale=3.5 if guidance_embeds else 0.0,
        max_sequence_length=32,
    )


def build_pixart(folder: Path) -> None:
    """PixArt-Σ: a T5 encoder and a DiT that also predicts its variance (out_channels 8)."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = t5_tokenizer()
    transformer = _seeded(
        lambda: PixArtTransformer2DModel(
            sample_size=16,
            num_layers=1,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=2,
            caption_channels=16,
            in_channels=4,
            cross_attention_dim=16,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        )
    )
    pipe = PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer),
        vae=_vae(),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )
    save_tiny(pipe, folder, "pixart-sigma", width=32, height=32, guidance_scale=4.5, max_sequence_length=32)


def build_sana(folder: Path) -> None:
    """Sana: a Gemma2 text encoder, a linear-attention DiT and a deep-compression autoencoder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline

    tokenizer = gemma_tokenizer()
    transformer = sana_transformer()
    vae, text_encoder = _sana_vae(), _gemma2_encoder(tokenizer)
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    save_tiny(pipe, folder, "sana", width=32, height=32, guidance_scale=4.5, max_sequence_length=32)


def sana_transformer(**extra: Any) -> Any:
    """Sana's linear-attention DiT, 32x32 images through a 16x16 latent (SANA-Sprint adds its own settings)."""
    from diffusers import SanaTransformer2DModel

    return _seeded(
        lambda: SanaTransformer2DModel(
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_attention_heads=2,
            attention_head_dim=4,
            num_cross_attention_heads=2,
            cross_attention_head_dim=4,
            cross_attention_dim=8,
            caption_channels=8,
            sample_size=16,
            **extra,
        )
    )


def _sana_vae() -> Any:
    """A deep-compression autoencoder (AutoencoderDC) of two levels."""
    from diffusers import AutoencoderDC

    return _seeded(
        lambda: AutoencoderDC(
            in_channels=3,
            latent_channels=4,
            attention_head_dim=2,
            encoder_block_types=("ResBlock", "EfficientViTBlock"),
            decoder_block_types=("ResBlock", "EfficientViTBlock"),
            encoder_block_out_channels=(8, 8),
            decoder_block_out_channels=(8, 8),
            encoder_qkv_multiscales=((), (5,)),
            decoder_qkv_multiscales=((), (5,)),
            encoder_layers_per_block=(1, 1),
            decoder_layers_per_block=[1, 1],
            downsample_block_type="conv",
            upsample_block_type="interpolate",
            decoder_norm_types="rms_norm",
            decoder_act_fns="silu",
            scaling_factor=0.41407,
        )
    )


def _gemma2_encoder(tokenizer: Any) -> Any:
    from transformers import Gemma2Config, Gemma2Model

    return _seeded(
        lambda: Gemma2Model(
            Gemma2Config(
                head_dim=16,
                hidden_size=8,
                initializer_range=0.02,
                intermediate_size=64,
                max_position_embeddings=8192,
                num_attention_heads=2,
                num_hidden_layers=1,
                num_key_value_heads=2,
                vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                attn_implementation="eager",
            )
        )
    )


def build_lcm(folder: Path) -> None:
    """A latent consistency model: a pipeline of the generic path (no family of its own)."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler
    from transformers import CLIPTextModel

    tokenizer = clip_tokenizer(folder / "tokenizer")
    unet = tiny_unet(time_cond_proj_dim=8)
    pipe = LatentConsistencyModelPipeline(
        vae=_vae(),
        unet=unet,
        text_encoder=_seeded(lambda: CLIPTextModel(_clip_config(tokenizer))),
        tokenizer=tokenizer,
        scheduler=LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    save_tiny(pipe, folder, "lcm", width=64, height=64, guidance_scale=8.0)


def save_tiny(pipe: Any, folder: Path, name: str, **defaults: Any) -> None:
    """Save a tiny pipeline and its genbatch.json (``defaults``: steps, size... it runs at)."""
    pipe.save_pretrained(folder, safe_serialization=True)
    own = {
        "name": f"tiny-{name}",
        "description": f"tiny randomly initialised {name} pipeline; its images are noise",
        "steps": 4,
        **defaults,
    }
    (folder / "genbatch.json").write_text(json.dumps(own, indent=2), encoding="utf-8")


def fit_encoder(vae: Any, gain: float, logvar: float = -12.0) -> Any:
    """``vae`` with an encoder fit for image inputs: its latents' means times ``gain`` and their
    log-variance ``logvar`` (a sample is then its mean), the decoder untouched.

    A random VAE's encoder gives means far smaller than the latents a denoiser hands its
    decoder, drowned in its own sampling noise (a log-variance near 0). Inpainting with a
    4-channel UNet decodes such image latents beside the denoised ones: the decoder's group
    norms then see the image's part of the latents as next to nothing, and the image is gone
    from the kept part of the output. Text-to-image runs no encoder: its images are unchanged."""
    import torch

    layer = vae.quant_conv if vae.quant_conv is not None else vae.encoder.conv_out
    channels = vae.config.get("latent_channels") or vae.config.z_dim  # AutoencoderKL's, Qwen-Image's
    with torch.no_grad():
        layer.weight[:channels] *= gain
        layer.bias[:channels] *= gain
        layer.weight[channels:] = 0.0
        layer.bias[channels:] = logvar
    return vae


SD_ENCODER_GAIN = 30.0  # tiny-random's VAE: image latents of about unit variance once scaled (0.18215)


def _build_sd(folder: Path) -> None:
    """tiny-random (genbatch.pipelines.builtin), its VAE's encoder fit for image inputs
    (:func:`fit_encoder`): its text-to-image images are tiny-random's."""
    from genbatch.pipelines.builtin import _tiny_vae, build_tiny_random

    build_tiny_random(folder)
    fit_encoder(_tiny_vae(), SD_ENCODER_GAIN).save_pretrained(folder / "vae", safe_serialization=True)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "sd": _build_sd,
    "sdxl": build_sdxl,
    "sd3": build_sd3,
    "flux": build_flux,
    "flux-schnell": lambda folder: build_flux(folder, guidance_embeds=False),
    "pixart-sigma": build_pixart,
    "sana": build_sana,
    "lcm": build_lcm,
}
