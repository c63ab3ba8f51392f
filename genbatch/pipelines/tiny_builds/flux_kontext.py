"""A tiny Flux.1 Kontext (FluxKontextPipeline), built offline: the tiny Flux.1's components
(:func:`genbatch.pipelines.tiny_models.flux_components`: one dual and one single block,
guidance embedded, a VAE of one latent channel packed 2x2) saved as a Kontext pipeline, so
``DiffusionPipeline.from_pretrained`` loads it as FluxKontextPipeline. Kontext's transformer
is Flux.1's: the input image's packed latents join the sequence beside the noise's.

Unchanged, a different input image moves this build's pixels by a level, a different
prompt by 8-13: the image's tokens reach the noise's only through two blocks' attention. So,
as for the tiny Qwen-Image, the modulation weights (``norm1.linear``, ``norm1_context.linear``,
``norm.linear``) are scaled x10 and the attention's query/key RMSNorm weights x3 (logits x9),
and the VAE's encoder gives latents of about unit variance once scaled
(:func:`genbatch.pipelines.tiny_models.fit_encoder`, gain 2.5): a different input image then
moves pixels by ~50-75 levels, a different prompt by ~60-80.

Kontext resizes its input image to one of its preferred resolutions (about 1024x1024) and
the output to ``max_area`` (1024²) unless told otherwise: a call on this build passes
``max_area=width * height`` and ``_auto_resize=False`` to stay at the build's 32x32.
"""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.tiny_builds.qwen_image import _scaled
from genbatch.pipelines.tiny_models import fit_encoder, flux_components, save_tiny

MODULATION_SCALE = 10.0  # the blocks' modulation weights
ATTENTION_SHARPEN = 3.0  # the query/key norms: attention logits x9
ENCODER_GAIN = 2.5  # the VAE encoder's means (see fit_encoder)


def build_flux_kontext(folder: Path) -> None:
    from diffusers import FluxKontextPipeline

    components = flux_components(folder)
    transformer = components["transformer"]
    _scaled(transformer, ("norm1.linear", "norm1_context.linear", "norm.linear"), MODULATION_SCALE)
    _scaled(transformer, ("norm_q", "norm_k", "norm_added_q", "norm_added_k"), ATTENTION_SHARPEN)
    fit_encoder(components["vae"], ENCODER_GAIN)
    pipe = FluxKontextPipeline(**components, image_encoder=None, feature_extractor=None)
    save_tiny(pipe, folder, "flux-kontext", width=32, height=32, guidance_scale=2.5, max_sequence_length=32)
