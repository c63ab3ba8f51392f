"""A tiny HunyuanImage 2.1 (HunyuanImagePipeline): a Qwen2.5-VL and a ByT5 text encoder, a guider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_builds.qwen_tokenizer import SPECIAL_TOKENS, qwen_vocab
from genbatch.pipelines.tiny_models import _seeded, save_tiny

QWEN_WIDTH = 32  # the Qwen2.5-VL text model's hidden size: its states go into the transformer
BYT5_WIDTH = 16  # the ByT5 encoder's width (glyph text, the quoted parts of a prompt)
# The start of HunyuanImagePipeline's prompt template: 34 tokens in Qwen's vocabulary, which the
# pipeline drops from the encoded prompt (prompt_template_encode_start_idx).
TEMPLATE_START = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n"
)
DROPPED = 34


def hunyuan_qwen_tokenizer(folder: Path) -> Any:
    """The offline byte-level Qwen tokenizer (:mod:`.qwen_tokenizer`'s vocabulary and special
    tokens) with BPE merges for the words of the pipeline's prompt template, so that its start
    is 34 tokens as in Qwen's own vocabulary and the pipeline drops exactly the template.
    Without them the template is some 130 bytes long: the pipeline keeps most of it, and a
    prompt of a few words barely changes the encoded text. Saved in ``folder``, loaded back."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    def tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Any:
        made = Qwen2Tokenizer(
            vocab=vocab,
            merges=merges,
            unk_token=None,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            errors="replace",
            clean_up_tokenization_spaces=False,
            model_max_length=32768,
        )
        made.add_special_tokens(
            {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]}
        )
        return made

    vocab, merges = qwen_vocab(), []
    split = tokenizer(dict(vocab), []).backend_tokenizer.pre_tokenizer
    for part in TEMPLATE_START.replace("<|im_end|>", "<|im_start|>").split("<|im_start|>"):
        for word, _ in split.pre_tokenize_str(part):  # byte-level words: "Ġimage"
            for i in range(1, len(word)):  # merged left to right: "Ġi"+"m", "Ġim"+"a"...
                if (word[:i], word[i]) not in merges:
                    merges.append((word[:i], word[i]))
                vocab.setdefault(word[: i + 1], len(vocab))
    made = tokenizer(vocab, merges)
    if len(made(TEMPLATE_START).input_ids) != DROPPED:
        raise AssertionError(f"the template's start is not {DROPPED} tokens with these merges")
    made.save_pretrained(folder)
    return Qwen2Tokenizer.from_pretrained(folder)


def _qwen25_vl(tokenizer: Any) -> Any:
    """A three-layer Qwen2.5-VL over the offline Qwen tokenizer's vocabulary (the pipeline takes
    the states two layers before the last), with a two-block vision tower it never uses."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": QWEN_WIDTH,
            "intermediate_size": 32,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32},
        hidden_size=QWEN_WIDTH,
        vocab_size=len(tokenizer),
        vision_start_token_id=ids[0],
        vision_end_token_id=ids[1],
        image_token_id=ids[2],
        video_token_id=ids[3],
    )
    return _seeded(lambda: Qwen2_5_VLForConditionalGeneration(config))


def _byt5(tokenizer: Any) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        d_model=BYT5_WIDTH,
        d_kv=4,
        d_ff=16,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        vocab_size=len(tokenizer),
        feed_forward_proj="gated-gelu",
        dense_act_fn="gelu_new",
        is_encoder_decoder=False,
        use_cache=False,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return _seeded(lambda: T5EncoderModel(config))


def build_hunyuan_image(folder: Path, *, distilled: bool = False) -> None:
    """HunyuanImage 2.1 (the base model, with guiders) as diffusers' fast tests build it,
    smaller: one dual, one single and one refiner block of width 16, a three-layer Qwen2.5-VL
    of width 32 over a byte-level Qwen tokenizer (:func:`hunyuan_qwen_tokenizer`), a ByT5 encoder of width 16
    (``ByT5Tokenizer`` needs no vocabulary file), a HunyuanImage VAE of two levels (32
    channels: its group norms take 32 groups), 32x32 images.

    Its two guiders are the released model's kind (AdaptiveProjectedMixGuidance): ``guider``
    for prompts, ``ocr_guider`` for prompts with quoted text (the glyphs ByT5 encodes). The
    OCR guider has the released settings (classifier-free guidance at 3.5, adaptive projected
    guidance after step 5, which 2 steps never reach); the guider switches to adaptive
    projected guidance after the first step, so that a test reaches it and a batch that mixed
    the two guiders would change pixels.

    Text reaches the image only through the joint attention (the transformer's modulation
    comes from the timestep alone). ``context_embedder`` (the Qwen states' token refiner) and
    ``context_embedder_2`` (ByT5's projection) are scaled x10, the text's keys (their norm)
    and values in the dual block x5: a different prompt then moves the image by some 45
    levels, a negative prompt by some 80, quoted text by more than 100 (2, 6 and 2 without).

    ``distilled=True``: HunyuanImage-2.1-Distilled's kind, guidance embedded in the transformer
    (``guidance_embeds``, ``use_meanflow``) and no guiders; its guidance embedder's output layer
    is scaled x3 (distilled_guidance_scale 1 instead of 3.25 then moves the image by some 20
    levels, 6 without)."""
    import torch
    from diffusers import (
        AdaptiveProjectedMixGuidance,
        AutoencoderKLHunyuanImage,
        FlowMatchEulerDiscreteScheduler,
        HunyuanImagePipeline,
        HunyuanImageTransformer2DModel,
    )
    from transformers import ByT5Tokenizer

    tokenizer = hunyuan_qwen_tokenizer(folder / "tokenizer")
    tokenizer_2 = ByT5Tokenizer()
    transformer = _seeded(
        lambda: HunyuanImageTransformer2DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            patch_size=(1, 1),
            guidance_embeds=distilled,
            use_meanflow=distilled,
            text_embed_dim=QWEN_WIDTH,
            text_embed_2_dim=BYT5_WIDTH,
            rope_axes_dim=(4, 4),
        )
    )
    with torch.no_grad():
        for module in (transformer.context_embedder, transformer.context_embedder_2):
            for parameter in module.parameters():
                parameter.mul_(10.0)
        for block in transformer.transformer_blocks:  # the text's keys and values in the joint attention
            block.attn.norm_added_k.weight.mul_(5.0)
            for parameter in block.attn.add_v_proj.parameters():
                parameter.mul_(5.0)
        if distilled:  # the embedded guidance's way into the modulation
            for parameter in transformer.time_guidance_embed.guidance_embedder.linear_2.parameters():
                parameter.mul_(3.0)
    vae = _seeded(
        lambda: AutoencoderKLHunyuanImage(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(32, 32),
            layers_per_block=1,
            scaling_factor=0.476986,
            spatial_compression_ratio=2,
            sample_size=32,
        )
    )
    pipe = HunyuanImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        text_encoder=_qwen25_vl(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_byt5(tokenizer_2),
        tokenizer_2=tokenizer_2,
        guider=None if distilled else AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=0),
        ocr_guider=None if distilled else AdaptiveProjectedMixGuidance(),
    )
    name = "hunyuan-image-distilled" if distilled else "hunyuan-image"
    save_tiny(pipe, folder, name, width=32, height=32, guidance_scale=3.25 if distilled else 3.5)
