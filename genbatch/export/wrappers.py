"""The torch modules an ONNX export traces, one per component, each with its example
inputs, input and output names and dynamic axes.

Names and dtypes follow diffusers' ONNX pipelines (int32 input_ids, float timestep). Only
``genbatch.export.onnx`` imports this module, when it exports or verifies: it needs torch.
"""

from __future__ import annotations

from typing import Any

import torch

from genbatch.pipelines.families import is_xl
from genbatch.pipelines.model_files import vae_scale_factor

# module, example inputs, input names, output names, dynamic axes
Component = tuple[torch.nn.Module, tuple[Any, ...], list[str], list[str], dict[str, dict[int, str]]]

BATCH_HW = {0: "batch", 2: "height", 3: "width"}


class TextEncoder(torch.nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Any) -> Any:
        out = self.model(input_ids=input_ids, return_dict=False)
        return out[0], out[1]


class Unet(torch.nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any) -> Any:
        return self.model(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class TextEncoderXL(torch.nn.Module):
    """SDXL's encoders: the penultimate hidden states, and the pooled output (the second
    encoder's projected ``text_embeds`` is the one SDXL uses)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Any) -> Any:
        out = self.model(input_ids=input_ids, output_hidden_states=True)
        return out.hidden_states[-2], out[0] if out[0].ndim == 2 else out.pooler_output


class UnetXL(torch.nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any, text_embeds: Any, time_ids: Any) -> Any:
        return self.model(
            sample,
            timestep,
            encoder_hidden_states,
            return_dict=False,
            added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids},
        )[0]


class VaeDecoder(torch.nn.Module):
    def __init__(self, vae: Any):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: Any) -> Any:
        return self.vae.decode(latent_sample, return_dict=False)[0]


class VaeEncoder(torch.nn.Module):
    """The latent distribution's mean: deterministic, so it can be checked for parity."""

    def __init__(self, vae: Any):
        super().__init__()
        self.vae = vae

    def forward(self, sample: Any) -> Any:
        return self.vae.encode(sample, return_dict=False)[0].mode()


def wrappers(pipe: Any) -> dict[str, Component]:
    """Per component of ``pipe``'s export: module, example inputs, input names, output
    names, dynamic axes. The example inputs are drawn from one seeded generator, the text
    encoders' and UNet's first, then the VAE's."""
    g = torch.Generator("cpu").manual_seed(0)
    parts = _xl_parts(pipe, g) if is_xl(pipe) else _sd_parts(pipe, g)
    return {**parts, **_vae_parts(pipe, g)}


def _latent_size(pipe: Any) -> int:
    sample = pipe.unet.config.sample_size
    return sample if isinstance(sample, int) else sample[0]


def _sd_parts(pipe: Any, g: torch.Generator) -> dict[str, Component]:
    length = pipe.tokenizer.model_max_length
    sample = _latent_size(pipe)
    return {
        "text_encoder": (
            TextEncoder(pipe.text_encoder),
            (torch.zeros(2, length, dtype=torch.int32),),
            ["input_ids"],
            ["last_hidden_state", "pooler_output"],
            {
                "input_ids": {0: "batch", 1: "sequence"},
                "last_hidden_state": {0: "batch", 1: "sequence"},
                "pooler_output": {0: "batch"},
            },
        ),
        "unet": (
            Unet(pipe.unet),
            (
                torch.randn((2, pipe.unet.config.in_channels, sample, sample), generator=g),
                torch.tensor([999.0, 999.0]),
                torch.randn(2, length, pipe.text_encoder.config.hidden_size, generator=g),
            ),
            ["sample", "timestep", "encoder_hidden_states"],
            ["out_sample"],
            {
                "sample": BATCH_HW,
                "timestep": {0: "batch"},
                "encoder_hidden_states": {0: "batch", 1: "sequence"},
                "out_sample": BATCH_HW,
            },
        ),
    }


def _xl_parts(pipe: Any, g: torch.Generator) -> dict[str, Component]:
    length = pipe.tokenizer.model_max_length
    sample = _latent_size(pipe)
    context = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    pooled = pipe.text_encoder_2.config.projection_dim
    ids = (torch.zeros(2, length, dtype=torch.int32),)
    text_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "hidden_states": {0: "batch", 1: "sequence"},
        "pooled": {0: "batch"},
    }
    return {
        "text_encoder": (TextEncoderXL(pipe.text_encoder), ids, ["input_ids"], ["hidden_states", "pooled"], text_axes),
        "text_encoder_2": (
            TextEncoderXL(pipe.text_encoder_2),
            ids,
            ["input_ids"],
            ["hidden_states", "pooled"],
            text_axes,
        ),
        "unet": (
            UnetXL(pipe.unet),
            (
                torch.randn((2, pipe.unet.config.in_channels, sample, sample), generator=g),
                torch.tensor([999.0, 999.0]),
                torch.randn(2, length, context, generator=g),
                torch.randn(2, pooled, generator=g),
                torch.full((2, 6), 64.0),
            ),
            ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
            ["out_sample"],
            {
                "sample": BATCH_HW,
                "timestep": {0: "batch"},
                "encoder_hidden_states": {0: "batch", 1: "sequence"},
                "text_embeds": {0: "batch"},
                "time_ids": {0: "batch"},
                "out_sample": BATCH_HW,
            },
        ),
    }


def _vae_parts(pipe: Any, g: torch.Generator) -> dict[str, Component]:
    """The VAE's two parts, the same for every family (drawn after the UNet's inputs)."""
    vae = pipe.vae.config
    sample = _latent_size(pipe)
    size = sample * vae_scale_factor(vae)
    return {
        "vae_decoder": (
            VaeDecoder(pipe.vae),
            (torch.randn(1, vae.latent_channels, sample, sample, generator=g),),
            ["latent_sample"],
            ["sample"],
            {"latent_sample": BATCH_HW, "sample": BATCH_HW},
        ),
        "vae_encoder": (
            VaeEncoder(pipe.vae),
            (torch.randn(1, vae.in_channels, size, size, generator=g),),
            ["sample"],
            ["latent_sample"],
            {"sample": BATCH_HW, "latent_sample": BATCH_HW},
        ),
    }
