"""A tiny CogView4 (``CogView4Pipeline``): a GLM text encoder, a joint-attention DiT and a
two-level AutoencoderKL, built offline (diffusers' fast test of CogView4 is the model).

The tokenizer is GLM-4's kind, written here: byte-level BPE (no merges, so one token per
byte) whose post-processor puts ``[gMASK]<sop>`` before every text, as the released
tokenizer does. Without that prefix an empty prompt is zero tokens and the encoder fails
on the empty negative prompt that classifier-free guidance encodes. It pads on the left,
like the released one.

Random weights this small barely let text reach the image (a different prompt moved pixels
by 2 levels): the transformer's text projection (``patch_embed.text_proj``) and its
adaptive-norm modulation (``norm1.linear``, which scales and gates the text stream and the
image stream) are multiplied by 10, so a prompt, a negative prompt and guidance each move
the image by far more than the few levels the family test allows between genbatch and
plain diffusers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_models import _seeded, _vae, save_tiny

GLM_SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>"]
TEXT_SCALE = 10.0  # what the text projection and the modulation weights are multiplied by


def glm_tokenizer(folder: Path) -> Any:
    """GLM-4's kind of tokenizer, written offline into ``folder`` and loaded back: byte-level
    BPE over the 256 bytes, ``[gMASK]<sop>`` before each text, ``<|endoftext|>`` as pad and
    end of text, padding on the left."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from genbatch.pipelines.tiny_tokenizers import _byte_level_alphabet

    tokens = _byte_level_alphabet() + GLM_SPECIALS
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(GLM_SPECIALS)
    backend.post_processor = processors.TemplateProcessing(
        single="[gMASK]:0 <sop>:0 $A:0",
        pair="[gMASK]:0 <sop>:0 $A:0 $B:1",
        special_tokens=[("[gMASK]", vocab["[gMASK]"]), ("<sop>", vocab["<sop>"])],
    )
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "model_max_length": 128000,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return PreTrainedTokenizerFast.from_pretrained(folder)


def build_cogview4(folder: Path) -> None:
    """CogView4 at 32x32 (sample size 16, a VAE of two levels), 4 steps by default."""
    import torch
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import GlmConfig, GlmModel

    tokenizer = glm_tokenizer(Path(folder) / "tokenizer")
    transformer = _seeded(
        lambda: CogView4Transformer2DModel(
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            attention_head_dim=4,
            num_attention_heads=4,
            text_embed_dim=32,
            time_embed_dim=8,
            condition_dim=4,
            sample_size=16,
        )
    )
    with torch.no_grad():  # let the text reach the image (see the module's docstring)
        transformer.patch_embed.text_proj.weight.mul_(TEXT_SCALE)
        for block in transformer.transformer_blocks:
            block.norm1.linear.weight.mul_(TEXT_SCALE)
    text_encoder = _seeded(
        lambda: GlmModel(
            GlmConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=8,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                head_dim=8,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
    )
    pipe = CogView4Pipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_vae(),
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(
            base_shift=0.25,
            max_shift=0.75,
            base_image_seq_len=256,
            use_dynamic_shifting=True,
            time_shift_type="linear",
        ),
    )
    save_tiny(pipe, folder, "cogview4", width=32, height=32, guidance_scale=3.5)
