"""A tiny SANA-Sprint (``SanaSprintPipeline``): Sana's Gemma2 text encoder, linear-attention DiT
and deep-compression autoencoder (:func:`genbatch.pipelines.tiny_models.build_sana`), with the
guidance embedding and RMS query/key norms of the released SANA-Sprint transformers and the
SCM scheduler (one to four steps), built offline after diffusers' fast test of SANA-Sprint.

Random weights this small barely let the prompt or the guidance reach the image: the
transformer's caption projection and its cross-attention's key and value projections are
multiplied by ``TEXT_SCALE``, and the guidance embedder's layers by ``GUIDANCE_SCALE``, so a
prompt and the guidance each move the image by far more than the few levels the family test
allows between genbatch and plain diffusers.
"""

from __future__ import annotations

from pathlib import Path

from genbatch.pipelines.tiny_models import _gemma2_encoder, _sana_vae, sana_transformer, save_tiny
from genbatch.pipelines.tiny_tokenizers import gemma_tokenizer

TEXT_SCALE = 10.0  # the caption projection and cross-attention key/value weights
GUIDANCE_SCALE = 2.0  # the guidance embedder's weights


def build_sana_sprint(folder: Path) -> None:
    """SANA-Sprint at 32x32 (sample size 16, an autoencoder of two levels), 2 steps by default."""
    import torch
    from diffusers import SanaSprintPipeline, SCMScheduler

    tokenizer = gemma_tokenizer()
    tokenizer.model_max_length = 8192  # the instruction the pipeline puts before each prompt is ~1000 tokens here
    transformer = sana_transformer(qk_norm="rms_norm_across_heads", guidance_embeds=True, timestep_scale=1000.0)
    with torch.no_grad():  # let the text and the guidance reach the image (see the module's docstring)
        for layer in (transformer.caption_projection.linear_1, transformer.caption_projection.linear_2):
            layer.weight.mul_(TEXT_SCALE)
        for block in transformer.transformer_blocks:
            block.attn2.to_k.weight.mul_(TEXT_SCALE)
            block.attn2.to_v.weight.mul_(TEXT_SCALE)
        for layer in (
            transformer.time_embed.guidance_embedder.linear_1,
            transformer.time_embed.guidance_embedder.linear_2,
        ):
            layer.weight.mul_(GUIDANCE_SCALE)
    pipe = SanaSprintPipeline(
        tokenizer=tokenizer,
        text_encoder=_gemma2_encoder(tokenizer),
        vae=_sana_vae(),
        transformer=transformer,
        scheduler=SCMScheduler(),
    )
    save_tiny(pipe, folder, "sana-sprint", width=32, height=32, steps=2, guidance_scale=4.5, max_sequence_length=32)
