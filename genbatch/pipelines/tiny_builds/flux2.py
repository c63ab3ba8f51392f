"""Tiny Flux.2 pipelines, built offline (configs after diffusers' own fast tests).

Flux.2-klein (:func:`build_flux2_klein`): a Qwen3 text encoder over the byte-level Qwen
tokenizer (:mod:`genbatch.pipelines.tiny_builds.qwen_tokenizer`), a Flux2 transformer of one
double and one single block, a two-level AutoencoderKLFlux2.

Unscaled, a different prompt or guidance moves this build's pixels by a level: the
transformer's modulation weights (``double_stream_modulation_*``, ``single_stream_modulation``)
are scaled x10 and its attention's query/key RMSNorm weights x3 (attention logits 9x
sharper), after which a prompt moves pixels by ~30 levels and guidance 4 vs 1 by ~15.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_builds.qwen_image import _scaled
from genbatch.pipelines.tiny_builds.qwen_tokenizer import qwen_tokenizer
from genbatch.pipelines.tiny_builds.z_image import qwen3_config
from genbatch.pipelines.tiny_models import _seeded, save_tiny

# Flux2KleinPipeline stacks the hidden states of these encoder layers (its default
# text_encoder_out_layers, what the released klein models run at: Qwen3-4B and -8B have 36
# layers). The tiny encoder has 27 layers, so the default indexes real layers and genbatch,
# like plain diffusers, passes nothing.
KLEIN_OUT_LAYERS = (9, 18, 27)
QWEN3_HIDDEN = 16


def _flux2_vae() -> Any:
    """A two-level AutoencoderKLFlux2 (images twice its latents' size) of one latent channel."""
    from diffusers import AutoencoderKLFlux2

    return _seeded(
        lambda: AutoencoderKLFlux2(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(4, 8),
            layers_per_block=1,
            latent_channels=1,
            norm_num_groups=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
    )


def _flux2_transformer(text_width: int, *, guidance_embeds: bool) -> Any:
    """A Flux2 transformer over latents of one channel packed 2x2 (tokens of 4), its text
    made to move its images (see the module's docstring)."""
    from diffusers import Flux2Transformer2DModel

    model = _seeded(
        lambda: Flux2Transformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=text_width,
            timestep_guidance_channels=256,
            axes_dims_rope=[4, 4, 4, 4],
            guidance_embeds=guidance_embeds,
        )
    )
    _scaled(model, ("modulation",), 10.0)
    return _scaled(model, ("norm_q", "norm_k", "norm_added_q", "norm_added_k"), 3.0)


def build_flux2_klein(folder: Path, *, distilled: bool = False) -> None:
    """Flux.2-klein (Flux2KleinPipeline): the base model by default (classifier-free guidance
    against an empty prompt above guidance 1); ``distilled=True`` is a step-distilled klein,
    which ignores guidance (``is_distilled`` in model_index.json)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from transformers import Qwen3ForCausalLM

    tokenizer = qwen_tokenizer(folder / "tokenizer")
    encoder = _seeded(lambda: Qwen3ForCausalLM(qwen3_config(tokenizer, layers=max(KLEIN_OUT_LAYERS))))
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_flux2_vae(),
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=_flux2_transformer(len(KLEIN_OUT_LAYERS) * QWEN3_HIDDEN, guidance_embeds=False),
        is_distilled=distilled,
    )
    name = "flux2-klein-distilled" if distilled else "flux2-klein"
    defaults: dict[str, Any] = {"guidance_scale": 1.0} if distilled else {"guidance_scale": 4.0}
    save_tiny(pipe, folder, name, width=32, height=32, max_sequence_length=64, **defaults)
