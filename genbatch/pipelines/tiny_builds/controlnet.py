"""Tiny ControlNets that fit the tiny SD, SDXL and Flux.1 pipelines, built offline.

Each is made from its base's denoiser the way ControlNets are trained from one
(``ControlNetModel.from_unet``, ``FluxControlNetModel.from_transformer``: the same config, the
encoder's weights copied), so it fits that base by construction: the same block channels,
cross-attention width, added conditioning (SDXL's time ids and pooled text), packed latents
(Flux). A model folder, not a pipeline: load it with ``ControlNetModel.from_pretrained`` (or
``FluxControlNetModel``) and hand it to the pipeline with ``controlnet=``.

A new ControlNet's output layers are zero (its "zero convolutions"), so it changes nothing
until trained: a control image or ``controlnet_conditioning_scale`` would not move a pixel.
Here they are drawn at random instead (:data:`OUTPUT_STD`), so that a scale of 0 instead of 1
moves the image by tens of levels. The last layer of the SD and SDXL ControlNets' control
image embedding is drawn larger (:data:`CONDITIONING_STD`): the embedding is added to the
noisy latents' features, and at 0.5 a different control image moved the image by 4-5
levels; at 4.0, by 15-20.

The SD and SDXL ControlNets' conditioning embedding downsamples once (channels (4, 8)), as
the tiny VAEs do: a control image of the output's size reaches the UNet at the latents' size.
The Flux ControlNet has no such embedding: Flux ControlNet pipelines encode the control
image with the VAE and pack it as they pack the latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OUTPUT_STD = 0.5  # the random output layers' weights and biases (zero in a new ControlNet)
CONDITIONING_STD = 4.0  # the SD / SDXL control image embedding's last layer (zero in a new ControlNet)
CONDITIONING_LAYER = "controlnet_cond_embedding.conv_out"
OUTPUT_LAYERS = (
    CONDITIONING_LAYER,
    "controlnet_down_blocks",
    "controlnet_mid_block",
    "controlnet_blocks",
    "controlnet_single_blocks",
    "controlnet_x_embedder",
)


def _with_random_outputs(controlnet: Any) -> Any:
    """``controlnet`` with its zero-initialised output layers drawn at random (seed 1)."""
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in controlnet.named_parameters():
            if name.startswith(OUTPUT_LAYERS):
                parameter.normal_(0.0, CONDITIONING_STD if name.startswith(CONDITIONING_LAYER) else OUTPUT_STD)
    return controlnet


def _controlnet_from_unet(unet: Any) -> Any:
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    return _with_random_outputs(ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8)))


def build_sd_controlnet(folder: Path) -> None:
    """A ControlNetModel for tiny ``sd`` (tiny-random's UNet: channels (4, 8), cross-attention 8)."""
    from genbatch.pipelines.builtin import tiny_unet

    _controlnet_from_unet(tiny_unet()).save_pretrained(folder, safe_serialization=True)


def build_sdxl_controlnet(folder: Path) -> None:
    """A ControlNetModel for tiny ``sdxl`` (its UNet's text-time conditioning, cross-attention 16)."""
    from genbatch.pipelines.tiny_models import sdxl_unet

    _controlnet_from_unet(sdxl_unet()).save_pretrained(folder, safe_serialization=True)


def build_flux_controlnet(folder: Path) -> None:
    """A FluxControlNetModel for tiny ``flux`` (one dual and one single block, guidance embedded)."""
    import torch
    from diffusers import FluxControlNetModel

    from genbatch.pipelines.tiny_models import flux_transformer

    transformer = flux_transformer()
    torch.manual_seed(0)
    controlnet = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=transformer.config.attention_head_dim,
        num_attention_heads=transformer.config.num_attention_heads,
    )
    _with_random_outputs(controlnet).save_pretrained(folder, safe_serialization=True)
