"""Tiny IP-Adapters that fit the tiny SD and SDXL UNets, built offline, in the layout of the
released ones (h94/IP-Adapter's ``models/``): the weights as one ``ip-adapter.safetensors``
(``image_proj.*``: the image embedding's projection to four text-like tokens; ``ip_adapter.*``:
each cross-attention's ``to_k_ip`` and ``to_v_ip``, numbered as diffusers' loader numbers the
UNet's attention processors), and the CLIP image encoder in ``image_encoder/`` beside it, where
``load_ip_adapter`` looks. Load it with ``pipe.load_ip_adapter(folder, subfolder="",
weight_name="ip-adapter.safetensors")``, or give genbatch the weight file (``--ip-adapter``).

A trained adapter's image tokens move the image as much as the prompt does. Random ones this
small barely do: the image tokens' keys and values are drawn large (:data:`KV_STD`), so that
another IP-Adapter image moves the image by tens of levels, and a scale of 0 instead of 1 too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHTS = "ip-adapter.safetensors"
TOKENS = 4  # an IP-Adapter's (not Plus) image tokens, as diffusers' loader reads its projection
EMBED_DIM = 16  # the image encoder's projection, the adapter's input
KV_STD = 2.0  # to_k_ip and to_v_ip (a trained adapter's move the image; random small ones barely do)


def _image_encoder() -> Any:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        projection_dim=EMBED_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    return CLIPVisionModelWithProjection(config)


def _adapter_weights(unet: Any) -> dict[str, Any]:
    """The adapter's state dict, flat as in a released ``.safetensors``, for ``unet``."""
    import torch

    torch.manual_seed(1)
    cross = unet.config.cross_attention_dim
    weights: dict[str, Any] = {
        "image_proj.proj.weight": torch.randn(cross * TOKENS, EMBED_DIM) * 0.5,
        "image_proj.proj.bias": torch.zeros(cross * TOKENS),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1  # diffusers' numbering: each attention processor two apart, the cross-attentions odd
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        block = name.split(".")[0]
        if block == "mid_block":
            hidden = unet.config.block_out_channels[-1]
        elif block == "up_blocks":
            hidden = list(reversed(unet.config.block_out_channels))[int(name.split(".")[1])]
        else:
            hidden = unet.config.block_out_channels[int(name.split(".")[1])]
        for part in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{key_id}.{part}.weight"] = torch.randn(hidden, cross) * KV_STD
        key_id += 2
    return weights


def _save(unet: Any, folder: Path) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in _adapter_weights(unet).items()}, folder / WEIGHTS)
    _image_encoder().save_pretrained(folder / "image_encoder", safe_serialization=True)


def build_sd_ip_adapter(folder: Path) -> None:
    """An IP-Adapter for tiny ``sd`` (cross-attention 8)."""
    from genbatch.pipelines.builtin import tiny_unet

    _save(tiny_unet(), folder)


def build_sdxl_ip_adapter(folder: Path) -> None:
    """An IP-Adapter for tiny ``sdxl`` (cross-attention 16)."""
    from genbatch.pipelines.tiny_models import sdxl_unet

    _save(sdxl_unet(), folder)
