"""Build a Stable Diffusion 1.5-*architecture* pipeline with random weights, offline.

    python benchmarks/sd15_random.py OUT_DIR

Nothing can be downloaded here, but speed depends on shapes, not weights: this pipeline has
SD-1.5's UNet (860M parameters), VAE and CLIP ViT-L text encoder configs, so its timings are
comparable with published SD-1.5 figures (its images are noise). The tokenizer is genbatch's
byte-level one, which changes only the embedding table's size.
"""

from __future__ import annotations

import sys
from pathlib import Path


def build(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from genbatch.tiny_tokenizers import write_clip_tokenizer

    write_clip_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder)
    (folder / "genbatch.json").write_text(
        '{"name": "sd15-random", "steps": 50, "guidance_scale": 7.5, "width": 512, "height": 512}\n'
    )


if __name__ == "__main__":
    build(Path(sys.argv[1]))
