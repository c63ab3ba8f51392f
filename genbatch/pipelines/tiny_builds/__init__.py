"""Tiny random pipelines of every family, built offline: today's families one module each here,
the established ones in :mod:`genbatch.pipelines.tiny_models`; :func:`build_tiny` builds either.

Random weights this small barely let text reach the image; each builder scales the weights
that carry text into the image until a different prompt, negative prompt or guidance moves
pixels by several levels (and says so where it does), since a test that compares genbatch
with plain diffusers cannot fail on a build that ignores its text."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

# tiny pipeline name -> "module:function" in this package
BUILDERS: dict[str, str] = {
    "qwen-image": "qwen_image:build_qwen_image",
    "z-image": "z_image:build_z_image",
    "flux2-klein": "flux2:build_flux2_klein",
    "flux2": "flux2:build_flux2",
    "chroma": "chroma:build_chroma",
    "lumina2": "lumina2:build_lumina2",
    "cogview4": "cogview4:build_cogview4",
    "sana-sprint": "sana_sprint:build_sana_sprint",
    "hidream": "hidream:build_hidream",
    "kolors": "kolors:build_kolors",
    "hunyuan-image": "hunyuan_image:build_hunyuan_image",
    # ControlNet model folders (not pipelines) that fit the tiny sd, sdxl and flux
    "sd-controlnet": "controlnet:build_sd_controlnet",
    "sdxl-controlnet": "controlnet:build_sdxl_controlnet",
    "flux-controlnet": "controlnet:build_flux_controlnet",
    # IP-Adapters (weights and image encoder, as released) that fit the tiny sd and sdxl
    "sd-ip-adapter": "ip_adapter:build_sd_ip_adapter",
    "sdxl-ip-adapter": "ip_adapter:build_sdxl_ip_adapter",
    # pipelines that edit an input image
    "flux-kontext": "flux_kontext:build_flux_kontext",
    "qwen-image-edit": "qwen_image_edit:build_qwen_image_edit",
}


def builder(name: str) -> Callable[[Path], None]:
    module, function = BUILDERS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def build_tiny(family: str, folder: Path) -> Path:
    """Save the tiny pipeline ``family`` (a name in tiny_models.BUILDERS or :data:`BUILDERS`) into ``folder``."""
    from genbatch.pipelines import tiny_models

    if family not in tiny_models.BUILDERS and family not in BUILDERS:
        names = [*tiny_models.BUILDERS, *BUILDERS]
        raise ValueError(f"no tiny pipeline for {family!r}; expected one of {', '.join(names)}")
    folder = Path(folder)
    (tiny_models.BUILDERS.get(family) or builder(family))(folder)
    return folder
